package admin

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/clip"
	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// The Nexgent family (docs/admin-api.md): camelCase, exactly as Nexgent's
// own API documentation has it.

const msgKeyNotFound = "API key not found"

// createKeyRequest is the body of POST /api/v1/api-keys. Pointers tell
// "absent" from "empty".
type createKeyRequest struct {
	Name       *string        `json:"name"`
	Scopes     []string       `json:"scopes"`
	ExpiresAt  *string        `json:"expiresAt"`
	UserID     *string        `json:"userId"`    // operator only
	ProjectID  *string        `json:"projectId"` // operator only
	RateLimit  *rateLimitBody `json:"rateLimit"`
	UsageLimit *int64         `json:"usageLimit"`
}

// rotateKeyRequest is the optional body of POST /api/v1/api-keys/{id}/rotate.
type rotateKeyRequest struct {
	GracePeriod *string `json:"gracePeriod"`
	ExpiresAt   *string `json:"expiresAt"`
}

// NexgentCreated is the answer of a Nexgent key creation or rotation; the
// only place the raw key appears.
type NexgentCreated struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Key        string          `json:"key"`
	Prefix     string          `json:"prefix"`
	Scopes     []string        `json:"scopes"`
	CreatedAt  string          `json:"createdAt"`
	ExpiresAt  *string         `json:"expiresAt,omitempty"`
	RateLimit  *RateLimitView  `json:"rateLimit,omitempty"`
	UsageLimit *UsageLimitView `json:"usageLimit,omitempty"`
}

// NexgentKey is a Nexgent key record as the list and get routes answer it.
type NexgentKey struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	Prefix     string          `json:"prefix"`
	Scopes     []string        `json:"scopes"`
	LastUsedAt *string         `json:"lastUsedAt"`
	CreatedAt  string          `json:"createdAt"`
	ExpiresAt  *string         `json:"expiresAt,omitempty"`
	RateLimit  *RateLimitView  `json:"rateLimit,omitempty"`
	UsageLimit *UsageLimitView `json:"usageLimit,omitempty"`
}

func toNexKey(k *keystore.Key) NexgentKey {
	return NexgentKey{
		ID:         k.ID,
		Name:       k.Name,
		Prefix:     k.Prefix,
		Scopes:     nonNil(k.Scopes),
		LastUsedAt: formatTimePtr(k.LastUsedAt),
		CreatedAt:  formatTime(k.CreatedAt),
		ExpiresAt:  formatTimePtr(k.ExpiresAt),
		RateLimit:  toRateLimitJSON(k.RateLimit),
		UsageLimit: toUsageLimitJSON(k.Quota),
	}
}

