package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The nginx tests run examples/nginx/extauthz.conf in a real nginx, with
// extauthz standalone (--forward-headers=nginx) as the judge and a
// recording application behind it, and check what the client gets and
// what the application receives. They are skipped when nginx is not
// installed, except in CI (CI=true), where .ci/run installs it.

const (
	nginxExample  = "../../examples/nginx/extauthz.conf"
	exampleAuth   = "127.0.0.1:9192" // extauthz in the example
	exampleApp    = "127.0.0.1:9000" // the application in the example
	nginxTestHost = "api.example.com"
	caseHeader    = "X-Test-Case" // ties what the application received to a case
)

// identityNames are the five identity headers, lower-cased.
var identityNames = []string{"x-auth-key-id", "x-auth-key-prefix", "x-auth-scopes", "x-auth-project-id", "x-auth-user-id"}

// nginxBinary finds nginx, or skips the test (fails it in CI).
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if st, err := os.Stat("/usr/sbin/nginx"); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return "/usr/sbin/nginx"
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("nginx is not installed; CI must install it (.ci/run installs nginx-light)")
	}
	t.Skip("nginx is not installed (apt-get install nginx-light); skipping the nginx end-to-end test")
	return ""
}

// received is one request the application got.
type received struct {
	method, uri, body string
	header            map[string][]string // lower-cased names, every value
}

// recorder is the application behind nginx: it records every request and
// answers 200 "upstream".
type recorder struct {
	addr string
	mu   sync.Mutex
	reqs []received
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{addr: ln.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got := received{method: r.Method, uri: r.RequestURI, body: string(body), header: map[string][]string{}}
		for k, vs := range r.Header {
			lk := strings.ToLower(k)
			got.header[lk] = append(got.header[lk], vs...)
		}
		if r.Host != "" {
			got.header["host"] = []string{r.Host}
		}
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, got)
		rec.mu.Unlock()
		_, _ = io.WriteString(w, "upstream")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rec
}

// forCase returns the requests that carried caseHeader id.
func (r *recorder) forCase(id string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, q := range r.reqs {
		if v := q.header[strings.ToLower(caseHeader)]; len(v) == 1 && v[0] == id {
			out = append(out, q)
		}
	}
	return out
}

// startNginx renders examples/nginx/extauthz.conf for authAddr (extauthz's
// HTTP port) and appAddr, runs nginx with it in the foreground and returns
// the address nginx listens on.
func startNginx(t *testing.T, authAddr, appAddr string) string {
	t.Helper()
	bin := nginxBinary(t)
	b, err := os.ReadFile(nginxExample)
	if err != nil {
		t.Fatal(err)
	}
	snippet := string(b)
	for _, a := range []string{exampleAuth, exampleApp} {
		if !strings.Contains(snippet, a) {
			t.Fatalf("%s does not mention %s", nginxExample, a)
		}
	}
	snippet = strings.ReplaceAll(snippet, exampleAuth, authAddr)
	snippet = strings.ReplaceAll(snippet, exampleApp, appAddr)
	// The port was free a moment ago; another process may take it before
	// nginx binds it, so a bind failure is retried on a new port.
	for attempt := 1; ; attempt++ {
		addr, inUse := runNginx(t, bin, snippet)
		if !inUse {
			return addr
		}
		if attempt == 3 {
			t.Fatalf("nginx could not bind a free port in %d attempts", attempt)
		}
	}
}

