package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/keystore"
)

// The Nexgent and NexGraph documentation's own example key and messages, copied here so the
// tests never read outside the repository.
const (
	nexgentSeedKey     = "nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"
	nexgraphInvalid    = `{"error":"Invalid or expired API key"}`
	nexgraphNeedsWrite = `{"error":"Insufficient permissions: requires write"}`
	nexgraphNeedsRead  = `{"error":"Insufficient permissions: requires read"}`
	otherProject       = `{"error":"Forbidden: API key does not belong to this project"}`
)

type seedCase struct {
	name   string
	method string
	path   string
	hdr    map[string]string
	status int
	body   string
}

func runSeedCases(t *testing.T, e *env, cases []seedCase) {
	t.Helper()
	for _, d := range doors {
		for _, c := range cases {
			t.Run(d.name+"/"+c.name, func(t *testing.T) {
				got := d.check(e, c.method, c.path, c.hdr)
				if got.status != c.status || got.body != c.body {
					t.Errorf("%s %s = %d %s; want %d %s", c.method, c.path, got.status, got.body, c.status, c.body)
				}
			})
		}
	}
}

// TestNexgentSeed replays the Nexgent API-key documentation's examples: both header forms, the
// seven scopes and their endpoints, full_access, and the Errors table.
func TestNexgentSeed(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	// The seed's example key, brought in by hash the way an existing
	// application's keys are imported.
	seed := &keystore.Key{ID: "550e8400-e29b-41d4-a716-446655440000", Hash: keystore.HashKey(nexgentSeedKey), Prefix: "nex_a1b2", Name: "Trading Bot", Scopes: []string{"signals"}, UserID: "u1"}
	if err := e.store.CreateKey(seed, "import"); err != nil {
		t.Fatal(err)
	}
	xk := func(k string) map[string]string { return map[string]string{"X-API-Key": k} }
	br := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	cases := []seedCase{
		{"X-API-Key form", "POST", "/api/v1/trading-signals", xk(nexgentSeedKey), 200, ""},
		{"Bearer form", "POST", "/api/v1/trading-signals", br(nexgentSeedKey), 200, ""},
		{"GET signals", "GET", "/api/v1/trading-signals", xk(nexgentSeedKey), 200, ""},
		{"401 API key required", "POST", "/api/v1/trading-signals", nil, 401, `{"error":"API key required"}`},
		{"401 Invalid API key", "POST", "/api/v1/trading-signals", xk("nex_" + strings.Repeat("0", 32)), 401, `{"error":"Invalid API key"}`},
		{"403 missing scope", "GET", "/api/v1/agents", xk(nexgentSeedKey), 403, `{"error":"API key missing required scope: agents"}`},
	}
	endpoints := map[string][]string{
		"signals":      {"GET /api/v1/trading-signals", "POST /api/v1/trading-signals"},
		"agents":       {"GET /api/v1/agents"},
		"positions":    {"GET /api/v1/agent-positions"},
		"balances":     {"GET /api/v1/agent-balances"},
		"transactions": {"GET /api/v1/agent-transactions"},
		"history":      {"GET /api/v1/agent-historical-swaps"},
	}
	full, _ := e.mint(keyOpts{scopes: []string{"full_access"}})
	for scope, eps := range endpoints {
		raw, _ := e.mint(keyOpts{scopes: []string{scope}})
		for _, ep := range eps {
			m, p, _ := strings.Cut(ep, " ")
			cases = append(cases,
				seedCase{scope + " reaches " + ep, m, p, xk(raw), 200, ""},
				seedCase{"full_access reaches " + ep, m, p, br(full), 200, ""})
			for other := range endpoints {
				if other == scope {
					continue
				}
				cases = append(cases, seedCase{other + " lacks " + ep, m, p, xk(mustScopeKey(t, e, other)), 403, `{"error":"API key missing required scope: ` + scope + `"}`})
			}
		}
	}
	cases = append(cases, seedCase{"signals key cannot DELETE", "DELETE", "/api/v1/trading-signals", xk(nexgentSeedKey), 403, `{"error":"API key missing required scope: full_access"}`})
	runSeedCases(t, e, cases)
}

var scopeKeys = map[*env]map[string]string{}