func toNexCreated(k *keystore.Key, raw string) NexgentCreated {
	return NexgentCreated{
		ID:         k.ID,
		Name:       k.Name,
		Key:        raw,
		Prefix:     k.Prefix,
		Scopes:     nonNil(k.Scopes),
		CreatedAt:  formatTime(k.CreatedAt),
		ExpiresAt:  formatTimePtr(k.ExpiresAt),
		RateLimit:  toRateLimitJSON(k.RateLimit),
		UsageLimit: toUsageLimitJSON(k.Quota),
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
func (s *Server) validateCreateKey(req *createKeyRequest, p principal, pol *policy.Policy) (*keystore.Key, error) {
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
	k.RateLimit = checkRateLimit(&fe, "rateLimit", req.RateLimit)
	k.Quota = newQuota(checkUsageLimit(&fe, "usageLimit", req.UsageLimit))
	for _, f := range []struct {
		name string
		v    *string
		dst  *string
	}{{"userId", req.UserID, &k.UserID}, {"projectId", req.ProjectID, &k.ProjectID}} {
		if f.v == nil {
			continue
		}
		if p.kind != kindOperator && !(f.name == "userId" && *f.v == p.userID) {
			return nil, forbidden(f.name + ": only the operator token may set it")
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
	if req.RateLimit != nil {
		if err := checkLimitAllowed(p, "rateLimit", k.RateLimit, nil, pol); err != nil {
			return nil, err
		}
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

// ensureOwnerActive refuses (409) to give a deactivated user a new key.
func (s *Server) ensureOwnerActive(userID string) error {
	if userID == "" {
		return nil
	}
	u, err := s.store.GetUser(userID)
	if err != nil {
		return err
	}
	if !u.Active {
		return conflict("user " + userID + " is deactivated")
	}
	return nil
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request, p principal) error {
	var req createKeyRequest
	if _, err := readJSONBody(w, r, &req, false); err != nil {
		return err
	}
	pol := s.policy()
	k, err := s.validateCreateKey(&req, p, pol)
	if err != nil {
		return err
	}
	if err := s.ensureOwnerActive(k.UserID); err != nil {
		return err
	}
	raw, err := s.storeNewKey(k, pol, func(k *keystore.Key) error { return s.writer.CreateKey(k, p.actor()) })
	if err != nil {
		return err
	}
	s.logChange(r, p, "key.create", http.StatusCreated, k)
	jsonresp.Write(w, http.StatusCreated, toNexCreated(k, raw))
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, p principal) error {
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
		return err
	}
	if p.kind == kindUser {
		if q.Has("userId") && userID != p.userID {
			return forbidden("userId: a user may only list their own keys")
		}
		userID = p.userID
	}
	// A user's or a project's keys come from the owner index, at the cost
	// of what they are; only the operator's unfiltered list reads them all.
	live := func(k *keystore.Key) bool {
		return !k.Revoked() && (userID == "" || k.UserID == userID) && (projectID == "" || k.ProjectID == projectID)
	}
	var keys []*keystore.Key
	var err error
	if userID != "" || projectID != "" {
		keys, err = s.store.ListOwnedKeys(keystore.Owner{UserID: userID, ProjectID: projectID})
		keys = slices.DeleteFunc(keys, func(k *keystore.Key) bool { return !live(k) })
	} else {
		keys, err = s.store.ListKeys(live)
	}
	if err != nil {
		return err
	}
	out := make([]NexgentKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, toNexKey(k))
	}
	jsonresp.Write(w, http.StatusOK, out)
	return nil
}

// ownLiveKey returns the live key {id} the caller may see, or a 404:
// another user's key is reported exactly like an unknown one.
func (s *Server) ownLiveKey(r *http.Request, p principal) (*keystore.Key, error) {
	id := r.PathValue("id")
	k, err := s.store.GetKey(id)
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && (k.Revoked() || (p.kind == kindUser && k.UserID != p.userID))) {
		return nil, notFound(msgKeyNotFound)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (s *Server) getKey(w http.ResponseWriter, r *http.Request, p principal) error {
	k, err := s.ownLiveKey(r, p)
	if err != nil {
		return err
	}
	jsonresp.Write(w, http.StatusOK, toNexKey(k))
	return nil
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request, p principal) error {
	k, err := s.ownLiveKey(r, p)
	if err != nil {
		return err
	}
	k, err = s.writer.RevokeKey(k.ID, p.actor())
	if errors.Is(err, keystore.ErrRevoked) || errors.Is(err, keystore.ErrNotFound) {
		return notFound(msgKeyNotFound)
	}
	if err != nil {
		return err
	}
	s.logChange(r, p, "key.revoke", http.StatusOK, k)
	jsonresp.Write(w, http.StatusOK, struct {
		Success bool `json:"success"`
	}{true})
	return nil
}

func (s *Server) rotateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	var req rotateKeyRequest
	if _, err := readJSONBody(w, r, &req, true); err != nil {
		return err
	}
	now := s.now()
	var fe fieldErrors
	grace := DefaultGracePeriod
	if req.GracePeriod != nil {
		d, err := time.ParseDuration(*req.GracePeriod)
		switch {
		case err != nil:
			fe.add("gracePeriod", "must be a duration such as \"24h\" or \"0s\", got %q", clip.String(*req.GracePeriod, 64))
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
		return err
	}
	old, err := s.ownLiveKey(r, p)
	if err != nil {
		return err
	}
	if old.Expired(now) {
		return conflict("API key has expired; create a new key instead")
	}
	if err := s.ensureOwnerActive(old.UserID); err != nil {
		return err
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
		retired, err = s.writer.RotateKey(old.ID, k, grace, p.actor())
		return err
	})
	if errors.Is(err, keystore.ErrRevoked) || errors.Is(err, keystore.ErrNotFound) {
		return notFound(msgKeyNotFound)
	}
	if errors.Is(err, keystore.ErrQuotaShared) {
		return conflict(fmt.Sprintf("%d keys of this rotation share its quota in their grace periods: rotate with gracePeriod \"0s\", or wait for a grace period to end", keystore.MaxQuotaShared))
	}
	if err != nil {
		return err
	}
	s.logChange(r, p, "key.rotate.retire", http.StatusCreated, retired)
	s.logChange(r, p, "key.rotate.create", http.StatusCreated, next)
	jsonresp.Write(w, http.StatusCreated, toNexCreated(next, raw))
	return nil
}