// runNginx runs nginx with snippet inside a server on a free loopback port
// and waits until it accepts connections. It returns the address, or
// inUse when another process took the port first.
func runNginx(t *testing.T, bin, snippet string) (addr string, inUse bool) {
	t.Helper()
	dir := t.TempDir()
	listen := freeAddr(t) // replication_test.go: a port free a moment ago
	errorLog := filepath.Join(dir, "error.log")
	// master_process off: one process, which never switches to a worker
	// user, so the test runs the same as root (CI) and as anyone else.
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[2]s info;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[3]s;
%[4]s
    }
}
`, dir, errorLog, listen, snippet)
	confPath := writeFile(t, dir, "nginx.conf", conf)
	args := []string{"-p", dir, "-c", confPath, "-e", errorLog}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\nconfig:\n%s", err, out, conf)
	}
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			log, _ := os.ReadFile(errorLog)
			t.Logf("nginx output:\n%s\nnginx error.log:\n%s", out.String(), log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			log, _ := os.ReadFile(errorLog)
			if bytes.Contains(log, []byte("Address already in use")) {
				return "", true
			}
			t.Fatalf("nginx exited before listening:\n%s\n%s", out.String(), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
			c.Close()
			return listen, false
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening on %s within 30s", listen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reply is what the client got from nginx.
type reply struct {
	status int
	header http.Header
	body   string
}

// rawRequest sends one request over a new connection exactly as given:
// the request target is not cleaned or escaped and header names keep
// their spelling, which Go's client would canonicalise.
func rawRequest(t *testing.T, addr, method, target string, hdr [][2]string, body string) reply {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, nginxTestHost)
	for _, h := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	if _, err := io.WriteString(conn, b.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, target, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(data)}
}

// spelled folds a header name the way a WSGI or CGI server does: case and
// '_' versus '-' do not matter.
func spelled(name string) string { return strings.ReplaceAll(strings.ToLower(name), "_", "-") }

// valuesOf returns every value the application received under any spelling
// of name.
func valuesOf(q received, name string) []string {
	var out []string
	for k, vs := range q.header {
		if spelled(k) == spelled(name) {
			out = append(out, vs...)
		}
	}
	return out
}

// nginxCase is one request through nginx.
type nginxCase struct {
	name           string
	method, target string
	hdr            [][2]string
	body           string
	status         int // at the client
	// reached: the application must receive the request exactly once;
	// otherwise it must never see it.
	reached bool
	// identity: the identity headers the application must receive, each
	// exactly once under any spelling; the other identity headers must be
	// absent in every spelling.
	identity map[string]string
	// uri is the request target the application must receive (default:
	// target as sent).
	uri string
	// check, when set, looks at the client's answer further.
	check func(t *testing.T, r reply)
}

// runNginxCases sends each case through nginx and checks the client's
// status and what the application received.
func runNginxCases(t *testing.T, door *proc, nginxAddr string, rec *recorder, cases []nginxCase) {
	t.Helper()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("case-%d", i)
			hdr := append([][2]string{{caseHeader, id}}, c.hdr...)
			r := rawRequest(t, nginxAddr, c.method, c.target, hdr, c.body)
			if r.status != c.status {
				t.Errorf("%s %s: client got %d %q; want %d", c.method, c.target, r.status, r.body, c.status)
			}
			if c.check != nil {
				c.check(t, r)
			}
			if c.status == 500 {
				// nginx answers 500 for anything but 2xx, 401 and 403 from
				// extauthz, and when it cannot reach it: make sure this
				// one is extauthz refusing the spelling.
				ambiguousAtDoor(t, door, c.method, c.target, c.hdr)
			}
			// nginx answers the client only after the application
			// answered it, so what it received is recorded by now.
			got := rec.forCase(id)
			if !c.reached {
				if len(got) != 0 {
					t.Fatalf("%s %s reached the application: %s %s %v", c.method, c.target, got[0].method, got[0].uri, got[0].header)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("%s %s: the application received it %d times; want once", c.method, c.target, len(got))
			}
			q := got[0]
			if r.body != "upstream" {
				t.Errorf("client body %q; want the application's", r.body)
			}
			wantURI := c.uri
			if wantURI == "" {
				wantURI = c.target
			}
			if q.method != c.method || q.uri != wantURI {
				t.Errorf("the application received %s %s; want %s %s", q.method, q.uri, c.method, wantURI)
			}
			if q.body != c.body {
				t.Errorf("the application received body %q; want %q", q.body, c.body)
			}
			for _, name := range identityNames {
				vs := valuesOf(q, name)
				want, ok := c.identity[name]
				switch {
				case ok && (len(vs) != 1 || vs[0] != want):
					t.Errorf("the application received %s %q; want exactly %q", name, vs, want)
				case !ok && len(vs) != 0:
					t.Errorf("the application received %s %q (in some spelling); want none", name, vs)
				}
			}
			// Never the credential, never a forwarded-request header, and
			// only what nginx itself saw as the client's address and host.
			for _, name := range []string{"x-api-key", "authorization", "x-forwarded-method", "x-forwarded-uri", "x-original-method", "x-original-uri"} {
				if vs := valuesOf(q, name); len(vs) != 0 {
					t.Errorf("the application received %s %q (in some spelling); want none", name, vs)
				}
			}
			for name, want := range map[string]string{"x-forwarded-for": "127.0.0.1", "x-real-ip": "127.0.0.1", "x-forwarded-host": nginxTestHost, "x-forwarded-proto": "http", "host": nginxTestHost} {
				if vs := valuesOf(q, name); len(vs) != 1 || vs[0] != want {
					t.Errorf("the application received %s %q; want exactly %q", name, vs, want)
				}
			}
		})
	}
}

// startNginxSidecar runs extauthz standalone with an example policy behind
// nginx's family and waits until its HTTP port is ready. It returns the
// process and the operator token.
func startNginxSidecar(t *testing.T, policy string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pol := copyPolicy(t, dir, policy)
	p := start(t, "standalone", "--data-dir", data, "--policy", pol, "--forward-headers=nginx",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	token := readToken(t, filepath.Join(data, "admin-token"))
	eventually(t, "/readyz 200", func() bool {
		code, err := tryJSON("GET", p.url("http")+"/readyz", "", nil, nil)
		return err == nil && code == 200
	})
	return p, token
}

// doorWWWAuthenticate asks extauthz directly, as nginx does, and returns the
// WWW-Authenticate of its 401.
func doorWWWAuthenticate(t *testing.T, p *proc, method, uri string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url("http")+"/auth", nil)
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", uri)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("extauthz asked directly for %s %s: %d, WWW-Authenticate %q; want 401 with one", method, uri, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	return resp.Header.Get("WWW-Authenticate")
}

// ambiguousAtDoor asks extauthz directly, with the headers nginx would send
// for method and target, and wants its 400 for an ambiguous path.
func ambiguousAtDoor(t *testing.T, p *proc, method, target string, hdr [][2]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url("http")+"/auth", nil)
	for _, h := range hdr {
		req.Header.Add(h[0], h[1])
	}
	req.Header.Set("X-Original-Method", method)
	req.Header.Set("X-Original-URI", target)
	req.Header.Set("X-Forwarded-Host", nginxTestHost)
	req.Header.Set("X-Real-IP", "127.0.0.1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || (string(body) != `{"error":"ambiguous request path"}` && string(body) != `{"error":"ambiguous request method"}`) {
		t.Errorf("extauthz asked directly for %s %s: %d %s; want 400 ambiguous request path or method", method, target, resp.StatusCode, body)
	}
}

func wwwAuthenticate(want string) func(*testing.T, reply) {
	return func(t *testing.T, r reply) {
		t.Helper()
		if got := r.header.Values("WWW-Authenticate"); len(got) != 1 || got[0] != want {
			t.Errorf("client got WWW-Authenticate %q; want extauthz's %q", got, want)
		}
	}
}

// headerList is a list of header lines, in order.
func headerList(h ...[2]string) [][2]string { return h }

// withHeaders returns base followed by more, without changing base.
func withHeaders(base [][2]string, more ...[2]string) [][2]string {
	return append(append([][2]string{}, base...), more...)
}

// nginxOwn400 checks that a 400 is nginx's own page, not extauthz's JSON
// (which nginx would have turned into a 500 anyway).
func nginxOwn400(t *testing.T, r reply) {
	t.Helper()
	if !strings.Contains(r.body, "<center>nginx") || strings.Contains(r.body, "error") {
		t.Errorf("client got %q; want nginx's own 400 page", r.body)
	}
}

// forged are identity headers a client makes up.
var forged = [][2]string{
	{"X-Auth-User-Id", "admin"},
	{"X-Auth-Scopes", "full_access"},
	{"X-Auth-Project-Id", "victim"},
	{"X-Auth-Key-Id", "evil"},
	{"X-Auth-Key-Prefix", "nex_evil"},
}

// TestNginxNexgent: the nginx example with the Nexgent policy. The seed
// requests work; forwarded headers, identity headers and credentials a
// client sends never change what extauthz judges and never reach the
// application; spellings extauthz refuses never reach it either.
func TestNginxNexgent(t *testing.T) {
	nginxBinary(t) // skip before starting anything
	p, token := startNginxSidecar(t, "nexgent.yaml")
	var signals, alice createdKey
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "signals", "scopes": []string{"signals"}}, &signals); code != 201 {
		t.Fatalf("create key: %d", code)
	}
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "alice", "scopes": []string{"signals"}, "userId": "alice"}, &alice); code != 201 {
		t.Fatalf("create key: %d", code)
	}
	rec := startRecorder(t)
	ng := startNginx(t, p.addrs["http"], rec.addr)
	challenge := wwwAuthenticate(doorWWWAuthenticate(t, p, "GET", "/api/v1/trading-signals"))

	apiKey := [2]string{"X-API-Key", signals.Key}
	bearer := [2]string{"Authorization", "Bearer " + signals.Key}
	signalsID := map[string]string{"x-auth-key-id": signals.ID, "x-auth-key-prefix": signals.Prefix, "x-auth-scopes": "signals"}
	aliceID := map[string]string{"x-auth-key-id": alice.ID, "x-auth-key-prefix": alice.Prefix, "x-auth-scopes": "signals", "x-auth-user-id": "alice"}
	none := map[string]string{}
	// What a client sends to make nginx or extauthz judge GET /healthz.
	fakeTraefik := headerList([2]string{"X-Forwarded-Uri", "/healthz"}, [2]string{"X-Forwarded-Method", "GET"})
	fakeNginx := headerList([2]string{"X-Original-URI", "/healthz"}, [2]string{"X-Original-Method", "GET"})
	// A client's own forwarded headers, which the application must not see.
	fakeClient := headerList([2]string{"X-Forwarded-For", "6.6.6.6"}, [2]string{"X-Real-IP", "6.6.6.6"}, [2]string{"X-Forwarded-Host", "evil.example"}, [2]string{"X-Forwarded-Proto", "https"})

	runNginxCases(t, p, ng, rec, []nginxCase{
		// The seed requests.
		{name: "X-API-Key", method: "GET", target: "/api/v1/trading-signals", hdr: headerList(apiKey), status: 200, reached: true, identity: signalsID},
		{name: "Bearer", method: "GET", target: "/api/v1/trading-signals", hdr: headerList(bearer), status: 200, reached: true, identity: signalsID},
		{name: "POST with a body", method: "POST", target: "/api/v1/trading-signals", hdr: headerList(apiKey), body: `{"signal":"buy"}`, status: 200, reached: true, identity: signalsID},
		{name: "query kept", method: "GET", target: "/api/v1/trading-signals?page=2&x=%2F", hdr: headerList(apiKey), status: 200, reached: true, identity: signalsID},
		{name: "public healthz", method: "GET", target: "/healthz", status: 200, reached: true, identity: none},
		// An encoded unreserved letter: extauthz reads it as "a", and the
		// application must get the target as sent (as the check saw it),
		// not a form nginx re-encoded.
		{name: "encoded letter passed raw", method: "GET", target: "/api/v1/trading-signals/%61", hdr: headerList(apiKey), status: 200, reached: true, identity: signalsID},
		{name: "user key", method: "GET", target: "/api/v1/trading-signals", hdr: headerList([2]string{"X-API-Key", alice.Key}), status: 200, reached: true, identity: aliceID},
		{name: "client forwarded headers overwritten", method: "GET", target: "/api/v1/trading-signals", hdr: withHeaders(fakeClient, apiKey), status: 200, reached: true, identity: signalsID},
		{name: "client forwarded-request headers removed", method: "GET", target: "/api/v1/trading-signals", hdr: withHeaders(withHeaders(fakeTraefik, fakeNginx...), apiKey), status: 200, reached: true, identity: signalsID},

		// Denials: the client gets extauthz's status, the application nothing.
		{name: "no key", method: "GET", target: "/api/v1/trading-signals", status: 401, check: challenge},
		{name: "missing scope", method: "GET", target: "/api/v1/agents", hdr: headerList(apiKey), status: 403},
		{name: "invalid key", method: "GET", target: "/api/v1/trading-signals", hdr: headerList([2]string{"X-API-Key", "nex_" + strings.Repeat("a", 32)}), status: 401},

		// extauthz logs the check with what nginx saw, not with the client's
		// forwarded headers.
		{name: "logged with nginx's view", method: "DELETE", target: "/api/v1/agents/123", hdr: withHeaders(fakeClient, [2]string{"X-Request-Id", "nginx-log-check"}), status: 401, check: func(t *testing.T, _ reply) {
			line := p.logs.waitFor(t, "the check's log line", func(m map[string]any) bool { return m["request_id"] == "nginx-log-check" })
			for k, want := range map[string]string{"method": "DELETE", "path": "/api/v1/agents/123", "host": nginxTestHost, "source_ip": "127.0.0.1", "frontend": "forwardauth"} {
				if line[k] != want {
					t.Errorf("extauthz logged %s %v; want %q", k, line[k], want)
				}
			}
		}},

		// The bypass: a client's forwarded headers naming a public request.
		// nginx clears X-Forwarded-* and overwrites X-Original-* towards
		// extauthz, which judges the real DELETE without a key.
		{name: "bypass X-Forwarded-Uri", method: "DELETE", target: "/api/v1/agents/123", hdr: fakeTraefik, status: 401, check: challenge},
		{name: "bypass x-forwarded-uri lower case twice", method: "DELETE", target: "/api/v1/agents/123", hdr: withHeaders(fakeTraefik, [2]string{"x-forwarded-uri", "/healthz"}, [2]string{"x-forwarded-method", "GET"}), status: 401},
		{name: "bypass X-Original-URI", method: "DELETE", target: "/api/v1/agents/123", hdr: fakeNginx, status: 401, check: challenge},
		{name: "bypass X-Original-URI with a key", method: "GET", target: "/api/v1/agents", hdr: withHeaders(fakeNginx, apiKey), status: 403},
		{name: "bypass both families", method: "DELETE", target: "/api/v1/agents/123", hdr: withHeaders(fakeTraefik, fakeNginx...), status: 401},

		// Forged identity: extauthz's values replace the client's, and an
		// identity the key lacks is removed.
		{name: "forged identity with a key", method: "GET", target: "/api/v1/trading-signals", hdr: withHeaders(forged, apiKey), status: 200, reached: true, identity: signalsID},
		{name: "forged identity with a user's key", method: "GET", target: "/api/v1/trading-signals", hdr: withHeaders(forged, [2]string{"X-API-Key", alice.Key}), status: 200, reached: true, identity: aliceID},
		{name: "forged identity on a public route", method: "GET", target: "/healthz", hdr: forged, status: 200, reached: true, identity: none},
		{name: "forged identity lower case", method: "GET", target: "/healthz", hdr: headerList([2]string{"x-auth-user-id", "admin"}, [2]string{"x-auth-scopes", "full_access"}), status: 200, reached: true, identity: none},

		// Underscore twins: nginx drops header names with '_' (its default
		// underscores_in_headers off), towards extauthz and the application.
		{name: "underscore identity with a key", method: "GET", target: "/api/v1/trading-signals", hdr: headerList(apiKey, [2]string{"x_auth_user_id", "admin"}, [2]string{"X_Auth_Scopes", "full_access"}, [2]string{"x_auth_project_id", "victim"}), status: 200, reached: true, identity: signalsID},
		{name: "underscore identity on a public route", method: "GET", target: "/healthz", hdr: headerList([2]string{"x_auth_user_id", "admin"}, [2]string{"x_auth_key_id", "evil"}), status: 200, reached: true, identity: none},
		{name: "underscore key is no key", method: "GET", target: "/api/v1/trading-signals", hdr: headerList([2]string{"x_api_key", signals.Key}), status: 401},
		{name: "underscore forwarded uri", method: "DELETE", target: "/api/v1/agents/123", hdr: headerList([2]string{"x_original_uri", "/healthz"}, [2]string{"x_original_method", "GET"}, [2]string{"x_forwarded_uri", "/healthz"}), status: 401},

		// Spellings. nginx normalises $uri (it resolves dot segments, also
		// %2e%2e ones, merges slashes, decodes %XX once) and picks the
		// location by it, but $request_uri is the target exactly as sent,
		// and that is what reaches both sides: the example sends it as
		// X-Original-URI, and proxy_pass without a URI part passes it on
		// unchanged (seen with a recording server in place of extauthz:
		// every spelling below arrived byte for byte at both). So extauthz
		// judges the very string the application gets; it refuses these
		// as ambiguous (400, checked by asking it directly), which nginx
		// turns into a 500.
		{name: "..;", method: "GET", target: "/api/v1/trading-signals/..;/agents", hdr: headerList(apiKey), status: 500},
		{name: "case", method: "GET", target: "/HEALTHZ", status: 500},
		{name: "double-encoded dots", method: "GET", target: "/api/v1/trading-signals/%252e%252e/agents", hdr: headerList(apiKey), status: 500},
		{name: "encoded dots", method: "GET", target: "/api/v1/trading-signals/%2e%2e/agents", hdr: headerList(apiKey), status: 500},
		{name: "raw dot segment", method: "GET", target: "/api/v1/trading-signals/../agents", hdr: headerList(apiKey), status: 500},
		{name: "empty segment", method: "GET", target: "/api/v1//trading-signals", hdr: headerList(apiKey), status: 500},
		{name: "matrix parameter", method: "GET", target: "/api/v1/trading-signals;x=1", hdr: headerList(apiKey), status: 500},
		{name: "encoded slash", method: "GET", target: "/api/v1/api-keys/..%2f..%2fagents", status: 500},
		{name: "backslash", method: "GET", target: `/api/v1/api-keys\..\..\agents`, status: 500},
		// nginx passes a '#' in the request line on as it is.
		{name: "fragment", method: "GET", target: "/healthz#/../api/v1/agents", status: 500},
		// A dot segment above the root, raw or encoded: nginx itself
		// refuses the request with its own 400, before any check.
		{name: "above the root", method: "GET", target: "/../healthz", status: 400, check: nginxOwn400},
		{name: "encoded above the root", method: "GET", target: "/api/%2e%2e/%2e%2e/healthz", status: 400, check: nginxOwn400},
		// Absolute form: nginx takes the path part as $request_uri and
		// passes that on, so the check and the application agree.
		{name: "absolute form", method: "GET", target: "http://" + nginxTestHost + "/api/v1/trading-signals", hdr: headerList(apiKey), status: 200, reached: true, identity: signalsID, uri: "/api/v1/trading-signals"},
		{name: "absolute form denied", method: "GET", target: "http://" + nginxTestHost + "/api/v1/agents", hdr: headerList(apiKey), status: 403},

		// What the application could run as another method or path than
		// the one judged: refused (400, a 500 through nginx).
		{name: "encoded _method", method: "POST", target: "/api/v1/trading-signals?%5Fmethod=DELETE", hdr: headerList(apiKey), status: 500},
		{name: "_method after ;", method: "POST", target: "/api/v1/trading-signals?a=1;_method=DELETE", hdr: headerList(apiKey), status: 500},
		{name: "form POST", method: "POST", target: "/api/v1/trading-signals", hdr: headerList(apiKey, [2]string{"Content-Type", "application/x-www-form-urlencoded"}), status: 500},
		{name: "two Content-Types", method: "POST", target: "/api/v1/trading-signals", hdr: headerList(apiKey, [2]string{"Content-Type", "multipart/form-data; boundary=x"}, [2]string{"Content-Type", "application/json"}), status: 500},
		{name: "path override", method: "GET", target: "/api/v1/trading-signals", hdr: headerList(apiKey, [2]string{"X-Original-URL", "/api/v1/agents"}), status: 500},
		{name: "JSON POST", method: "POST", target: "/api/v1/trading-signals", hdr: headerList(apiKey, [2]string{"Content-Type", "application/json"}), status: 200, reached: true, identity: signalsID},
	})
}

// TestNginxNexgraph: project isolation through the nginx example with the
// NexGraph policy: a key of project A never reaches project B's resources,
// in any spelling.
func TestNginxNexgraph(t *testing.T) {
	nginxBinary(t)
	p, token := startNginxSidecar(t, "nexgraph.yaml")
	type created struct {
		Project struct {
			ID string `json:"id"`
		} `json:"project"`
		APIKey struct {
			ID          string   `json:"id"`
			Key         string   `json:"key"`
			KeyPrefix   string   `json:"key_prefix"`
			Permissions []string `json:"permissions"`
		} `json:"api_key"`
	}
	var a, b created
	for name, out := range map[string]*created{"project-a": &a, "project-b": &b} {
		if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/projects", token, map[string]any{"name": name}, out); code != 201 {
			t.Fatalf("create %s: %d", name, code)
		}
		if out.Project.ID == "" || out.APIKey.Key == "" {
			t.Fatalf("create %s: no project id or key: %+v", name, out)
		}
	}
	if strings.Join(a.APIKey.Permissions, ",") != "read,write" {
		t.Fatalf("project A's first key has %v; want read,write", a.APIKey.Permissions)
	}
	rec := startRecorder(t)
	ng := startNginx(t, p.addrs["http"], rec.addr)

	pa, pb := a.Project.ID, b.Project.ID
	keyA := [][2]string{{"Authorization", "Bearer " + a.APIKey.Key}}
	idA := map[string]string{"x-auth-key-id": a.APIKey.ID, "x-auth-key-prefix": a.APIKey.KeyPrefix, "x-auth-scopes": "read,write", "x-auth-project-id": pa}

	runNginxCases(t, p, ng, rec, []nginxCase{
		{name: "own project", method: "GET", target: "/api/v1/projects/" + pa + "/graph", hdr: keyA, status: 200, reached: true, identity: idA},
		{name: "own project delete", method: "DELETE", target: "/api/v1/projects/" + pa + "/graph", hdr: keyA, status: 200, reached: true, identity: idA},
		{name: "own project, forged project id", method: "GET", target: "/api/v1/projects/" + pa + "/graph", hdr: withHeaders(keyA, [2]string{"X-Auth-Project-Id", pb}, [2]string{"x_auth_project_id", pb}), status: 200, reached: true, identity: idA},
		{name: "other project", method: "GET", target: "/api/v1/projects/" + pb + "/graph", hdr: keyA, status: 403},
		{name: "other project delete", method: "DELETE", target: "/api/v1/projects/" + pb + "/graph", hdr: keyA, status: 403},
		{name: "other project, forwarded to own", method: "GET", target: "/api/v1/projects/" + pb + "/graph", hdr: withHeaders(keyA, [2]string{"X-Original-URI", "/api/v1/projects/" + pa + "/graph"}, [2]string{"X-Forwarded-Uri", "/api/v1/projects/" + pa + "/graph"}), status: 403},
		{name: "X-Api-Key is not a source", method: "GET", target: "/api/v1/projects/" + pa + "/graph", hdr: [][2]string{{"X-Api-Key", a.APIKey.Key}}, status: 401},
		// Spellings Express, ASP.NET Core or a servlet container read as
		// project B's graph: extauthz refuses them (400), nginx answers 500.
		{name: "PROJECTS", method: "GET", target: "/api/v1/PROJECTS/" + pb + "/graph", hdr: keyA, status: 500},
		{name: "Projects delete", method: "DELETE", target: "/api/v1/Projects/" + pb + "/graph", hdr: keyA, status: 500},
		{name: "projects;", method: "GET", target: "/api/v1/projects;/" + pb + "/graph", hdr: keyA, status: 500},
		{name: "dot segment from own", method: "GET", target: "/api/v1/projects/" + pa + "/../" + pb + "/graph", hdr: keyA, status: 500},
		{name: "..; from own", method: "GET", target: "/api/v1/projects/" + pa + "/..;/" + pb + "/graph", hdr: keyA, status: 500},
		// A percent-encoded unreserved letter is decoded once by extauthz,
		// as by every upstream: this is project B's graph, judged as such.
		{name: "encoded p", method: "GET", target: "/api/v1/%70rojects/" + pb + "/graph", hdr: keyA, status: 403},
		{name: "double-encoded p", method: "GET", target: "/api/v1/%2570rojects/" + pb + "/graph", hdr: keyA, status: 500},
	})
}
