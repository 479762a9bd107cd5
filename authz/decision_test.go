package authz_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

const (
	nexMissing = `{"error":"API key required"}`
	nexInvalid = `{"error":"Invalid API key"}`
	nexWWWAuth = `Bearer realm="api"`
)

// TestDecisionTable drives every row of the decision table through both
// front doors and checks status, body bytes, headers and gRPC codes.
func TestDecisionTable(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}, user: "user-1"})
	full, _ := e.mint(keyOpts{scopes: []string{"full_access"}})
	revoked, revKey := e.mint(keyOpts{scopes: []string{"signals"}})
	if _, err := e.store.RevokeKey(revKey.ID, "test"); err != nil {
		t.Fatal(err)
	}
	past := e.clock.Now().Add(-time.Second)
	expired, _ := e.mint(keyOpts{scopes: []string{"signals"}, expires: &past})
	atNow := e.clock.Now()
	expiringNow, _ := e.mint(keyOpts{scopes: []string{"signals"}, expires: &atNow})
	inactive, _ := e.mint(keyOpts{scopes: []string{"signals"}, user: "gone"})
	if _, err := e.store.SetUserActive("gone", false, "test"); err != nil {
		t.Fatal(err)
	}
	unknown := "nex_" + strings.Repeat("Z", 32)

	type row struct {
		name     string
		method   string
		path     string
		hdr      map[string]string
		status   int
		code     codes.Code
		body     string
		envoy403 bool // envoy shows 403 where HTTP shows 400
	}
	rows := []row{
		{"no key", "GET", "/api/v1/agents", nil, 401, codes.Unauthenticated, nexMissing, false},
		{"basic auth is no key", "GET", "/api/v1/agents", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, 401, codes.Unauthenticated, nexMissing, false},
		{"empty x-api-key is no key", "GET", "/api/v1/agents", map[string]string{"X-API-Key": "  "}, 401, codes.Unauthenticated, nexMissing, false},
		{"wrong prefix", "GET", "/api/v1/agents", map[string]string{"X-API-Key": "nxg_" + strings.Repeat("a", 32)}, 401, codes.Unauthenticated, nexInvalid, false},
		{"too short", "GET", "/api/v1/agents", map[string]string{"X-API-Key": "nex_abc"}, 401, codes.Unauthenticated, nexInvalid, false},
		{"too long", "GET", "/api/v1/agents", map[string]string{"X-API-Key": signals + "x"}, 401, codes.Unauthenticated, nexInvalid, false},
		{"non-ASCII", "GET", "/api/v1/agents", map[string]string{"X-API-Key": "nex_" + strings.Repeat("é", 16)}, 401, codes.Unauthenticated, nexInvalid, false},
		{"60 KiB header", "GET", "/api/v1/agents", map[string]string{"X-API-Key": "nex_" + strings.Repeat("a", 60<<10)}, 401, codes.Unauthenticated, nexInvalid, false},
		{"unknown key", "GET", "/api/v1/agents", map[string]string{"X-API-Key": unknown}, 401, codes.Unauthenticated, nexInvalid, false},
		{"revoked key", "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": revoked}, 401, codes.Unauthenticated, nexInvalid, false},
		{"expired key", "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": expired}, 401, codes.Unauthenticated, nexInvalid, false},
		{"expires_at == now is expired", "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": expiringNow}, 401, codes.Unauthenticated, nexInvalid, false},
		{"inactive owner", "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": inactive}, 401, codes.Unauthenticated, nexInvalid, false},
		{"two different keys", "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": signals, "Authorization": "Bearer " + full}, 401, codes.Unauthenticated, nexInvalid, false},
		{"missing scope", "GET", "/api/v1/agents", map[string]string{"X-API-Key": signals}, 403, codes.PermissionDenied, `{"error":"API key missing required scope: agents"}`, false},
		{"unmatched needs full_access", "DELETE", "/api/v1/agents/7", map[string]string{"X-API-Key": signals}, 403, codes.PermissionDenied, `{"error":"API key missing required scope: full_access"}`, false},
		{"encoded slash", "GET", "/api/v1/agents%2F..%2Fadmin", map[string]string{"X-API-Key": signals}, 400, codes.PermissionDenied, `{"error":"ambiguous request path"}`, true},
		{"encoded dot segment", "GET", "/api/v1/%2e%2e/agents", map[string]string{"X-API-Key": signals}, 400, codes.PermissionDenied, `{"error":"ambiguous request path"}`, true},
		{"allowed", "POST", "/api/v1/trading-signals", map[string]string{"X-API-Key": signals}, 200, codes.OK, "", false},
		{"same key twice is fine", "POST", "/api/v1/trading-signals", map[string]string{"X-API-Key": signals, "Authorization": "Bearer " + signals}, 200, codes.OK, "", false},
		{"dot segments are ambiguous", "GET", "/api/v1/agents/../trading-signals?x=1", map[string]string{"X-API-Key": signals}, 400, codes.PermissionDenied, `{"error":"ambiguous request path"}`, true},
		{"full_access reaches unmatched", "DELETE", "/api/v1/agents/7", map[string]string{"Authorization": "bearer " + full}, 200, codes.OK, "", false},
		{"public route", "GET", "/healthz", nil, 200, codes.OK, "", false},
	}
	for _, d := range doors {
		for _, r := range rows {
			t.Run(d.name+"/"+r.name, func(t *testing.T) {
				got := d.check(e, r.method, r.path, r.hdr)
				want := r.status
				if d.name == "envoy" && r.envoy403 {
					want = 403
				}
				if got.status != want {
					t.Fatalf("%s %s: status = %d; want %d (body %s)", r.method, r.path, got.status, want, got.body)
				}
				if got.body != r.body {
					t.Errorf("body = %q; want %q", got.body, r.body)
				}
				if d.name == "envoy" && got.code != r.code {
					t.Errorf("grpc status code = %v; want %v", got.code, r.code)
				}
				if r.status == 200 {
					return
				}
				if ct := got.headers["content-type"]; ct != "application/json" {
					t.Errorf("content-type = %q; want application/json", ct)
				}
				if wa := got.headers["www-authenticate"]; (r.status == 401) != (wa == nexWWWAuth) {
					t.Errorf("www-authenticate = %q on a %d", wa, r.status)
				}
			})
		}
	}
}

