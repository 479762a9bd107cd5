package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/extauthz/extauthz/keystore"
)

// Client-facing authentication messages.
const (
	msgAuthRequired   = "authentication required"
	msgInvalidCreds   = "invalid or expired credentials"
	msgInvalidKey     = "Invalid or expired API key" // NexGraph's documented 401
	msgWrongProject   = "Forbidden: API key does not belong to this project"
	msgOperatorOnly   = "this route requires the operator token"
	msgUserOrOperator = "this route requires a user access token or the operator token"
	msgProjectKeyOnly = "this route requires a project API key or the operator token"
	msgUserInactive   = "user is deactivated"
	msgInsufficient   = "Insufficient permissions: requires "
)

// maxCredentialLength bounds a bearer value; longer ones are rejected
// before any parsing.
const maxCredentialLength = 16 << 10

// principalKind is the kind of a caller.
type principalKind int

const (
	kindAnonymous principalKind = iota
	kindOperator
	kindUser
	kindKey
)

// principal is an authenticated caller.
type principal struct {
	kind   principalKind
	userID string        // kindUser: the JWT sub
	key    *keystore.Key // kindKey: the presented key's record
}

// actor names the caller in audit events and logs. It never contains
// secret material.
func (p principal) actor() string {
	switch p.kind {
	case kindOperator:
		return "operator"
	case kindUser:
		return "user:" + p.userID
	case kindKey:
		return "key:" + p.key.ID
	default:
		return "anonymous"
	}
}

// authError is why a credential was refused.
type authError struct {
	status int // 401 or 403
	reason string
}

var (
	errNoCredential      = &authError{http.StatusUnauthorized, "no credential"}
	errBadCredential     = &authError{http.StatusUnauthorized, "invalid credential"}
	errInactiveJWTUser   = &authError{http.StatusForbidden, "user deactivated"}
	errStoreUnavailable  = errors.New("store unavailable")
	errMultipleAuthz     = &authError{http.StatusUnauthorized, "more than one Authorization header"}
	errUnsupportedScheme = &authError{http.StatusUnauthorized, "not a Bearer credential"}
)

// bearerToken extracts the credential of "Authorization: Bearer <token>".
// The scheme is case-insensitive; exactly one header, one space-separated
// token, no control characters.
func bearerToken(h http.Header) (string, *authError) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", errNoCredential
	case 1:
	default:
		return "", errMultipleAuthz
	}
	return parseBearer(vals[0])
}

// parseBearer parses one Authorization header value.
func parseBearer(v string) (string, *authError) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", errNoCredential
	}
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errUnsupportedScheme
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || len(token) > maxCredentialLength {
		return "", errBadCredential
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c == 0x7f {
			return "", errBadCredential
		}
	}
	return token, nil
}

// authenticate classifies the request's credential (see the package doc).
// The returned error is an *authError, or errStoreUnavailable wrapped when
// the store cannot be read.
func (s *Server) authenticate(r *http.Request) (principal, *authError, error) {
	token, aerr := bearerToken(r.Header)
	if aerr != nil {
		return principal{}, aerr, nil
	}
	if s.isOperator(token) {
		return principal{kind: kindOperator}, nil, nil
	}
	if s.jwt.enabled() && looksLikeJWT(token) {
		sub, err := s.jwt.verify(token)
		if err != nil {
			s.log.Debug().Str("reason", err.Error()).Msg("jwt rejected")
			return principal{}, errBadCredential, nil
		}
		u, err := s.store.GetUser(sub)
		if err != nil {
			return principal{}, nil, errors.Join(errStoreUnavailable, err)
		}
		if !u.Active {
			return principal{}, errInactiveJWTUser, nil
		}
		return principal{kind: kindUser, userID: sub}, nil, nil
	}
	k, err := s.validKey(token)
	if err != nil {
		return principal{}, nil, err
	}
	if k == nil {
		return principal{}, errBadCredential, nil
	}
	return principal{kind: kindKey, key: k}, nil, nil
}

// isOperator compares token with the operator token in constant time on
// equal-length SHA-256 digests.
func (s *Server) isOperator(token string) bool {
	if !s.hasOperator {
		return false
	}
	d := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(d[:], s.operator[:]) == 1
}

// validKey returns the record of raw when it is a valid key, checked as the
// enforcement path checks it (format accepted by the current policy, known,
// not revoked, not expired, owner active), nil when it is not, and an error
// when the store fails.
func (s *Server) validKey(raw string) (*keystore.Key, error) {
	if !s.policy().ValidKey(raw) {
		return nil, nil
	}
	res, err := s.store.Lookup(keystore.HashKey(raw))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, errors.Join(errStoreUnavailable, err)
	}
	k := res.Key
	if k.Revoked() || k.Expired(s.now()) || !res.OwnerActive {
		return nil, nil
	}
	return k, nil
}

// looksLikeJWT reports whether token has the three-part compact form.
func looksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2
}

// authorize authenticates the request and applies the route's access rule.
// On refusal it has written the response and returns false.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, a access) (principal, bool) {
	p, aerr, err := s.authenticate(r)
	if err != nil {
		s.serverError(w, r, principal{}, err)
		return principal{}, false
	}
	if a == accessProjectCreate && s.publicCreate {
		if aerr != nil {
			return principal{kind: kindAnonymous}, true
		}
		return p, true
	}
	if aerr != nil {
		s.log.Debug().Str("route", r.Pattern).Str("reason", aerr.reason).Msg("admin request refused")
		if aerr.status == http.StatusForbidden {
			writeError(w, http.StatusForbidden, msgUserInactive)
			return principal{}, false
		}
		msg := msgInvalidCreds
		switch {
		case a == accessProject:
			msg = msgInvalidKey
		case aerr == errNoCredential:
			msg = msgAuthRequired
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="admin"`)
		writeError(w, http.StatusUnauthorized, msg)
		return principal{}, false
	}
	if p.kind == kindOperator {
		return p, true
	}
	switch a {
	case accessUser:
		if p.kind == kindUser {
			return p, true
		}
		writeError(w, http.StatusForbidden, msgUserOrOperator)
	case accessProject:
		if p.kind == kindKey {
			return p, true
		}
		writeError(w, http.StatusForbidden, msgProjectKeyOnly)
	default:
		writeError(w, http.StatusForbidden, msgOperatorOnly)
	}
	return principal{}, false
}

// projectAccess checks that a project-key caller belongs to project pid
// and holds perm. The operator always passes. On refusal it has written
// the 403 and returns false.
func (s *Server) projectAccess(w http.ResponseWriter, p principal, pid, perm string) bool {
	if p.kind == kindOperator {
		return true
	}
	if p.key == nil || p.key.ProjectID == "" || subtle.ConstantTimeCompare([]byte(p.key.ProjectID), []byte(pid)) != 1 {
		writeError(w, http.StatusForbidden, msgWrongProject)
		return false
	}
	if !s.policy().Grants(p.key.Scopes, perm) {
		writeError(w, http.StatusForbidden, msgInsufficient+perm)
		return false
	}
	return true
}
