package admin

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// The request bodies below are copied verbatim from the Nexgent and
// NexGraph API-key documentation this reproduces (docs/admin-api.md).
const (
	seedNexgentCreate = `{
"name": "Trading Bot",
"scopes": ["signals"]
}`
	seedGraphCreateKey = `{
    "permissions": ["read"],
    "label": "ci-read-only"
  }`
	seedGraphCreateExpiring = `{
    "permissions": ["read", "write"],
    "label": "temp-key",
    "expires_at": "2026-06-01T00:00:00.000Z"
  }`
)

// Shapes of the documented responses: field names and JSON kinds.
var (
	nexCreateShape = map[string]string{"id": "string", "name": "string", "key": "string", "prefix": "string", "scopes": "array", "createdAt": "string"}
	nexListShape   = map[string]string{"id": "string", "name": "string", "prefix": "string", "scopes": "array", "lastUsedAt": "string|null", "createdAt": "string"}
	graphKeyShape  = map[string]string{"id": "string", "key": "string", "key_prefix": "string", "label": "string", "permissions": "array", "expires_at": "string|null", "created_at": "string"}
	graphListShape = map[string]string{"id": "string", "key_prefix": "string", "label": "string", "permissions": "array", "expires_at": "string|null", "created_at": "string", "last_used_at": "string|null"}
)

func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestSeedNexgent replays every request/response example of the Nexgent
// API-keys document against a running admin.
func TestSeedNexgent(t *testing.T) {
	e := newEnv(t, envConfig{})
	jwt := e.userToken("user-1")

	// Create API Key.
	r := e.expect(e.request("POST", "/api/v1/api-keys", jwt, seedNexgentCreate), http.StatusCreated, "seed create")
	created := r.object(t)
	checkShape(t, "create response", created, nexCreateShape)
	key, _ := created["key"].(string)
	if !nexKeyRE.MatchString(key) {
		t.Errorf("key = %q; want nex_ + 32 alphanumerics", key)
	}
	if got, want := created["prefix"], key[:8]; got != want {
		t.Errorf("prefix = %v; want the first 8 characters %q", got, want)
	}
	if got := created["name"]; got != "Trading Bot" {
		t.Errorf("name = %v; want Trading Bot", got)
	}
	if got := strs(created["scopes"]); !reflect.DeepEqual(got, []string{"signals"}) {
		t.Errorf("scopes = %v; want [signals]", got)
	}
	if got := created["createdAt"]; got != "2024-01-15T10:30:00.000Z" {
		t.Errorf("createdAt = %v; want 2024-01-15T10:30:00.000Z", got)
	}
	if !uuidRE.MatchString(created["id"].(string)) {
		t.Errorf("id = %v; want a UUID", created["id"])
	}
	id := created["id"].(string)
	if !e.keyValid(key) {
		t.Errorf("the created key is not valid in the store")
	}
	rec, err := e.store.GetKey(id)
	if err != nil {
		t.Fatalf("GetKey: %v", err)
	}
	if rec.UserID != "user-1" || rec.Hash != keystore.HashKey(key) {
		t.Errorf("stored record user=%q hash-ok=%v; want owner user-1 and the key's SHA-256", rec.UserID, rec.Hash == keystore.HashKey(key))
	}

	// List API Keys: lastUsedAt null before use, then the documented value.
	list := e.expect(e.request("GET", "/api/v1/api-keys", jwt, nil), http.StatusOK, "seed list").array(t)
	if len(list) != 1 {
		t.Fatalf("list = %d keys; want 1", len(list))
	}
	item := list[0].(map[string]any)
	checkShape(t, "list item", item, nexListShape)
	if item["lastUsedAt"] != nil {
		t.Errorf("lastUsedAt = %v; want null before first use", item["lastUsedAt"])
	}
	used := time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC)
	// The store takes a reported use at most keystore.MaxUsageSkew ahead of
	// its clock: the clock has reached the documented time of use (and the
	// user holds a token valid then).
	e.clock.Set(used)
	jwt = e.userToken("user-1")
	if err := e.usage([]keystore.Usage{{KeyID: id, LastUsedAt: used, Count: 1}}); err != nil {
		t.Fatal(err)
	}
	item = e.request("GET", "/api/v1/api-keys", jwt, nil).array(t)[0].(map[string]any)
	checkShape(t, "list item", item, nexListShape)
	want := map[string]any{
		"id": id, "name": "Trading Bot", "prefix": key[:8], "scopes": []any{"signals"},
		"lastUsedAt": "2024-01-15T12:00:00.000Z", "createdAt": "2024-01-15T10:30:00.000Z",
	}
	if !reflect.DeepEqual(item, want) {
		t.Errorf("list item = %v; want %v", item, want)
	}

	// GET one record: same shape as a list item, never the key.
	one := e.expect(e.request("GET", "/api/v1/api-keys/"+id, jwt, nil), http.StatusOK, "get").object(t)
	if !reflect.DeepEqual(one, want) {
		t.Errorf("get = %v; want %v", one, want)
	}

	// Delete API Key.
	del := e.expect(e.request("DELETE", "/api/v1/api-keys/"+id, jwt, nil), http.StatusOK, "seed delete").object(t)
	if !reflect.DeepEqual(del, map[string]any{"success": true}) {
		t.Errorf("delete = %v; want {\"success\": true}", del)
	}
	if e.keyValid(key) {
		t.Errorf("key still valid after delete")
	}
	if got := e.request("GET", "/api/v1/api-keys", jwt, nil).array(t); len(got) != 0 {
		t.Errorf("list after delete = %v; want []", got)
	}
	rec, _ = e.store.GetKey(id)
	if rec == nil || rec.RevokedAt == nil {
		t.Errorf("record after delete = %+v; want kept with revokedAt (soft delete)", rec)
	}
	e.expect(e.request("DELETE", "/api/v1/api-keys/"+id, jwt, nil), http.StatusNotFound, "second delete")

	// expiresAt is returned when set.
	exp := e.createNexKey(jwt, `{"name":"Temp","scopes":["full_access","agents"],"expiresAt":"2024-02-01T00:00:00Z"}`)
	checkShape(t, "create with expiry", exp, map[string]string{"id": "string", "name": "string", "key": "string", "prefix": "string", "scopes": "array", "createdAt": "string", "expiresAt": "string"})
	if exp["expiresAt"] != "2024-02-01T00:00:00.000Z" {
		t.Errorf("expiresAt = %v; want 2024-02-01T00:00:00.000Z", exp["expiresAt"])
	}

	// The raw key appears in no other response.
	for _, path := range []string{"/api/v1/api-keys", "/api/v1/api-keys/" + exp["id"].(string)} {
		if body := string(e.request("GET", path, jwt, nil).raw); strings.Contains(body, exp["key"].(string)) || strings.Contains(body, `"key"`) {
			t.Errorf("GET %s leaks the key: %s", path, body)
		}
	}
}

