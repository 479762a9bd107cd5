package admin

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// routeRequest turns a route pattern into a concrete request.
func routeRequest(pattern string) (method, path string) {
	method, path, _ = strings.Cut(pattern, " ")
	return method, regexp.MustCompile(`\{[a-z]+\}`).ReplaceAllString(path, "x")
}

// TestEveryRouteRequiresCredentials walks the route table: without a
// credential, or with a bad one, every route answers 401 with
// WWW-Authenticate, except POST /api/v1/projects when public creation is
// on. Credentials of the wrong kind get 403.
func TestEveryRouteRequiresCredentials(t *testing.T) {
	if len(routes) < 12 {
		t.Fatalf("route table has %d routes; want the 12 of docs/admin-api.md", len(routes))
	}
	private := newEnv(t, envConfig{})
	public := newEnv(t, envConfig{publicCreate: true})
	user := private.userToken("someone")
	for _, rt := range routes {
		method, path := routeRequest(rt.pattern)
		for _, tc := range []struct {
			name  string
			env   *testEnv
			token string
		}{
			{"no credential", private, ""},
			{"garbage credential", private, "not-a-key"},
			{"unknown key", private, "nex_" + strings.Repeat("z", 32)},
			{"no credential, public create on", public, ""},
		} {
			t.Run(rt.pattern+"/"+tc.name, func(t *testing.T) {
				r := tc.env.request(method, path, tc.token, `{}`)
				if rt.access == accessProjectCreate && tc.env == public {
					if r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
						t.Errorf("public project create = %d %s; want it open", r.status, r.raw)
					}
					return
				}
				if r.status != http.StatusUnauthorized {
					t.Fatalf("%s %s = %d %s; want 401", method, path, r.status, r.raw)
				}
				if got := r.header.Get("WWW-Authenticate"); got != `Bearer realm="admin"` {
					t.Errorf("WWW-Authenticate = %q", got)
				}
				r.errorMessage(t)
			})
		}
		if rt.access == accessOperator || rt.access == accessProjectCreate {
			t.Run(rt.pattern+"/user JWT", func(t *testing.T) {
				r := private.request(method, path, user, `{}`)
				if r.status != http.StatusForbidden {
					t.Errorf("%s %s with a user JWT = %d %s; want 403", method, path, r.status, r.raw)
				}
			})
		}
	}
	// Wrong Authorization shapes.
	for _, h := range []string{"Basic " + testAdminToken, "Bearer", "Bearer  ", testAdminToken, "Bearer " + testAdminToken + " extra"} {
		r := private.request("GET", "/api/v1/audit", "", nil, "Authorization", h)
		if r.status != http.StatusUnauthorized {
			t.Errorf("Authorization %q: status %d; want 401", strings.Replace(h, testAdminToken, "<token>", 1), r.status)
		}
	}
	// Two Authorization headers are refused even if one is right.
	req, _ := http.NewRequest("GET", private.http.URL+"/api/v1/audit", nil)
	req.Header.Add("Authorization", "Bearer "+testAdminToken)
	req.Header.Add("Authorization", "Bearer other")
	resp, err := private.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("two Authorization headers: %d; want 401", resp.StatusCode)
	}
	// Case-insensitive scheme.
	private.expect(private.request("GET", "/api/v1/audit", "", nil, "Authorization", "bearer "+testAdminToken), http.StatusOK, "lower-case scheme")
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/nope", http.StatusNotFound},
		{"GET", "/api/v1/projects", http.StatusMethodNotAllowed},
		{"PATCH", "/api/v1/api-keys", http.StatusMethodNotAllowed},
		{"GET", "/api/v1/users/x", http.StatusMethodNotAllowed},
		{"GET", "/replication/v1/snapshot", http.StatusNotFound},
	} {
		r := e.request(tc.method, tc.path, testAdminToken, nil)
		if r.status != tc.want {
			t.Errorf("%s %s = %d; want %d", tc.method, tc.path, r.status, tc.want)
			continue
		}
		r.errorMessage(t)
		if tc.want == http.StatusMethodNotAllowed && r.header.Get("Allow") == "" {
			t.Errorf("%s %s: 405 without Allow", tc.method, tc.path)
		}
	}
	if got := e.requestCount(unmatchedRoute, "404"); got != 2 {
		t.Errorf("unmatched 404 count = %v; want 2", got)
	}
}

func TestMetricsAndLogs(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := e.createNexKey(testAdminToken, `{"name":"m","scopes":["signals"]}`)
	e.request("GET", "/api/v1/api-keys/"+k["id"].(string), testAdminToken, nil)
	e.request("GET", "/api/v1/api-keys/other", testAdminToken, nil)
	e.request("DELETE", "/api/v1/api-keys/"+k["id"].(string), testAdminToken, nil)
	e.request("GET", "/api/v1/api-keys", "", nil)

	for _, tc := range []struct {
		route, code string
		want        float64
	}{
		{"POST /api/v1/api-keys", "201", 1},
		{"GET /api/v1/api-keys/{id}", "200", 1},
		{"GET /api/v1/api-keys/{id}", "404", 1},
		{"DELETE /api/v1/api-keys/{id}", "200", 1},
		{"GET /api/v1/api-keys", "401", 1},
	} {
		if got := e.requestCount(tc.route, tc.code); got != tc.want {
			t.Errorf("extauthz_admin_requests_total{route=%q,code=%q} = %v; want %v", tc.route, tc.code, got, tc.want)
		}
	}

	// One log line per change with the documented fields.
	var changes []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["message"] == "admin change" {
			changes = append(changes, m)
		}
	}
	if len(changes) != 2 {
		t.Fatalf("change log lines = %d; want 2 (create, revoke): %s", len(changes), e.logs.String())
	}
	for i, action := range []string{"key.create", "key.revoke"} {
		c := changes[i]
		for _, f := range []string{"actor", "action", "key_id", "key_prefix", "route", "status"} {
			if _, ok := c[f]; !ok {
				t.Errorf("change log %v lacks %s", c, f)
			}
		}
		if c["action"] != action || c["actor"] != "operator" || c["key_id"] != k["id"] || c["key_prefix"] != k["prefix"] {
			t.Errorf("change log %d = %v; want action %s by operator on %v", i, c, action, k["id"])
		}
	}
}

