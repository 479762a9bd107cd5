package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

func storedLimit(t *testing.T, e *testEnv, id string) *keystore.RateLimit {
	t.Helper()
	k, err := e.store.GetKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k.RateLimit
}

// TestNexgentRateLimit: rateLimit is set at create, shown by get and list,
// carried over by rotate, tightened by the owner's PATCH, loosened and
// removed by the operator's only, and another user's key is a 404.
func TestNexgentRateLimit(t *testing.T) {
	e := newEnv(t, envConfig{})
	jwt := e.userToken("carol")
	created := e.createNexKey(jwt, `{"name":"bot","scopes":["signals"],"rateLimit":{"limit":100,"duration":"1m"}}`)
	id := created["id"].(string)
	want := map[string]any{"limit": 100.0, "duration": "1m"}
	if got, _ := created["rateLimit"].(map[string]any); got["limit"] != want["limit"] || got["duration"] != want["duration"] {
		t.Fatalf("create answered rateLimit %v", created["rateLimit"])
	}
	if l := storedLimit(t, e, id); l == nil || *l != (keystore.RateLimit{Limit: 100, Duration: time.Minute}) {
		t.Fatalf("stored %v", l)
	}
	got := e.expect(e.request("GET", "/api/v1/api-keys/"+id, jwt, nil), 200, "get").object(t)
	if rl := got["rateLimit"].(map[string]any); rl["duration"] != "1m" {
		t.Fatalf("get: %v", got)
	}
	list := e.expect(e.request("GET", "/api/v1/api-keys", jwt, nil), 200, "list").array(t)
	if rl := list[0].(map[string]any)["rateLimit"].(map[string]any); rl["limit"] != 100.0 {
		t.Fatalf("list: %v", list)
	}
	patched := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, `{"rateLimit":{"limit":5,"duration":"1h"}}`), 200, "owner patch").object(t)
	if rl := patched["rateLimit"].(map[string]any); rl["limit"] != 5.0 || rl["duration"] != "1h" {
		t.Fatalf("patch answered %v", patched)
	}
	e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, testAdminToken, `{"rateLimit":{"limit":7,"duration":"1d"}}`), 200, "operator patch")
	if l := storedLimit(t, e, id); *l != (keystore.RateLimit{Limit: 7, Duration: 24 * time.Hour}) {
		t.Fatalf("after operator patch: %v", l)
	}
	e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, e.userToken("mallory"), `{"rateLimit":null}`), 404, "another user's key")
	rotated := e.expect(e.request("POST", "/api/v1/api-keys/"+id+"/rotate", jwt, nil), 201, "rotate").object(t)
	if rl := rotated["rateLimit"].(map[string]any); rl["limit"] != 7.0 || rl["duration"] != "24h" {
		t.Fatalf("rotate did not carry the limit over: %v", rotated)
	}
	nid := rotated["id"].(string)
	// The owner may tighten but never lift the limit that applies.
	for _, body := range []string{`{"rateLimit":null}`, `{"rateLimit":{"limit":8,"duration":"1d"}}`, `{"rateLimit":{"limit":7,"duration":"1h"}}`} {
		r := e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, jwt, body), http.StatusForbidden, "owner loosens: "+body)
		if !strings.Contains(r.errorMessage(t), "rateLimit") {
			t.Errorf("%s: %q does not name the field", body, r.errorMessage(t))
		}
	}
	if l := storedLimit(t, e, nid); l == nil || *l != (keystore.RateLimit{Limit: 7, Duration: 24 * time.Hour}) {
		t.Fatalf("a refused PATCH changed the limit: %v", l)
	}
	cleared := e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, testAdminToken, `{"rateLimit":null}`), 200, "operator removes").object(t)
	if _, ok := cleared["rateLimit"]; ok || storedLimit(t, e, nid) != nil {
		t.Fatalf("null did not remove the limit: %v", cleared)
	}
	e.expect(e.request("DELETE", "/api/v1/api-keys/"+nid, jwt, nil), 200, "revoke")
	e.expect(e.request("PATCH", "/api/v1/api-keys/"+nid, jwt, `{"rateLimit":null}`), 404, "revoked key")
}

