package admin

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// The NexGraph family (docs/admin-api.md): snake_case, exactly as NexGraph's
// own API documentation has it.

// Permissions a project key needs: read to list, write to change.
const (
	permRead  = "read"
	permWrite = "write"
)

// firstKeyLabel is the label of the key POST /api/v1/projects returns.
const firstKeyLabel = "default"

type createProjectRequest struct {
	Name *string `json:"name"`
}

type createProjectKeyRequest struct {
	Permissions []string       `json:"permissions"`
	Label       *string        `json:"label"`
	ExpiresAt   *string        `json:"expires_at"`
	RateLimit   *rateLimitBody `json:"rate_limit"`
	UsageLimit  *int64         `json:"usage_limit"`
}

type ngProject struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	CreatedAt string `json:"created_at"`
}

// ngCreated is a created key; the only place "key" appears.
type ngCreated struct {
	ID          string          `json:"id"`
	Key         string          `json:"key"`
	KeyPrefix   string          `json:"key_prefix"`
	Label       string          `json:"label"`
	Permissions []string        `json:"permissions"`
	ExpiresAt   *string         `json:"expires_at"`
	CreatedAt   string          `json:"created_at"`
	RateLimit   *RateLimitView  `json:"rate_limit,omitempty"`
	UsageLimit  *UsageLimitView `json:"usage_limit,omitempty"`
}

// ngKey is a listed record.
type ngKey struct {
	ID          string          `json:"id"`
	KeyPrefix   string          `json:"key_prefix"`
	Label       string          `json:"label"`
	Permissions []string        `json:"permissions"`
	ExpiresAt   *string         `json:"expires_at"`
	CreatedAt   string          `json:"created_at"`
	LastUsedAt  *string         `json:"last_used_at"`
	RateLimit   *RateLimitView  `json:"rate_limit,omitempty"`
	UsageLimit  *UsageLimitView `json:"usage_limit,omitempty"`
}

// ngKeyRevoked is a listed record with its revocation time (null when live):
// the items of ?include_revoked=true and the DELETE response.
type ngKeyRevoked struct {
	ngKey
	RevokedAt *string `json:"revoked_at"`
}

func toNGKey(k *keystore.Key) ngKey {
	return ngKey{
		ID:          k.ID,
		KeyPrefix:   k.Prefix,
		Label:       k.Name,
		Permissions: nonNil(k.Scopes),
		ExpiresAt:   formatTimePtr(k.ExpiresAt),
		CreatedAt:   formatTime(k.CreatedAt),
		LastUsedAt:  formatTimePtr(k.LastUsedAt),
		RateLimit:   toRateLimitJSON(k.RateLimit),
		UsageLimit:  toUsageLimitJSON(k.Quota),
	}
}

func toNGCreated(k *keystore.Key, raw string) ngCreated {
	return ngCreated{
		ID:          k.ID,
		Key:         raw,
		KeyPrefix:   k.Prefix,
		Label:       k.Name,
		Permissions: nonNil(k.Scopes),
		ExpiresAt:   formatTimePtr(k.ExpiresAt),
		CreatedAt:   formatTime(k.CreatedAt),
		RateLimit:   toRateLimitJSON(k.RateLimit),
		UsageLimit:  toUsageLimitJSON(k.Quota),
	}
}

// firstKeyScopes are the permissions of a new project's first key:
// read and write when the policy knows both (NexGraph), otherwise the
// super scope, otherwise every scope of the policy.
func firstKeyScopes(pol *policy.Policy) []string {
	if pol.KnownScope(permRead) && pol.KnownScope(permWrite) {
		return []string{permRead, permWrite}
	}
	if pol.SuperScope != "" {
		return []string{pol.SuperScope}
	}
	return append([]string{}, pol.Scopes...)
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request, p principal) error {
	var req createProjectRequest
	if _, err := readJSONBody(w, r, &req, false); err != nil {
		return err
	}
	var fe fieldErrors
	if req.Name == nil {
		fe.add("name", "required")
	} else if err := checkText(*req.Name); err != nil {
		fe.add("name", "%v", err)
	}
	if err := fe.err(); err != nil {
		return err
	}
	pol := s.policy()
	proj := &keystore.Project{ID: uuid.NewString(), Name: *req.Name}
	first := &keystore.Key{Name: firstKeyLabel, Scopes: firstKeyScopes(pol), ProjectID: proj.ID}
	raw, err := s.storeNewKey(first, pol, func(k *keystore.Key) error {
		return s.writer.CreateProject(proj, k, p.actor())
	})
	if err != nil {
		return err
	}
	s.logChange(r, p, "project.create", http.StatusCreated, first)
	jsonresp.Write(w, http.StatusCreated, struct {
		Project ngProject `json:"project"`
		APIKey  ngCreated `json:"api_key"`
	}{
		Project: ngProject{ID: proj.ID, Name: proj.Name, CreatedAt: formatTime(proj.CreatedAt)},
		APIKey:  toNGCreated(first, raw),
	})
	return nil
}

