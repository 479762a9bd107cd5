package authz_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/forwardauth"
	"github.com/extauthz/extauthz/policy"
)

// viaNginx sends what nginx auth_request sends with the documented
// configuration: GET /auth with the original request in X-Original-*.
func (e *env) viaNginx(method, path string, hdr map[string]string) result {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.httpURL+"/auth", nil)
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", path)
	req.Header.Set("X-Forwarded-Host", "api.example.com")
	req.Header.Set("X-Real-IP", "203.0.113.7")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

// viaEnvoyHTTP sends what Envoy's HTTP ext_authz sends with path_prefix
// /auth: the original method, and /auth followed by the original path.
func (e *env) viaEnvoyHTTP(method, path string, hdr map[string]string) result {
	e.t.Helper()
	req, err := http.NewRequest(method, e.httpURL+"/auth", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.URL.Opaque = "/auth" + path // sent as is, not re-escaped
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

// allDoors are the four ways a request reaches a decision.
var allDoors = []door{
	{"envoy-grpc", (*env).viaEnvoy},
	{"traefik", (*env).viaTraefik},
	{"nginx", (*env).viaNginx},
	{"envoy-http", (*env).viaEnvoyHTTP},
}

// outcome is what a spelling must get, the same through every door.
type outcome int

const (
	allowed         outcome = iota
	noKey                   // 401
	noScope                 // 403, missing scope
	notProject              // 403, other project
	ambiguous               // 400 (HTTP doors), 403 denied_response (gRPC)
	ambiguousMethod         // the same, "ambiguous request method"
)

func (o outcome) check(t *testing.T, d string, got result) {
	t.Helper()
	wantStatus, wantBody := map[outcome]int{allowed: 200, noKey: 401, noScope: 403, notProject: 403, ambiguous: 400, ambiguousMethod: 400}[o], ""
	switch o {
	case ambiguous, ambiguousMethod:
		wantBody = `{"error":"ambiguous request path"}`
		if o == ambiguousMethod {
			wantBody = `{"error":"ambiguous request method"}`
		}
		if d == "envoy-grpc" {
			wantStatus = 403
		}
	case notProject:
		wantBody = `{"error":"Forbidden: API key does not belong to this project"}`
	}
	if got.status != wantStatus || (wantBody != "" && got.body != wantBody) {
		t.Errorf("got %d %s; want %d %s", got.status, got.body, wantStatus, wantBody)
	}
}

// TestSpellingsNexgent: every spelling of a path that some mainstream
// upstream reads as another resource (servlet ";" parameters and "..;",
// double decoding, Unicode dots, case) is refused as ambiguous through every
// door, while the spellings the Nexgent and NexGraph documentation uses are judged as before.
func TestSpellingsNexgent(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	agents, _ := e.mint(keyOpts{scopes: []string{"agents"}})
	type row struct {
		method, path string
		key          string
		want         outcome
	}
	rows := []row{
		// What the seeds do.
		{"GET", "/api/v1/trading-signals", signals, allowed},
		{"POST", "/api/v1/trading-signals", signals, allowed},
		{"GET", "/api/v1/agents/AB12?page=2", agents, allowed},
		{"GET", "/api/v1/agents", signals, noScope},
		{"GET", "/healthz", "", allowed},
		{"GET", "/api/v1/api-keys", "", allowed},
		// ..; and friends: Tomcat serves /api/v1/agents, /api/v1/admin/users.
		{"GET", "/api/v1/trading-signals/..;/agents", signals, ambiguous},
		{"GET", "/api/v1/trading-signals/..;/admin/users", signals, ambiguous},
		{"GET", "/api/v1/api-keys/..;/agents", "", ambiguous},
		{"GET", "/api/v1/trading-signals/..%3b/agents", signals, ambiguous},
		{"GET", "/api/v1/trading-signals/..%3B/agents", signals, ambiguous},
		{"GET", "/api/v1/trading-signals/%252e%252e/agents", signals, ambiguous},
		{"GET", "/api/v1/trading-signals/%EF%BC%8E%EF%BC%8E/agents", signals, ambiguous},
		{"GET", "/api/v1/trading-signals;x=1", signals, ambiguous},
		// Raw dot segments and empty segments: Express reads them
		// literally, so they are refused rather than resolved.
		{"GET", "/api/v1/trading-signals/../agents", signals, ambiguous},
		{"GET", "/api/v1/agents/../trading-signals", agents, ambiguous},
		{"GET", "/api/v1//agents", agents, ambiguous},
		// Case: Express and ASP.NET Core route without it.
		{"GET", "/HEALTHZ", "", ambiguous},
		{"GET", "/API/v1/api-keys", "", ambiguous},
		{"GET", "/api/v1/Trading-Signals", signals, ambiguous},
		// A method in lower case is refused: routes list upper-case
		// methods, and Django's views and ASP.NET Core's routing run
		// "delete" as DELETE.
		{"get", "/api/v1/agents", agents, ambiguousMethod},
		{"get", "/healthz", "", ambiguousMethod},
		{"Delete", "/api/v1/trading-signals/1", signals, ambiguousMethod},
	}
	for _, d := range allDoors {
		for _, r := range rows {
			t.Run(d.name+" "+r.method+" "+r.path, func(t *testing.T) {
				hdr := map[string]string{}
				if r.key != "" {
					hdr["X-API-Key"] = r.key
				}
				r.want.check(t, d.name, d.check(e, r.method, r.path, hdr))
			})
		}
	}
}

// TestSpellingsNexgraph: project isolation holds against every spelling of
// another project's path, through every door.
func TestSpellingsNexgraph(t *testing.T) {
	e := newEnv(t, "nexgraph.yaml")
	const pa, pb = "0b6f6a36-0d0c-4d1e-9a43-4a3a2f0f7a11", "7f9c1c9e-5a53-4d8a-8f3b-1c2d3e4f5a6b"
	keyA, _ := e.mint(keyOpts{scopes: []string{"read", "write"}, project: pa})
	readA, _ := e.mint(keyOpts{scopes: []string{"read"}, project: pa})
	type row struct {
		method, path string
		key          string
		want         outcome
	}
	rows := []row{
		{"GET", "/api/v1/projects/" + pa + "/graph", keyA, allowed},
		{"DELETE", "/api/v1/projects/" + pa + "/graph", keyA, allowed},
		{"DELETE", "/api/v1/projects/" + pa + "/graph", readA, noScope},
		{"GET", "/api/v1/repositories", readA, allowed},
		{"POST", "/api/v1/projects", "", allowed},
		{"POST", "/api/v1/projects/", "", allowed},
		{"GET", "/api/v1/projects/" + pb + "/graph", keyA, notProject},
		{"DELETE", "/api/v1/projects/" + pb + "/graph", keyA, notProject},
		{"PURGE", "/api/v1/projects/" + pb, keyA, notProject},
		// Case and ';': Express, ASP.NET Core and servlet containers
		// all serve project B's graph for these.
		{"GET", "/api/v1/PROJECTS/" + pb + "/graph", keyA, ambiguous},
		{"DELETE", "/api/v1/Projects/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1/projects;/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1;x/projects/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1/projects%3b/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1/%2570rojects/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1/projects/" + pa + "/..;/" + pb + "/graph", keyA, ambiguous},
		{"GET", "/api/v1/projects/" + pa + "/../" + pb + "/graph", keyA, ambiguous},
		// The public project creation in spellings the proxies route
		// elsewhere.
		{"POST", "/api/v1/projects//", "", ambiguous},
		{"POST", "/api/v1/projects/x/..", "", ambiguous},
		{"POST", "/API/v1/projects", "", ambiguous},
	}
	for _, d := range allDoors {
		for _, r := range rows {
			t.Run(d.name+" "+r.method+" "+r.path, func(t *testing.T) {
				hdr := map[string]string{}
				if r.key != "" {
					hdr["Authorization"] = "Bearer " + r.key
				}
				r.want.check(t, d.name, d.check(e, r.method, r.path, hdr))
			})
		}
	}
}

// TestForwardedHeaderFamilies: the HTTP door takes the original request
// from one proxy's headers. A request that carries another family's
// headers, repeats one, or carries none is refused with 400 instead of
// guessed, under auto and under each named family.
func TestForwardedHeaderFamilies(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	trusted, _ := forwardauth.ParseTrustedProxies([]string{"127.0.0.0/8"})
	urls := map[string]string{}
	for _, f := range forwardauth.Families {
		urls[f] = serveHTTP(t, forwardauth.New(e.a, trusted, f).Handler(http.NotFoundHandler()))
	}
	type hdr [2]string
	traefikForm := []hdr{{"X-Forwarded-Method", "DELETE"}, {"X-Forwarded-Uri", "/api/v1/agents/123"}}
	nginxForm := []hdr{{"X-Original-Method", "DELETE"}, {"X-Original-URI", "/api/v1/agents/123"}}
	spoof := []hdr{{"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Method", "GET"}}
	const conflict, denied = 400, 401
	cases := []struct {
		name   string
		target string
		hdrs   []hdr
		want   map[string]int // family -> status; missing families: want["*"]
	}{
		{"nginx form with a client's X-Forwarded-* (the nginx bypass)", "/auth", append(append([]hdr{}, nginxForm...), spoof...),
			map[string]int{"*": conflict}},
		{"traefik form with a client's X-Original-*", "/auth", append(append([]hdr{}, traefikForm...), hdr{"X-Original-URI", "/healthz"}, hdr{"X-Original-Method", "GET"}),
			map[string]int{"*": conflict}},
		{"repeated X-Forwarded-Uri, public first", "/auth", []hdr{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Uri", "/healthz"}, {"X-Forwarded-Uri", "/api/v1/agents"}},
			map[string]int{"*": conflict}},
		{"repeated X-Forwarded-Method", "/auth", []hdr{{"X-Forwarded-Method", "GET"}, {"X-Forwarded-Method", "DELETE"}, {"X-Forwarded-Uri", "/healthz"}},
			map[string]int{"*": conflict}},
		{"repeated X-Original-URI", "/auth", []hdr{{"X-Original-Method", "GET"}, {"X-Original-URI", "/healthz"}, {"X-Original-URI", "/api/v1/agents"}},
			map[string]int{"*": conflict}},
		{"repeated X-Forwarded-Host", "/auth", append(append([]hdr{}, traefikForm...), hdr{"X-Forwarded-Host", "a"}, hdr{"X-Forwarded-Host", "b"}),
			map[string]int{"*": conflict}},
		{"method without URI", "/auth", []hdr{{"X-Forwarded-Method", "GET"}},
			map[string]int{"*": conflict}},
		{"URI without method", "/auth", []hdr{{"X-Original-URI", "/healthz"}},
			map[string]int{"*": conflict}},
		{"Envoy HTTP form with a client's X-Forwarded-Uri", "/auth/api/v1/agents/123", spoof,
			map[string]int{"*": conflict}},
		{"no forwarded request", "/auth", nil,
			map[string]int{"*": conflict}},
		{"traefik form", "/auth", traefikForm,
			map[string]int{"*": conflict, forwardauth.FamilyAuto: denied, forwardauth.FamilyTraefik: denied}},
		{"nginx form", "/auth", nginxForm,
			map[string]int{"*": conflict, forwardauth.FamilyAuto: denied, forwardauth.FamilyNginx: denied}},
		{"Envoy HTTP form", "/auth/api/v1/agents/123", nil,
			map[string]int{"*": conflict, forwardauth.FamilyAuto: denied, forwardauth.FamilyEnvoy: denied}},
		{"lower-case header names", "/auth", []hdr{{"x-forwarded-method", "GET"}, {"x-forwarded-uri", "/healthz"}, {"x-original-uri", "/healthz"}},
			map[string]int{"*": conflict}},
	}
	for _, c := range cases {
		for _, f := range forwardauth.Families {
			want, ok := c.want[f]
			if !ok {
				want = c.want["*"]
			}
			t.Run(f+"/"+c.name, func(t *testing.T) {
				var req fasthttp.Request
				req.Header.DisableNormalizing()
				req.SetRequestURI(urls[f] + c.target)
				if strings.HasPrefix(c.target, "/auth/") {
					req.Header.SetMethod("DELETE")
				} else {
					req.Header.SetMethod("GET")
				}
				for _, h := range c.hdrs {
					req.Header.Add(h[0], h[1])
				}
				var resp fasthttp.Response
				if err := fasthttp.Do(&req, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.StatusCode() != want {
					t.Errorf("%d %s; want %d", resp.StatusCode(), resp.Body(), want)
				}
				if want == conflict && string(resp.Body()) != `{"error":"ambiguous forwarded request"}` {
					t.Errorf("body %s", resp.Body())
				}
			})
		}
	}
}

// TestSourceIPFromTheFamily: the logged client address comes from the
// header of the family that carried the request, and only as the proxy
// itself wrote it: the last X-Forwarded-For entry (Traefik), X-Real-IP
// (nginx), else the peer. A client's own X-Forwarded-For through nginx or
// a first entry it made up through Traefik never reaches the log.
func TestSourceIPFromTheFamily(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	for _, c := range []struct {
		name string
		hdr  map[string][]string
		want string
	}{
		{"traefik: last X-Forwarded-For entry", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/x1"}, "X-Forwarded-For": {"6.6.6.6, 198.51.100.7"}}, "198.51.100.7"},
		{"traefik: not an address", map[string][]string{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/x2"}, "X-Forwarded-For": {"evil"}}, "127.0.0.1"},
		{"nginx: X-Real-IP, not X-Forwarded-For", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-URI": {"/x3"}, "X-Forwarded-For": {"6.6.6.6"}, "X-Real-IP": {"198.51.100.8"}}, "198.51.100.8"},
		{"nginx: no X-Real-IP is the peer", map[string][]string{"X-Original-Method": {"GET"}, "X-Original-URI": {"/x4"}, "X-Forwarded-For": {"6.6.6.6"}}, "127.0.0.1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.httpURL+"/auth", nil)
			for k, vs := range c.hdr {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			if got := e.do(req); got.status != 401 {
				t.Fatalf("status %d %s", got.status, got.body)
			}
			path := c.hdr["X-Forwarded-Uri"]
			if path == nil {
				path = c.hdr["X-Original-URI"]
			}
			line := ""
			for l := range strings.SplitSeq(e.logs.String(), "\n") {
				if strings.Contains(l, `"path":"`+path[0]+`"`) {
					line = l
				}
			}
			if !strings.Contains(line, `"source_ip":"`+c.want+`"`) {
				t.Errorf("log line %s; want source_ip %s", line, c.want)
			}
		})
	}
}

// TestKeyWhitespace: only the spaces and tabs HTTP allows around a value
// are trimmed from a key; a key wrapped in a no-break space is not the key.
func TestKeyWhitespace(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	for _, c := range []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{"X-API-Key": " \t" + signals + "\t "}, 200},
		{map[string]string{"Authorization": "Bearer \t" + signals + " "}, 200},
		{map[string]string{"X-API-Key": "\u00a0" + signals + "\u00a0"}, 401},
		{map[string]string{"Authorization": "Bearer \u00a0" + signals}, 401},
		{map[string]string{"X-API-Key": "\u2003" + signals}, 401},
		{map[string]string{"X-API-Key": signals + "\u3000"}, 401},
	} {
		if got := e.viaEnvoy("GET", "/api/v1/trading-signals", c.hdr); got.status != c.want {
			t.Errorf("%q: %d %s; want %d", c.hdr, got.status, got.body, c.want)
		}
	}
}

// TestMethodOverrideRefused: a POST that a framework would run as another
// method (X-HTTP-Method-Override and its kin, or ?_method=) is refused
// through every door, since the policy judges methods and cannot know
// whether the upstream honours the override.
func TestMethodOverrideRefused(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	cases := []struct {
		path string
		hdr  map[string]string
	}{
		{"/api/v1/trading-signals/123", map[string]string{"X-HTTP-Method-Override": "DELETE"}},
		{"/api/v1/trading-signals/123", map[string]string{"X-HTTP-Method": "DELETE"}},
		{"/api/v1/trading-signals/123", map[string]string{"x-method-override": "DELETE"}},
		{"/api/v1/trading-signals/123?_method=DELETE", nil},
		{"/api/v1/trading-signals/123?a=1&_METHOD=put", nil},
		// Header names as CGI, PHP and Rack read them.
		{"/api/v1/trading-signals/123", map[string]string{"X_HTTP_Method_Override": "DELETE"}},
		{"/api/v1/trading-signals/123", map[string]string{"x_method_override": "DELETE"}},
		{"/api/v1/trading-signals/123", map[string]string{"X-HTTP_Method-Override": "DELETE"}},
		{"/api/v1/trading-signals/123", map[string]string{"X.HTTP.Method.Override": "DELETE"}},
		// Parameter names as frameworks decode them (Express, PHP, a
		// server that decodes twice), and Traefik's ';' for '&'.
		{"/api/v1/trading-signals/123?%5Fmethod=DELETE", nil},
		{"/api/v1/trading-signals/123?%5fmethod=DELETE", nil},
		{"/api/v1/trading-signals/123?_metho%64=DELETE", nil},
		{"/api/v1/trading-signals/123?%255Fmethod=DELETE", nil},
		{"/api/v1/trading-signals/123?x%2Dhttp%2Dmethod%2Doverride=DELETE", nil},
		{"/api/v1/trading-signals/123?.method=DELETE", nil},
		{"/api/v1/trading-signals/123?%20_method=DELETE", nil},
		{"/api/v1/trading-signals/123?_method[]=DELETE", nil},
		{"/api/v1/trading-signals/123?a=1;_method=DELETE", nil},
		// PHP reads a name as a C string, up to its first NUL.
		{"/api/v1/trading-signals/123?_method%00x=DELETE", nil},
		{"/api/v1/trading-signals/123?%20_method%00.x=DELETE", nil},
		{"/api/v1/trading-signals/123?_method%00%5B%5D=DELETE", nil},
		// php -S and URLSearchParams drop a leading '?'; Hono before
		// 4.10.8 finds "?_method" anywhere; Rack and qs drop brackets
		// around a name; PHP reads an unmatched '[' as '_'.
		{"/api/v1/trading-signals/123??_method=DELETE", nil},
		{"/api/v1/trading-signals/123?a=x?_method=DELETE", nil},
		{"/api/v1/trading-signals/123?[_method]=DELETE", nil},
		{"/api/v1/trading-signals/123?%5B_method%5D=DELETE", nil},
		{"/api/v1/trading-signals/123?]_method=DELETE", nil},
		{"/api/v1/trading-signals/123?x[http_method_override=PUT", nil},
		// A form body the door never sees could hold _method.
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "Application/X-WWW-Form-Urlencoded; charset=utf-8"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "multipart/form-data; boundary=x"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "application/json, application/x-www-form-urlencoded"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "json"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": ""}},
		{"/api/v1/trading-signals/123", map[string]string{"Content_Type": "application/x-www-form-urlencoded"}},
		{"/api/v1/trading-signals/123", map[string]string{"Content-Type": "application/json", "Content_Type": "application/json"}},
	}
	for _, d := range allDoors {
		for _, c := range cases {
			hdr := map[string]string{"X-API-Key": signals}
			for k, v := range c.hdr {
				hdr[k] = v
			}
			got := d.check(e, "POST", c.path, hdr)
			want := 400
			if d.name == "envoy-grpc" {
				want = 403
			}
			if got.status != want || got.body != `{"error":"ambiguous request method"}` {
				t.Errorf("%s POST %s %v: %d %s; want %d ambiguous request method", d.name, c.path, c.hdr, got.status, got.body, want)
			}
		}
	}
	// Content-Type twice, the form first: fasthttp keeps the last value,
	// Puma joins both and Rack reads the first.
	req, _ := http.NewRequest(http.MethodGet, e.httpURL+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", "POST")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/trading-signals/123")
	req.Header.Set("X-Api-Key", signals)
	req.Header.Add("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Add("Content-Type", "application/json")
	if got := e.do(req); got.status != 400 || got.body != `{"error":"ambiguous request method"}` {
		t.Errorf("two Content-Types: %d %s; want 400 ambiguous request method", got.status, got.body)
	}
	// The same POST without an override is judged as before, and so is a
	// form that is not a POST.
	for _, d := range allDoors {
		for _, c := range []struct {
			method, path string
			hdr          map[string]string
		}{
			{"POST", "/api/v1/trading-signals/123?method=x&a_method=y&_methods=z", nil},
			{"POST", "/api/v1/trading-signals/123", map[string]string{"Content-Type": "application/json; charset=utf-8"}},
			{"GET", "/api/v1/trading-signals/123", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
		} {
			hdr := map[string]string{"X-API-Key": signals}
			for k, v := range c.hdr {
				hdr[k] = v
			}
			if got := d.check(e, c.method, c.path, hdr); got.status != 200 {
				t.Errorf("%s %s %s %v: %d %s; want 200", d.name, c.method, c.path, c.hdr, got.status, got.body)
			}
		}
	}
}

// TestFormBodiesAllowed: with formBodies: allow, a form POST is judged by
// its method.
func TestFormBodiesAllowed(t *testing.T) {
	e := newEnv(t, "nexgent.yaml", func(o *authz.Options) {
		p := *o.Policy
		p.FormBodies = policy.FormBodiesAllow
		o.Policy = &p
	})
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	for _, d := range allDoors {
		hdr := map[string]string{"X-API-Key": signals, "Content-Type": "multipart/form-data; boundary=x"}
		if got := d.check(e, "POST", "/api/v1/trading-signals", hdr); got.status != 200 {
			t.Errorf("%s: %d %s; want 200", d.name, got.status, got.body)
		}
	}
}

// TestHeaderOverridesRefused: X-Original-URL and X-Rewrite-URL, with which
// some frameworks route a request to another path than its target's, and
// an identity header spelt with '_' or '.', which CGI, PHP and Rack read as
// the '-' spelling the doors overwrite, are refused through every door, in
// any case and spelling; the '-' spelling of an identity header is
// overwritten, as before.
func TestHeaderOverridesRefused(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	signals, _ := e.mint(keyOpts{scopes: []string{"signals"}})
	const path, identity = `{"error":"ambiguous request path"}`, `{"error":"ambiguous identity header"}`
	for _, d := range allDoors {
		for _, c := range []struct{ header, body string }{
			{"X-Original-URL", path}, {"x-rewrite-url", path}, {"X_Original_Url", path}, {"X.Original.URL", path},
			{"X_Auth_Scopes", identity}, {"X.Auth.Scopes", identity}, {"x.auth-user_id", identity}, {"X-Auth-Project.Id", identity},
		} {
			got := d.check(e, "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": signals, c.header: "/api/v1/admin/users"})
			want := 400
			if d.name == "envoy-grpc" {
				want = 403
			}
			if got.status != want || got.body != c.body {
				t.Errorf("%s %s: %d %s; want %d %s", d.name, c.header, got.status, got.body, want, c.body)
			}
		}
		if got := d.check(e, "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": signals, "X-Auth-Scopes": "full_access"}); got.status != 200 {
			t.Errorf("%s forged X-Auth-Scopes: %d %s; want 200 (overwritten)", d.name, got.status, got.body)
		}
	}
}