// TestRateLimitRefused: bad limits are a 400 naming the field, in both
// dialects, at create and PATCH, and nothing is stored.
func TestRateLimitRefused(t *testing.T) {
	e := newEnv(t, envConfig{})
	jwt := e.userToken("carol")
	k := e.createNexKey(jwt, `{"name":"bot","scopes":["signals"]}`)
	id := k["id"].(string)
	for body, want := range map[string]string{
		`{"limit":0,"duration":"1m"}`:            "rateLimit.limit: must be an integer from 1 to 1000000000, got 0",
		`{"limit":-5,"duration":"1m"}`:           "rateLimit.limit: must be an integer from 1 to 1000000000, got -5",
		`{"limit":1.5,"duration":"1m"}`:          "limit",
		`{"limit":10,"duration":"0s"}`:           "rateLimit.duration: must be a whole number of seconds from 1s to 24h, got 0s",
		`{"limit":10,"duration":"-1m"}`:          "rateLimit.duration: must be a whole number of seconds",
		`{"limit":10,"duration":"100000h"}`:      "rateLimit.duration: must be a whole number of seconds from 1s to 24h, got 100000h",
		`{"limit":10,"duration":"1ms"}`:          "rateLimit.duration: must be a whole number of seconds",
		`{"limit":10,"duration":"soon"}`:         `rateLimit.duration: must be a duration such as "1s", "1m", "1h" or "1d", got "soon"`,
		`{"limit":10}`:                           "rateLimit.duration: required",
		`{"duration":"1m"}`:                      "rateLimit.limit: required",
		`{"limit":10,"duration":"1m","burst":5}`: `rateLimit: unknown field "burst"`,
		`"100/1m"`:                               "rateLimit",
	} {
		for _, req := range []struct{ method, path, body string }{
			{"POST", "/api/v1/api-keys", `{"name":"x","scopes":["signals"],"rateLimit":` + body + `}`},
			{"PATCH", "/api/v1/api-keys/" + id, `{"rateLimit":` + body + `}`},
		} {
			r := e.expect(e.request(req.method, req.path, jwt, req.body), http.StatusBadRequest, req.method+" "+body)
			if msg := r.errorMessage(t); !strings.Contains(msg, want) {
				t.Errorf("%s %s: %q; want it to contain %q", req.method, body, msg, want)
			}
		}
	}
	for body, want := range map[string]string{
		`{}`:           "rateLimit: required",
		`{"name":"x"}`: "name: unknown field (only rateLimit and usageLimit can be changed)",
		`{"rate_limit":{"limit":1,"duration":"1s"}}`: "rate_limit: unknown field",
	} {
		r := e.expect(e.request("PATCH", "/api/v1/api-keys/"+id, jwt, body), http.StatusBadRequest, "PATCH "+body)
		if msg := r.errorMessage(t); !strings.Contains(msg, want) {
			t.Errorf("PATCH %s: %q; want it to contain %q", body, msg, want)
		}
	}
	if storedLimit(t, e, id) != nil {
		t.Fatal("a refused PATCH stored a limit")
	}
}

// TestNexGraphRateLimit: rate_limit at create, in the list, changed by
// PATCH with the write permission (tighter only), refused without it.
func TestNexGraphRateLimit(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy})
	pid, _, raw := e.createProject(testAdminToken, "acme")
	created := e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", raw,
		`{"permissions":["read"],"label":"ci","rate_limit":{"limit":60,"duration":"1m"}}`), 201, "create").object(t)
	kid := created["id"].(string)
	if rl := created["rate_limit"].(map[string]any); rl["limit"] != 60.0 || rl["duration"] != "1m" {
		t.Fatalf("create: %v", created)
	}
	list := e.expect(e.request("GET", "/api/v1/projects/"+pid+"/api-keys", raw, nil), 200, "list").array(t)
	found := false
	for _, v := range list {
		m := v.(map[string]any)
		if m["id"] == kid {
			found = m["rate_limit"].(map[string]any)["limit"] == 60.0
		}
	}
	if !found {
		t.Fatalf("list does not show the limit: %v", list)
	}
	r := e.expect(e.request("POST", "/api/v1/projects/"+pid+"/api-keys", raw, `{"permissions":["read"],"label":"x","rate_limit":{"limit":0,"duration":"1m"}}`), 400, "bad create")
	if msg := r.errorMessage(t); !strings.Contains(msg, "rate_limit.limit: must be an integer") {
		t.Fatalf("bad create: %q", msg)
	}
	e.expect(e.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, raw, `{"rate_limit":{"limit":10,"duration":"1s"}}`), 403, "a project key loosens 60/1m to 10/1s")
	patched := e.expect(e.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, raw, `{"rate_limit":{"limit":10,"duration":"1m"}}`), 200, "patch").object(t)
	if rl := patched["rate_limit"].(map[string]any); rl["limit"] != 10.0 || rl["duration"] != "1m" {
		t.Fatalf("patch: %v", patched)
	}
	readOnly := created["key"].(string)
	e.expect(e.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, readOnly, `{"rate_limit":null}`), 403, "read-only key")
	r = e.expect(e.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, raw, `{"rate_limit":{"limit":10,"duration":"1w"}}`), 400, "bad patch")
	if msg := r.errorMessage(t); !strings.Contains(msg, "rate_limit.duration") {
		t.Fatalf("bad patch: %q", msg)
	}
	e.expect(e.request("PATCH", "/api/v1/projects/"+pid+"/api-keys/"+kid, testAdminToken, `{"rate_limit":null}`), 200, "operator removes")
	if storedLimit(t, e, kid) != nil {
		t.Fatal("operator PATCH null did not remove the limit")
	}
}