// projectID returns the {pid} path value after the access check, or the
// refusal.
func (s *Server) projectID(r *http.Request, p principal, perm string) (string, error) {
	pid := r.PathValue("pid")
	if err := s.projectAccess(p, pid, perm); err != nil {
		return "", err
	}
	if err := checkID(pid); err != nil {
		return "", badRequest("project id: %v", err)
	}
	return pid, nil
}

func (s *Server) listProjectKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	pid, err := s.projectID(r, p, permRead)
	if err != nil {
		return err
	}
	includeRevoked := false
	if q := r.URL.Query(); q.Has("include_revoked") {
		b, err := strconv.ParseBool(q.Get("include_revoked"))
		if err != nil {
			return badRequest("include_revoked: must be true or false")
		}
		includeRevoked = b
	}
	keys, err := s.store.ListOwnedKeys(keystore.Owner{ProjectID: pid})
	if err != nil {
		return err
	}
	if !includeRevoked {
		keys = slices.DeleteFunc(keys, (*keystore.Key).Revoked)
	}
	if includeRevoked {
		out := make([]ngKeyRevoked, 0, len(keys))
		for _, k := range keys {
			out = append(out, ngKeyRevoked{toNGKey(k), formatTimePtr(k.RevokedAt)})
		}
		jsonresp.Write(w, http.StatusOK, out)
		return nil
	}
	out := make([]ngKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, toNGKey(k))
	}
	jsonresp.Write(w, http.StatusOK, out)
	return nil
}

func (s *Server) createProjectKey(w http.ResponseWriter, r *http.Request, p principal) error {
	pid, err := s.projectID(r, p, permWrite)
	if err != nil {
		return err
	}
	var req createProjectKeyRequest
	if _, err := readJSONBody(w, r, &req, false); err != nil {
		return err
	}
	pol := s.policy()
	var fe fieldErrors
	k := &keystore.Key{ProjectID: pid}
	k.Scopes = checkScopes(&fe, "permissions", req.Permissions, pol)
	if req.Label == nil {
		fe.add("label", "required")
	} else {
		if err := checkText(*req.Label); err != nil {
			fe.add("label", "%v", err)
		}
		k.Name = *req.Label
	}
	k.ExpiresAt = checkExpiry(&fe, "expires_at", req.ExpiresAt, s.now())
	k.RateLimit = checkRateLimit(&fe, "rate_limit", req.RateLimit)
	k.Quota = newQuota(checkUsageLimit(&fe, "usage_limit", req.UsageLimit))
	capExpiry(&fe, "expires_at", k, p)
	if err := fe.err(); err != nil {
		return err
	}
	if req.RateLimit != nil {
		if err := checkLimitAllowed(p, "rate_limit", k.RateLimit, nil, pol); err != nil {
			return err
		}
	}
	raw, err := s.storeNewKey(k, pol, func(k *keystore.Key) error { return s.writer.CreateKey(k, p.actor()) })
	if err != nil {
		return err
	}
	s.logChange(r, p, "key.create", http.StatusCreated, k)
	jsonresp.Write(w, http.StatusCreated, toNGCreated(k, raw))
	return nil
}

// projectKey returns the live key {kid} of project pid, or a 404: another
// project's key is reported exactly like an unknown one.
func (s *Server) projectKey(r *http.Request, pid string) (*keystore.Key, error) {
	k, err := s.store.GetKey(r.PathValue("kid"))
	if errors.Is(err, keystore.ErrNotFound) || (err == nil && (k.ProjectID != pid || k.Revoked())) {
		return nil, notFound(msgKeyNotFound)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

func (s *Server) revokeProjectKey(w http.ResponseWriter, r *http.Request, p principal) error {
	pid, err := s.projectID(r, p, permWrite)
	if err != nil {
		return err
	}
	k, err := s.projectKey(r, pid)
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
	jsonresp.Write(w, http.StatusOK, ngKeyRevoked{toNGKey(k), formatTimePtr(k.RevokedAt)})
	return nil
}

// capExpiry keeps a key made by an expiring key from outliving it: with
// no expires_at asked for, the new key gets its creator's; a later one is
// a validation error, named in field (the request is never silently
// changed into something else than it asked for).
func capExpiry(fe *fieldErrors, field string, k *keystore.Key, p principal) {
	if p.kind != kindKey || p.key.ExpiresAt == nil {
		return
	}
	limit := *p.key.ExpiresAt
	switch {
	case k.ExpiresAt == nil:
		k.ExpiresAt = &limit
	case k.ExpiresAt.After(limit):
		fe.add(field, "must not be later than %s, the expiry of the key making this request", limit.UTC().Format(time.RFC3339))
	}
}
