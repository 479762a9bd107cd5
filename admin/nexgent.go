package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// The Nexgent family (docs/admin-api.md): camelCase, exactly as Nexgent's
// own API documentation has it.

const msgKeyNotFound = "API key not found"

// createKeyRequest is the body of POST /api/v1/api-keys. Pointers tell
// "absent" from "empty".
type createKeyRequest struct {
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt *string  `json:"expiresAt"`
	UserID    *string  `json:"userId"`    // operator only
	ProjectID *string  `json:"projectId"` // operator only
}

// rotateKeyRequest is the optional body of POST /api/v1/api-keys/{id}/rotate.
type rotateKeyRequest struct {
	GracePeriod *string `json:"gracePeriod"`
	ExpiresAt   *string `json:"expiresAt"`
}

// nexCreated is the create and rotate response; the only place "key" appears.
type nexCreated struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Key       string   `json:"key"`
	Prefix    string   `json:"prefix"`
	Scopes    []string `json:"scopes"`
	CreatedAt string   `json:"createdAt"`
	ExpiresAt *string  `json:"expiresAt,omitempty"`
}

// nexKey is a listed or fetched record.
type nexKey struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Prefix     string   `json:"prefix"`
	Scopes     []string `json:"scopes"`
	LastUsedAt *string  `json:"lastUsedAt"`
	CreatedAt  string   `json:"createdAt"`
	ExpiresAt  *string  `json:"expiresAt,omitempty"`
}

func toNexKey(k *keystore.Key) nexKey {
	return nexKey{
		ID:         k.ID,
		Name:       k.Name,
		Prefix:     k.Prefix,
		Scopes:     nonNil(k.Scopes),
		LastUsedAt: formatTimePtr(k.LastUsedAt),
		CreatedAt:  formatTime(k.CreatedAt),
		ExpiresAt:  formatTimePtr(k.ExpiresAt),
	}
}