func mustScopeKey(t *testing.T, e *env, scope string) string {
	if scopeKeys[e] == nil {
		scopeKeys[e] = map[string]string{}
	}
	if k, ok := scopeKeys[e][scope]; ok {
		return k
	}
	raw, _ := e.mint(keyOpts{scopes: []string{scope}})
	scopeKeys[e][scope] = raw
	return raw
}

// TestNexgraphSeed replays the NexGraph authentication documentation's examples: Bearer only,
// read/write by method, project isolation, expiry, revocation, and the
// documented 401 and 403 bodies.
func TestNexgraphSeed(t *testing.T) {
	e := newEnv(t, "nexgraph.yaml")
	pid := uuid.NewString()
	other := uuid.NewString()
	rw, _ := e.mint(keyOpts{scopes: []string{"read", "write"}, project: pid})
	ro, _ := e.mint(keyOpts{scopes: []string{"read"}, project: pid})
	foreign, _ := e.mint(keyOpts{scopes: []string{"read", "write"}, project: other})
	exp := e.clock.Now().Add(time.Hour)
	temp, _ := e.mint(keyOpts{scopes: []string{"read", "write"}, project: pid, expires: &exp})
	gone, goneKey := e.mint(keyOpts{scopes: []string{"read"}, project: pid})
	if _, err := e.store.RevokeKey(goneKey.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(rw, "nxg_") || len(rw) != 68 || strings.ToLower(rw) != rw {
		t.Fatalf("minted key %q is not nxg_ + 64 lower-case hex", rw[:8])
	}
	br := func(k string) map[string]string { return map[string]string{"Authorization": "Bearer " + k} }
	keys := "/api/v1/projects/" + pid + "/api-keys"
	cases := []seedCase{
		{"create project is public", "POST", "/api/v1/projects", nil, 200, ""},
		{"list repositories", "GET", "/api/v1/repositories", br(ro), 200, ""},
		{"read key lists project keys", "GET", keys, br(ro), 200, ""},
		{"write key creates a key", "POST", keys, br(rw), 200, ""},
		{"read key cannot create", "POST", keys, br(ro), 403, nexgraphNeedsWrite},
		{"read key cannot delete", "DELETE", keys + "/k1", br(ro), 403, nexgraphNeedsWrite},
		{"read key cannot trigger indexing", "POST", "/api/v1/repositories", br(ro), 403, nexgraphNeedsWrite},
		{"other project's key", "GET", keys, br(foreign), 403, otherProject},
		{"other project's write key cannot create", "POST", keys, br(foreign), 403, otherProject},
		{"missing Authorization", "GET", "/api/v1/repositories", nil, 401, nexgraphInvalid},
		{"X-API-Key is not a source", "GET", "/api/v1/repositories", map[string]string{"X-API-Key": ro}, 401, nexgraphInvalid},
		{"invalid format", "GET", "/api/v1/repositories", br("nxg_a1b2c3d4e5f6"), 401, nexgraphInvalid},
		{"upper-case hex is another key format", "GET", "/api/v1/repositories", br(strings.ToUpper(ro[:4]) + strings.ToUpper(ro[4:])), 401, nexgraphInvalid},
		{"unknown key", "GET", "/api/v1/repositories", br("nxg_" + strings.Repeat("ab", 32)), 401, nexgraphInvalid},
		{"revoked key", "GET", "/api/v1/repositories", br(gone), 401, nexgraphInvalid},
		{"temp key before expiry", "GET", "/api/v1/repositories", br(temp), 200, ""},
		{"HEAD is read", "HEAD", keys, br(ro), 200, ""},
	}
	runSeedCases(t, e, cases)

	e.clock.Add(time.Hour) // expires_at <= now is expired
	runSeedCases(t, e, []seedCase{{"temp key after expiry", "GET", "/api/v1/repositories", br(temp), 401, nexgraphInvalid}})

	// No write-only key can read: permissions do not imply each other.
	wo, _ := e.mint(keyOpts{scopes: []string{"write"}, project: pid})
	runSeedCases(t, e, []seedCase{{"write-only key cannot read", "GET", keys, br(wo), 403, nexgraphNeedsRead}})
}
