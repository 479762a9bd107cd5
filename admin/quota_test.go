package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/keystore"
)

func usageLimitOf(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("usage limit %v is not an object", v)
	}
	return m
}

// TestNexgentUsageLimit: usageLimit at create is shown as limit and
// remaining by create, get and list; uses reported reduce remaining;
// rotation carries the remaining count; the owner may only lower it, the
// operator refills or removes it; another user's key is a 404.
func TestNexgentUsageLimit(t *testing.T) {
	e := newEnv(t, envConfig{})
	jwt := e.userToken("carol")
	created := e.createNexKey(jwt, `{"name":"bot","scopes":["signals"],"usageLimit":1000}`)
	id := created["id"].(string)
	if q := usageLimitOf(t, created["usageLimit"]); q["limit"] != 1000.0 || q["remaining"] != 1000.0 {
		t.Fatalf("create answered usageLimit %v", created["usageLimit"])
	}
	if err := e.usage([]keystore.Usage{{KeyID: id, Count: 588}}); err != nil {
		t.Fatal(err)
	}
	got := e.expect(e.request("GET", "/api/v1/api-keys/"+id, jwt, ""), 200, "get").object(t)
	if q := usageLimitOf(t, got["usageLimit"]); q["limit"] != 1000.0 || q["remaining"] != 412.0 {
		t.Fatalf("get answered usageLimit %v", got["usageLimit"])
	}
	list := e.expect(e.request("GET", "/api/v1/api-keys", jwt, ""), 200, "list").array(t)
	if q := usageLimitOf(t, list[0].(map[string]any)["usageLimit"]); q["remaining"] != 412.0 {
		t.Fatalf("list answered usageLimit %v", q)
	}
	for _, body := range []string{`{"usageLimit":413}`, `{"usageLimit":null}`} {
		r := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, body), http.StatusForbidden, "owner "+body)
		if msg := r.errorMessage(t); !strings.Contains(msg, "usageLimit: only the operator token") {
			t.Fatalf("owner %s: %q", body, msg)
		}
	}
	patched := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, `{"usageLimit":400}`), 200, "owner lowers").object(t)
	if q := usageLimitOf(t, patched["usageLimit"]); q["limit"] != 400.0 || q["remaining"] != 400.0 {
		t.Fatalf("owner patch: %v", patched)
	}
	rotated := e.expect(e.request("POST", "/api/v1/api-keys/"+id+"/rotate", jwt, ""), 201, "rotate").object(t)
	nid := rotated["id"].(string)
	if q := usageLimitOf(t, rotated["usageLimit"]); q["limit"] != 400.0 || q["remaining"] != 400.0 {
		t.Fatalf("rotate answered usageLimit %v", rotated["usageLimit"])
	}
	both := e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, testAdminToken, `{"usageLimit":5000,"rateLimit":{"limit":10,"duration":"1s"}}`), 200, "operator refill").object(t)
	if q := usageLimitOf(t, both["usageLimit"]); q["remaining"] != 5000.0 || both["rateLimit"] == nil {
		t.Fatalf("operator patch of both: %v", both)
	}
	e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, e.userToken("mallory"), `{"usageLimit":1}`), 404, "another user's key")
	cleared := e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, testAdminToken, `{"usageLimit":null}`), 200, "operator removes").object(t)
	if _, ok := cleared["usageLimit"]; ok {
		t.Fatalf("removed quota still shown: %v", cleared)
	}
	if k, _ := e.store.GetKey(nid); k.Quota != nil {
		t.Fatalf("removed quota still stored: %+v", k.Quota)
	}
}