// TestConcurrentCreates checks that 16 concurrent creates all commit (they
// are coalesced by bbolt's Batch) and every key is there afterwards.
func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t, envConfig{})
	const n = 16
	type result struct {
		id, key string
		status  int
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			token := testAdminToken
			if i%2 == 1 {
				token = e.userToken("racer")
			}
			req, _ := http.NewRequest("POST", e.http.URL+"/api/v1/api-keys", strings.NewReader(`{"name":"racer","scopes":["signals"]}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := e.http.Client().Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			id, _ := m["id"].(string)
			key, _ := m["key"].(string)
			results[i] = result{id: id, key: key, status: resp.StatusCode}
		})
	}
	wg.Wait()
	list := e.expect(e.request("GET", "/api/v1/api-keys", testAdminToken, nil), http.StatusOK, "list").array(t)
	listed := map[string]bool{}
	for _, it := range list {
		listed[it.(map[string]any)["id"].(string)] = true
	}
	seen := map[string]bool{}
	for i, r := range results {
		if r.status != http.StatusCreated {
			t.Errorf("create %d: status %d", i, r.status)
			continue
		}
		if seen[r.id] {
			t.Errorf("id %s returned twice", r.id)
		}
		seen[r.id] = true
		if !listed[r.id] || !e.keyValid(r.key) {
			t.Errorf("key %s missing after the concurrent creates", r.id)
		}
	}
	if len(list) != n {
		t.Errorf("store lists %d keys; want %d", len(list), n)
	}
	if rev := e.store.Revision(); rev != n {
		t.Errorf("store revision = %d; want %d (one per create)", rev, n)
	}
}

func TestAuditAndUsers(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.createNexKey(testAdminToken, `{"name":"a","scopes":["signals"]}`)
	e.clock.Add(time.Minute)
	e.expect(e.request("PUT", "/api/v1/users/erin", testAdminToken, `{"active":false}`), http.StatusOK, "disable")
	r := e.expect(e.request("PUT", "/api/v1/users/erin", testAdminToken, `{"active":true}`), http.StatusOK, "enable")
	checkShape(t, "user response", r.object(t), map[string]string{"id": "string", "active": "bool"})

	all := e.expect(e.request("GET", "/api/v1/audit", testAdminToken, nil), http.StatusOK, "audit").array(t)
	if len(all) != 3 {
		t.Fatalf("audit = %d events; want 3", len(all))
	}
	first := all[0].(map[string]any)
	for _, f := range []string{"time", "actor", "action", "key_id"} {
		if _, ok := first[f]; !ok {
			t.Errorf("audit event %v lacks %s", first, f)
		}
	}
	if first["action"] != "key.create" || all[2].(map[string]any)["action"] != "user.enable" {
		t.Errorf("audit not oldest first: %v", all)
	}
	since := e.request("GET", "/api/v1/audit?since="+seedEpoch.Add(30*time.Second).Format(time.RFC3339)+"&limit=1", testAdminToken, nil).array(t)
	if len(since) != 1 || since[0].(map[string]any)["action"] != "user.disable" {
		t.Errorf("audit since+limit = %v; want the user.disable event", since)
	}
	for _, q := range []string{"?since=yesterday", "?limit=0", "?limit=10001", "?limit=x", "?since=2024-01-15"} {
		r := e.expect(e.request("GET", "/api/v1/audit"+q, testAdminToken, nil), http.StatusBadRequest, q)
		field := "since"
		if strings.Contains(q, "limit") {
			field = "limit"
		}
		if msg := r.errorMessage(t); !strings.HasPrefix(msg, field+":") {
			t.Errorf("%s: error %q does not name %s", q, msg, field)
		}
	}
	if got := e.request("GET", "/api/v1/audit?since=9999-01-01T00:00:00Z", testAdminToken, nil).array(t); len(got) != 0 {
		t.Errorf("audit since year 9999 = %v; want []", got)
	}
	for _, tc := range []struct{ path, body, field string }{
		{"/api/v1/users/erin", `{}`, "active"},
		{"/api/v1/users/erin", `{"active":"no"}`, "active"},
		{"/api/v1/users/%20erin", `{"active":true}`, "id"},
	} {
		r := e.expect(e.request("PUT", tc.path, testAdminToken, tc.body), http.StatusBadRequest, tc.body)
		if msg := r.errorMessage(t); !strings.Contains(msg, tc.field) {
			t.Errorf("PUT %s %s: error %q does not name %s", tc.path, tc.body, msg, tc.field)
		}
	}
}

// requestCount reads extauthz_admin_requests_total{route,code} from the
// registry the server registered with.
func (e *testEnv) requestCount(route, code string) float64 {
	e.t.Helper()
	mfs, err := e.registry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "extauthz_admin_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