func toNexCreated(k *keystore.Key, raw string) nexCreated {
	return nexCreated{
		ID:        k.ID,
		Name:      k.Name,
		Key:       raw,
		Prefix:    k.Prefix,
		Scopes:    nonNil(k.Scopes),
		CreatedAt: formatTime(k.CreatedAt),
		ExpiresAt: formatTimePtr(k.ExpiresAt),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// validateCreateKey checks a create request for caller p and returns the
// record to store (without id, hash and prefix).
func (s *Server) validateCreateKey(req *createKeyRequest, p principal, pol *policy.Policy) (*keystore.Key, *requestError) {
	var fe fieldErrors
	k := &keystore.Key{}
	switch {
	case req.Name == nil:
		fe.add("name", "required")
	default:
		if err := checkText(*req.Name); err != nil {
			fe.add("name", "%v", err)
		}
		k.Name = *req.Name
	}
	k.Scopes = checkScopes(&fe, "scopes", req.Scopes, pol)
	k.ExpiresAt = checkExpiry(&fe, "expiresAt", req.ExpiresAt, s.now())
	for _, f := range []struct {
		name string
		v    *string
		dst  *string
	}{{"userId", req.UserID, &k.UserID}, {"projectId", req.ProjectID, &k.ProjectID}} {
		if f.v == nil {
			continue
		}
		if p.kind != kindOperator && !(f.name == "userId" && *f.v == p.userID) {
			return nil, &requestError{http.StatusForbidden, f.name + ": only the operator token may set it"}
		}
		if err := checkID(*f.v); err != nil {
			fe.add(f.name, "%v", err)
		}
		*f.dst = *f.v
	}
	if p.kind == kindUser {
		k.UserID = p.userID
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return k, nil
}

// mintInto gives k a fresh id and a raw key in the policy's mint format,
// and returns the raw key.
func mintInto(k *keystore.Key, pol *policy.Policy) (string, error) {
	f := pol.MintFormat()
	alphabet := f.Alphabet()
	if alphabet == "" || f.Length <= 0 {
		return "", errors.New("policy has no usable mint format")
	}
	raw, err := keystore.Mint(f.Prefix, alphabet, f.Length)
	if err != nil {
		return "", err
	}
	k.ID = uuid.NewString()
	k.Hash = keystore.HashKey(raw)
	k.Prefix = keystore.DisplayPrefix(raw)
	return raw, nil
}

// storeNewKey mints and stores k, minting again on the (astronomically
// unlikely) collision with an existing hash.
func (s *Server) storeNewKey(k *keystore.Key, pol *policy.Policy, save func(*keystore.Key) error) (string, error) {
	for attempt := 0; ; attempt++ {
		raw, err := mintInto(k, pol)
		if err != nil {
			return "", err
		}
		err = save(k)
		if errors.Is(err, keystore.ErrDuplicateHash) && attempt < 3 {
			continue
		}
		return raw, err
	}
}

// ensureOwnerActive refuses to give a deactivated user a new key.
func (s *Server) ensureOwnerActive(userID string) (*requestError, error) {
	if userID == "" {
		return nil, nil
	}
	u, err := s.store.GetUser(userID)
	if err != nil {
		return nil, err
	}
	if !u.Active {
		return &requestError{http.StatusConflict, "user " + userID + " is deactivated"}, nil
	}
	return nil, nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p principal) {
	var req createKeyRequest
	if _, rerr := readJSONBody(w, r, &req, false); rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	pol := s.policy()
	k, rerr := s.validateCreateKey(&req, p, pol)
	if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	if rerr, err := s.ensureOwnerActive(k.UserID); err != nil {
		s.serverError(w, r, p, err)
		return
	} else if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	raw, err := s.storeNewKey(k, pol, func(k *keystore.Key) error { return s.store.CreateKey(k, p.actor()) })
	if err != nil {
		s.serverError(w, r, p, err)
		return
	}
	s.logChange(r, p, "key.create", http.StatusCreated, k)
	writeJSON(w, http.StatusCreated, toNexCreated(k, raw))
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p principal) {
	q := r.URL.Query()
	userID, projectID := q.Get("userId"), q.Get("projectId")
	var fe fieldErrors
	for _, f := range []struct{ name, v string }{{"userId", userID}, {"projectId", projectID}} {
		if q.Has(f.name) {
			if err := checkID(f.v); err != nil {
				fe.add(f.name, "%v", err)
			}
		}
	}
	if err := fe.err(); err != nil {
		writeRequestError(w, err)
		return
	}
	if p.kind == kindUser {
		if q.Has("userId") && userID != p.userID {
			writeError(w, http.StatusForbidden, "userId: a user may only list their own keys")
			return
		}
		userID = p.userID
	}
	keys, err := s.store.ListKeys(func(k *keystore.Key) bool {
		return !k.Revoked() &&
			(userID == "" || k.UserID == userID) &&
			(projectID == "" || k.ProjectID == projectID)
	})
	if err != nil {
		s.serverError(w, r, p, err)
		return
	}
	out := make([]nexKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, toNexKey(k))
	}
	writeJSON(w, http.StatusOK, out)
}

// ownLiveKey returns the live key {id} the caller may see, or writes a 404:
// another user's key is reported exactly like an unknown one.
func (s *Server) ownLiveKey(w http.ResponseWriter, r *http.Request, p principal) (*keystore.Key, bool) {
	id := r.PathValue("id")
	k, err := s.store.GetKey(id)
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && (k.Revoked() || (p.kind == kindUser && k.UserID != p.userID))) {
		writeError(w, http.StatusNotFound, msgKeyNotFound)
		return nil, false
	}
	if err != nil {
		s.serverError(w, r, p, err)
		return nil, false
	}
	return k, true
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, p principal) {
	k, ok := s.ownLiveKey(w, r, p)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, toNexKey(k))
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request, p principal) {
	k, ok := s.ownLiveKey(w, r, p)
	if !ok {
		return
	}
	k, err := s.store.RevokeKey(k.ID, p.actor())
	if errors.Is(err, keystore.ErrRevoked) || errors.Is(err, keystore.ErrNotFound) {
		writeError(w, http.StatusNotFound, msgKeyNotFound)
		return
	}
	if err != nil {
		s.serverError(w, r, p, err)
		return
	}
	s.logChange(r, p, "key.revoke", http.StatusOK, k)
	writeJSON(w, http.StatusOK, struct {
		Success bool `json:"success"`
	}{true})
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, p principal) {
	var req rotateKeyRequest
	if _, rerr := readJSONBody(w, r, &req, true); rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	now := s.now()
	var fe fieldErrors
	grace := DefaultGracePeriod
	if req.GracePeriod != nil {
		d, err := time.ParseDuration(*req.GracePeriod)
		switch {
		case err != nil:
			fe.add("gracePeriod", "must be a duration such as \"24h\" or \"0s\", got %q", truncate(*req.GracePeriod, 64))
		case d < 0:
			fe.add("gracePeriod", "must not be negative")
		case d > MaxGracePeriod:
			fe.add("gracePeriod", "must be at most %s", MaxGracePeriod)
		default:
			grace = d
		}
	}
	expiresAt := checkExpiry(&fe, "expiresAt", req.ExpiresAt, now)
	if err := fe.err(); err != nil {
		writeRequestError(w, err)
		return
	}
	old, ok := s.ownLiveKey(w, r, p)
	if !ok {
		return
	}
	if old.Expired(now) {
		writeError(w, http.StatusConflict, "API key has expired; create a new key instead")
		return
	}
	if rerr, err := s.ensureOwnerActive(old.UserID); err != nil {
		s.serverError(w, r, p, err)
		return
	} else if rerr != nil {
		writeRequestError(w, rerr)
		return
	}
	next := &keystore.Key{
		Name:      old.Name,
		Scopes:    append([]string(nil), old.Scopes...),
		ProjectID: old.ProjectID,
		UserID:    old.UserID,
		ExpiresAt: old.ExpiresAt,
		Metadata:  old.Metadata,
		RateLimit: old.RateLimit,
	}
	if expiresAt != nil {
		next.ExpiresAt = expiresAt
	}
	var retired *keystore.Key
	raw, err := s.storeNewKey(next, s.policy(), func(k *keystore.Key) error {
		var err error
		retired, err = s.store.RotateKey(old.ID, k, grace, p.actor())
		return err
	})
	if errors.Is(err, keystore.ErrRevoked) || errors.Is(err, keystore.ErrNotFound) {
		writeError(w, http.StatusNotFound, msgKeyNotFound)
		return
	}
	if err != nil {
		s.serverError(w, r, p, err)
		return
	}
	s.logChange(r, p, "key.rotate.retire", http.StatusCreated, retired)
	s.logChange(r, p, "key.rotate.create", http.StatusCreated, next)
	writeJSON(w, http.StatusCreated, toNexCreated(next, raw))
}