// TestUsageLimitRefused: bad usage limits are a 400 naming the field, in
// a create and in a PATCH of both dialects, and nothing is stored.
func TestUsageLimitRefused(t *testing.T) {
	e := newEnv(t, envConfig{})
	jwt := e.userToken("carol")
	id := e.createNexKey(jwt, `{"name":"bot","scopes":["signals"]}`)["id"].(string)
	bad := map[string]string{
		`0`:             "must be an integer from 1 to 1000000000000, got 0",
		`-5`:            "must be an integer from 1 to 1000000000000, got -5",
		`1000000000001`: "must be an integer from 1 to 1000000000000, got 1000000000001",
		`1.5`:           "must be an integer, got number",
		`"100"`:         "must be an integer, got string",
		`{"limit":100}`: "must be an integer, got object",
		`true`:          "must be an integer, got bool",
	}
	for body, want := range bad {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/v1/api-keys", `{"name":"x","scopes":["signals"],"usageLimit":` + body + `}`},
			{"PATCH", "/api/v1/api-keys/" + id, `{"usageLimit":` + body + `}`},
		} {
			r := e.expect(e.request(req.method, req.path, testAdminToken, req.body), http.StatusBadRequest, req.method+" "+body)
			if msg := r.errorMessage(t); !strings.Contains(msg, "usageLimit: "+want) {
				t.Errorf("%s usageLimit %s: %q; want it to contain %q", req.method, body, msg, "usageLimit: "+want)
			}
		}
	}
	r := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, testAdminToken, `{"usageLimit":10,"usage":1}`), http.StatusBadRequest, "unknown member")
	if msg := r.errorMessage(t); !strings.Contains(msg, "usage: unknown field") {
		t.Errorf("unknown member: %q", msg)
	}
	if k, _ := e.store.GetKey(id); k.Quota != nil {
		t.Fatalf("a refused request stored a quota: %+v", k.Quota)
	}

	g := newEnv(t, envConfig{policy: nexgraphPolicy})
	pid, _, raw := g.createProject(testAdminToken, "acme")
	created := g.expect(g.request("POST", "/api/v1/projects/"+pid+"/api-keys", raw, `{"permissions":["read"],"label":"ci","usage_limit":50}`), 201, "create").object(t)
	kid := created["id"].(string)
	if q := usageLimitOf(t, created["usage_limit"]); q["limit"] != 50.0 || q["remaining"] != 50.0 {
		t.Fatalf("NexGraph create answered usage_limit %v", created["usage_limit"])
	}
	for body, want := range bad {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/v1/projects/" + pid + "/api-keys", `{"permissions":["read"],"label":"x","usage_limit":` + body + `}`},
			{"PATCH", "/api/v1/projects/" + pid + "/api-keys/" + kid, `{"usage_limit":` + body + `}`},
		} {
			r := g.expect(g.request(req.method, req.path, raw, req.body), http.StatusBadRequest, req.method+" "+body)
			if msg := r.errorMessage(t); !strings.Contains(msg, "usage_limit: "+want) {
				t.Errorf("NexGraph %s usage_limit %s: %q; want it to contain %q", req.method, body, msg, "usage_limit: "+want)
			}
		}
	}
	g.expect(g.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, raw, `{"usage_limit":51}`), 403, "a project key refills")
	patched := g.expect(g.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, raw, `{"usage_limit":20}`), 200, "a project key lowers").object(t)
	if q := usageLimitOf(t, patched["usage_limit"]); q["remaining"] != 20.0 {
		t.Fatalf("NexGraph patch: %v", patched)
	}
	list := g.expect(g.request("GET", "/api/v1/projects/"+pid+"/api-keys", raw, ""), 200, "list").array(t)
	found := false
	for _, item := range list {
		if m := item.(map[string]any); m["id"] == kid {
			found = usageLimitOf(t, m["usage_limit"])["limit"] == 20.0
		}
	}
	if !found {
		t.Fatalf("NexGraph list does not show the usage limit: %v", list)
	}
	g.expect(g.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, testAdminToken, `{"usage_limit":null}`), 200, "operator removes")
}

// usesBeforeQuota is a Writer that records uses of a key just before each
// change of its quota: a usage report applied between the API's read of
// the key and its write.
type usesBeforeQuota struct {
	Writer
	usage func([]keystore.Usage) error
	n     uint64
}

func (w usesBeforeQuota) report(id string) {
	if err := w.usage([]keystore.Usage{{KeyID: id, Count: w.n}}); err != nil {
		panic(err)
	}
}

func (w usesBeforeQuota) SetKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error) {
	w.report(id)
	return w.Writer.SetKeyQuota(id, limit, actor)
}

func (w usesBeforeQuota) LowerKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error) {
	w.report(id)
	return w.Writer.LowerKeyQuota(id, limit, actor)
}

// TestHolderCannotRefillQuotaInARace: a holder "lowers" the quota to the
// remaining count it read, while uses reported meanwhile bring the count
// below it. The check is made again as the write is applied: the holder
// gets the 403, and the uses stay subtracted (setting the limit it read
// would have given them back, a refill in the holder's hands).
func TestHolderCannotRefillQuotaInARace(t *testing.T) {
	e := newEnv(t, envConfig{wrapWriter: func(w Writer, usage func([]keystore.Usage) error) Writer {
		return usesBeforeQuota{Writer: w, usage: usage, n: 100}
	}})
	jwt := e.userToken("carol")
	id := e.createNexKey(jwt, `{"name":"bot","scopes":["signals"],"usageLimit":1000}`)["id"].(string)
	r := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, `{"usageLimit":1000}`), http.StatusForbidden, "owner sets the remaining count it read")
	if msg := r.errorMessage(t); !strings.Contains(msg, "usageLimit: only the operator token") {
		t.Fatalf("owner: %q", msg)
	}
	got := e.expect(e.request("GET", "/api/v1/api-keys/"+id, testAdminToken, ""), 200, "get").object(t)
	if q := usageLimitOf(t, got["usageLimit"]); q["remaining"] != 900.0 {
		t.Fatalf("after the holder's patch: usageLimit %v, want 900 remaining", got["usageLimit"])
	}
	patched := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, `{"usageLimit":500}`), 200, "owner lowers").object(t)
	if q := usageLimitOf(t, patched["usageLimit"]); q["limit"] != 500.0 || q["remaining"] != 500.0 {
		t.Fatalf("owner lowers: %v", patched["usageLimit"])
	}
}
