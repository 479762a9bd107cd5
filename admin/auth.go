package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/extauthz/extauthz/bearer"
	"github.com/extauthz/extauthz/keycheck"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/secret"
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

func (e *authError) Error() string { return e.reason }

var (
	errNoCredential      = &authError{http.StatusUnauthorized, "no credential"}
	errBadCredential     = &authError{http.StatusUnauthorized, "invalid credential"}
	errInactiveJWTUser   = &authError{http.StatusForbidden, "user deactivated"}
	errStoreUnavailable  = errors.New("store unavailable")
	errMultipleAuthz     = &authError{http.StatusUnauthorized, "more than one Authorization header"}
	errUnsupportedScheme = &authError{http.StatusUnauthorized, "not a Bearer credential"}
)

// bearerCredential extracts the credential of "Authorization: Bearer
// <token>" by package bearer's rule (case-insensitive scheme, only spaces
// and tabs trimmed), and refuses more than one Authorization header, a
// token over maxCredentialLength and one with spaces or control
// characters in it. The error is an *authError.
func bearerCredential(h http.Header) (string, error) {
	vals := h.Values("Authorization")
	switch len(vals) {
	case 0:
		return "", errNoCredential
	case 1:
	default:
		return "", errMultipleAuthz
	}
	if bearer.TrimOWS(vals[0]) == "" {
		return "", errNoCredential
	}
	token, ok := bearer.Token(vals[0])
	if !ok {
		return "", errUnsupportedScheme
	}
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
// A refused credential is an *authError; a store that cannot be read is
// errStoreUnavailable joined with the store's error.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	token, err := bearerCredential(r.Header)
	if err != nil {
		return principal{}, err
	}
	if s.operator.Matches(token) {
		return principal{kind: kindOperator}, nil
	}
	if s.jwt.enabled() && looksLikeJWT(token) {
		sub, err := s.jwt.verify(token)
		if err != nil {
			s.log.Debug().Str("reason", err.Error()).Msg("jwt rejected")
			return principal{}, errBadCredential
		}
		u, err := s.store.GetUser(sub)
		if err != nil {
			return principal{}, errors.Join(errStoreUnavailable, err)
		}
		if !u.Active {
			return principal{}, errInactiveJWTUser
		}
		return principal{kind: kindUser, userID: sub}, nil
	}
	k, err := s.validKey(token)
	if err != nil {
		return principal{}, err
	}
	if k == nil {
		return principal{}, errBadCredential
	}
	return principal{kind: kindKey, key: k}, nil
}

// validKey returns the record of raw when it is a valid key by the
// enforcement path's own check (keycheck), nil when it is not, and an
// error when the store fails.
func (s *Server) validKey(raw string) (*keystore.Key, error) {
	k, verdict, err := keycheck.Check(s.policy(), s.store, raw, s.now())
	if err != nil {
		return nil, errors.Join(errStoreUnavailable, err)
	}
	if verdict != keycheck.Valid {
		return nil, nil
	}
	return k, nil
}

// looksLikeJWT reports whether token has the three-part compact form.
func looksLikeJWT(token string) bool {
	return strings.Count(token, ".") == 2
}

// adminChallenge is the WWW-Authenticate of every 401.
const adminChallenge = `Bearer realm="admin"`

// authorize authenticates the request and applies the route's access rule.
// A refusal is a *requestError; any other error is the store's.
func (s *Server) authorize(r *http.Request, a access) (principal, error) {
	p, err := s.authenticate(r)
	var aerr *authError
	if err != nil && !errors.As(err, &aerr) {
		return principal{}, err
	}
	if a == accessProjectCreate && s.publicCreate {
		if aerr != nil {
			return principal{kind: kindAnonymous}, nil
		}
		return p, nil
	}
	if aerr != nil {
		s.log.Debug().Str("route", r.Pattern).Str("reason", aerr.reason).Msg("admin request refused")
		if aerr.status == http.StatusForbidden {
			return principal{}, &requestError{status: http.StatusForbidden, msg: msgUserInactive}
		}
		msg := msgInvalidCreds
		switch {
		case a == accessProject:
			msg = msgInvalidKey
		case aerr == errNoCredential:
			msg = msgAuthRequired
		}
		return principal{}, &requestError{status: http.StatusUnauthorized, msg: msg, challenge: adminChallenge}
	}
	if p.kind == kindOperator {
		return p, nil
	}
	switch a {
	case accessUser:
		if p.kind == kindUser {
			return p, nil
		}
		return principal{}, forbidden(msgUserOrOperator)
	case accessProject:
		if p.kind == kindKey {
			return p, nil
		}
		return principal{}, forbidden(msgProjectKeyOnly)
	default:
		return principal{}, forbidden(msgOperatorOnly)
	}
}

// projectAccess checks that a project-key caller belongs to project pid
// and holds perm. The operator always passes. A refusal is a 403
// *requestError. The project ids are compared in constant time (package
// secret), though they are not secret.
func (s *Server) projectAccess(p principal, pid, perm string) error {
	if p.kind == kindOperator {
		return nil
	}
	if p.key == nil || p.key.ProjectID == "" || !secret.Equal(p.key.ProjectID, pid) {
		return forbidden(msgWrongProject)
	}
	if !s.policy().Grants(p.key.Scopes, perm) {
		return forbidden(msgInsufficient + perm)
	}
	return nil
}