// TestUnavailable: an unusable store answers 503 over HTTP and the RPC error
// UNAVAILABLE over gRPC, so Envoy applies status_on_error.
func TestUnavailable(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	raw, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	hdr := map[string]string{"X-API-Key": raw}

	t.Run("stale replica", func(t *testing.T) {
		e.mu.Lock()
		e.unavailable = errStale
		e.mu.Unlock()
		defer func() { e.mu.Lock(); e.unavailable = nil; e.mu.Unlock() }()
		if got := e.viaEnvoy("GET", "/api/v1/trading-signals", hdr); got.rpcErr != codes.Unavailable {
			t.Errorf("envoy rpc error = %v; want Unavailable", got.rpcErr)
		}
		got := e.viaTraefik("GET", "/api/v1/trading-signals", hdr)
		if got.status != 503 || got.body != `{"error":"authorization unavailable"}` {
			t.Errorf("forwardauth = %d %s; want 503 authorization unavailable", got.status, got.body)
		}
	})
	t.Run("closed store", func(t *testing.T) {
		e.store.Close()
		if got := e.viaEnvoy("GET", "/api/v1/trading-signals", hdr); got.rpcErr != codes.Unavailable {
			t.Errorf("envoy rpc error = %v; want Unavailable", got.rpcErr)
		}
		if got := e.viaTraefik("GET", "/api/v1/trading-signals", hdr); got.status != 503 {
			t.Errorf("forwardauth status = %d; want 503", got.status)
		}
	})
}

type staleErr struct{}

func (staleErr) Error() string { return "replica stale" }

var errStale error = staleErr{}

// TestIdentityHeaders: identity headers overwrite client-sent copies, absent
// ones are removed, the credential is stripped, metadata is set.
func TestIdentityHeaders(t *testing.T) {
	e := newEnv(t, "nexgraph.yaml")
	raw, k := e.mint(keyOpts{scopes: []string{"read"}, project: "p1", user: "u1"})
	forged := map[string]string{"Authorization": "Bearer " + raw, "X-Auth-Key-Id": "forged", "X-Auth-Scopes": "write"}

	got := e.viaEnvoy("GET", "/api/v1/projects/p1/repositories", forged)
	if got.status != 200 {
		t.Fatalf("status = %d %s; want 200", got.status, got.body)
	}
	want := map[string]string{"x-auth-key-id": k.ID, "x-auth-key-prefix": raw[:8], "x-auth-scopes": "read", "x-auth-project-id": "p1", "x-auth-user-id": "u1"}
	for h, v := range want {
		if got.headers[h] != v {
			t.Errorf("envoy header %s = %q; want %q", h, got.headers[h], v)
		}
	}
	if r := strings.Join(sorted(got.remove), ","); r != "authorization" {
		t.Errorf("headers_to_remove = %q; want authorization", r)
	}
	if got.meta["key_id"] != k.ID || got.meta["project_id"] != "p1" || got.meta["user_id"] != "u1" || got.meta["scopes"] != "read" {
		t.Errorf("dynamic metadata = %v", got.meta)
	}

	fa := e.viaTraefik("GET", "/api/v1/projects/p1/repositories", forged)
	if fa.status != 200 || fa.body != "" {
		t.Fatalf("forwardauth = %d %q; want 200 empty", fa.status, fa.body)
	}
	for h, v := range want {
		if fa.headers[h] != v {
			t.Errorf("forwardauth header %s = %q; want %q", h, fa.headers[h], v)
		}
	}
	if r := strings.Join(fa.remove, ","); r != "authorization" {
		t.Errorf("x-envoy-auth-headers-to-remove = %q; want authorization", r)
	}

	// A key without project and user: those headers are removed, not kept.
	e2 := newEnv(t, "nexgent.yaml")
	raw2, _ := e2.mint(keyOpts{scopes: []string{"signals"}})
	got = e2.viaEnvoy("GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": raw2, "X-Auth-User-Id": "admin"})
	if r := strings.Join(sorted(got.remove), ","); r != "x-api-key,x-auth-project-id,x-auth-user-id" {
		t.Errorf("headers_to_remove = %q; want x-api-key,x-auth-project-id,x-auth-user-id", r)
	}
}

// TestNoKeyMaterialInLogs: decision logs carry ids and prefixes, never the
// presented key.
func TestNoKeyMaterialInLogs(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	raw, k := e.mint(keyOpts{scopes: []string{"signals"}})
	unknown := "nex_" + strings.Repeat("Q", 32)
	for _, d := range doors {
		d.check(e, "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": raw})
		d.check(e, "GET", "/api/v1/agents", map[string]string{"Authorization": "Bearer " + raw})
		d.check(e, "GET", "/api/v1/agents", map[string]string{"X-API-Key": unknown})
	}
	logs := e.logs.String()
	for _, secret := range []string{raw, raw[8:], unknown, unknown[4:]} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain key material %q", secret)
		}
	}
	for _, want := range []string{`"key_id":"` + k.ID + `"`, `"key_prefix":"` + k.Prefix + `"`, `"reason":"missing_scope"`, `"reason":"unknown_key"`, `"request_id":"req-1"`, `"path":"/api/v1/agents"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
}