// TestSeedNexGraph replays every request/response example of the NexGraph
// authentication document against a running admin whose policy mints nxg_
// keys.
func TestSeedNexGraph(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, publicCreate: true, start: graphEpoch})

	// Create a project: the only unauthenticated endpoint.
	r := e.expect(e.request("POST", "/api/v1/projects", "", `{"name":"my-graph"}`), http.StatusCreated, "create project")
	m := r.object(t)
	checkShape(t, "project response", m, map[string]string{"project": "object", "api_key": "object"})
	proj := m["project"].(map[string]any)
	checkShape(t, "project", proj, map[string]string{"id": "string", "name": "string", "created_at": "string"})
	first := m["api_key"].(map[string]any)
	checkShape(t, "first key", first, graphKeyShape)
	if got := strs(first["permissions"]); !reflect.DeepEqual(got, []string{"read", "write"}) {
		t.Errorf("first key permissions = %v; want [read write]", got)
	}
	if first["expires_at"] != nil {
		t.Errorf("first key expires_at = %v; want null", first["expires_at"])
	}
	if proj["created_at"] != "2026-01-15T10:30:00.000Z" || proj["name"] != "my-graph" {
		t.Errorf("project = %v", proj)
	}
	pid := proj["id"].(string)
	nexgraphKey := first["key"].(string)
	if !nxgKeyRE.MatchString(nexgraphKey) {
		t.Errorf("key = %q; want nxg_ + 64 lower-case hex", nexgraphKey)
	}
	if first["key_prefix"] != nexgraphKey[:8] {
		t.Errorf("key_prefix = %v; want %q", first["key_prefix"], nexgraphKey[:8])
	}

	// Permissions example.
	r = e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", nexgraphKey, seedGraphCreateKey), http.StatusCreated, "seed create key")
	ci := r.object(t)
	checkShape(t, "create key response", ci, graphKeyShape)
	for field, want := range map[string]any{"label": "ci-read-only", "expires_at": nil, "created_at": "2026-01-15T10:30:00.000Z"} {
		if ci[field] != want {
			t.Errorf("%s = %v; want %v", field, ci[field], want)
		}
	}
	if got := strs(ci["permissions"]); !reflect.DeepEqual(got, []string{"read"}) {
		t.Errorf("permissions = %v; want [read]", got)
	}
	ciKey := ci["key"].(string)
	if !nxgKeyRE.MatchString(ciKey) || ci["key_prefix"] != ciKey[:8] {
		t.Errorf("key %q / key_prefix %v malformed", ciKey, ci["key_prefix"])
	}
	if rec, _ := e.store.GetKey(ci["id"].(string)); rec == nil || rec.ProjectID != pid || rec.Name != "ci-read-only" {
		t.Errorf("stored record = %+v; want project %s, name ci-read-only", rec, pid)
	}

	// Key Expiry example.
	tmp := e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", nexgraphKey, seedGraphCreateExpiring), http.StatusCreated, "seed expiring key").object(t)
	checkShape(t, "expiring key", tmp, graphKeyShape)
	if tmp["expires_at"] != "2026-06-01T00:00:00.000Z" {
		t.Errorf("expires_at = %v; want 2026-06-01T00:00:00.000Z", tmp["expires_at"])
	}
	if got := strs(tmp["permissions"]); !reflect.DeepEqual(got, []string{"read", "write"}) {
		t.Errorf("permissions = %v", got)
	}

	// List (read permission): no key field anywhere.
	list := e.expect(e.request("GET", "/api/v1/projects/"+pid+"/api-keys", ciKey, nil), http.StatusOK, "list").array(t)
	if len(list) != 3 {
		t.Fatalf("list = %d keys; want 3", len(list))
	}
	for _, it := range list {
		checkShape(t, "list item", it.(map[string]any), graphListShape)
	}

	// Revoking Keys: soft delete, record returned with revoked_at.
	del := e.expect(e.request("DELETE", "/api/v1/projects/"+pid+"/api-keys/"+tmp["id"].(string), nexgraphKey, nil), http.StatusOK, "seed revoke").object(t)
	checkShape(t, "revoke response", del, map[string]string{"id": "string", "key_prefix": "string", "label": "string", "permissions": "array", "expires_at": "string|null", "created_at": "string", "last_used_at": "string|null", "revoked_at": "string"})
	if del["revoked_at"] != "2026-01-15T10:30:00.000Z" {
		t.Errorf("revoked_at = %v", del["revoked_at"])
	}
	if got := e.request("GET", "/api/v1/projects/"+pid+"/api-keys", nexgraphKey, nil).array(t); len(got) != 2 {
		t.Errorf("live keys after revoke = %d; want 2", len(got))
	}
	all := e.request("GET", "/api/v1/projects/"+pid+"/api-keys?include_revoked=true", nexgraphKey, nil).array(t)
	if len(all) != 3 {
		t.Fatalf("include_revoked list = %d; want 3", len(all))
	}
	revoked := 0
	for _, it := range all {
		im := it.(map[string]any)
		shape := map[string]string{"revoked_at": "string|null"}
		for k, v := range graphListShape {
			shape[k] = v
		}
		checkShape(t, "include_revoked item", im, shape)
		if im["revoked_at"] != nil {
			revoked++
		}
	}
	if revoked != 1 {
		t.Errorf("revoked items = %d; want 1", revoked)
	}
	if rec, _ := e.store.GetKey(tmp["id"].(string)); rec == nil || rec.RevokedAt == nil {
		t.Errorf("revoked record gone or not revoked: %+v", rec)
	}

	// Error Responses: 401 and 403 bodies exactly as documented.
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"missing Authorization header", ""},
		{"invalid key format", "nxg_abc123def456"},
		{"unknown key", "nxg_" + strings.Repeat("ab", 32)},
		{"revoked key", tmp["key"].(string)},
	} {
		t.Run("401 "+tc.name, func(t *testing.T) {
			r := e.expect(e.request("GET", "/api/v1/projects/"+pid+"/api-keys", tc.token, nil), http.StatusUnauthorized, tc.name)
			if msg := r.errorMessage(t); msg != "Invalid or expired API key" {
				t.Errorf("error = %q; want Invalid or expired API key", msg)
			}
			if r.header.Get("WWW-Authenticate") == "" {
				t.Errorf("no WWW-Authenticate header")
			}
		})
	}
	r = e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", ciKey, seedGraphCreateKey), http.StatusForbidden, "read key creates")
	if msg := r.errorMessage(t); msg != "Insufficient permissions: requires write" {
		t.Errorf("error = %q; want Insufficient permissions: requires write", msg)
	}
	// Expired key: past 2026-06-01 the temp-key (had it not been revoked)
	// and any other expiring key is refused.
	exp := e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", nexgraphKey, seedGraphCreateExpiring), http.StatusCreated, "expiring").object(t)
	e.clock.Set(time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC))
	r = e.expect(e.request("GET", "/api/v1/projects/"+pid+"/api-keys", exp["key"].(string), nil), http.StatusUnauthorized, "expired key")
	if msg := r.errorMessage(t); msg != "Invalid or expired API key" {
		t.Errorf("expired: error = %q", msg)
	}
}
