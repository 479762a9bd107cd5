package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

type createdKey struct {
	ID     string   `json:"id"`
	Name   string   `json:"name"`
	Key    string   `json:"key"`
	Prefix string   `json:"prefix"`
	Scopes []string `json:"scopes"`
}

func envoyCheck(t *testing.T, c authv3.AuthorizationClient, method, path string, hdr map[string]string) (*authv3.CheckResponse, error) {
	t.Helper()
	h := map[string]string{":method": method, ":path": path, ":authority": "api.example.com"}
	for k, v := range hdr {
		h[strings.ToLower(k)] = v
	}
	return c.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Host: "api.example.com", Headers: h}},
	}})
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestStandaloneEndToEnd runs the real binary: mint a key over the admin
// API and with the CLI, use it through both front doors, revoke it, and
// then search every log line, metric and data file for the raw keys.
func TestStandaloneEndToEnd(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pol := copyPolicy(t, dir, "nexgent.yaml")
	p := start(t, "standalone", "--data-dir", data, "--policy", pol, "--log-level", "debug",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--usage-flush", "50ms")
	tokenFile := filepath.Join(data, "admin-token")
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v, mode %v; want 0600", err, st.Mode())
	}
	token := readToken(t, tokenFile)
	if strings.Contains(p.logs.String(), token) {
		t.Fatal("the generated admin token is in the logs")
	}

	var k createdKey
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "Trading Bot", "scopes": []string{"signals"}}, &k); code != 201 {
		t.Fatalf("create key: status %d", code)
	}
	if !strings.HasPrefix(k.Key, "nex_") || len(k.Key) != 36 || k.Prefix != k.Key[:8] {
		t.Fatalf("created key %q prefix %q; want nex_ + 32 and its first 8 characters", k.Prefix, k.Prefix)
	}
	raws := []string{k.Key}

	// forwardAuth
	if code, body := forwardAuth(t, p.url("http"), "POST", "/api/v1/trading-signals", map[string]string{"X-API-Key": k.Key}); code != 200 {
		t.Fatalf("forwardAuth allowed call = %d %s", code, body)
	}
	if code, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", map[string]string{"Authorization": "Bearer " + k.Key}); code != 403 || body != `{"error":"API key missing required scope: agents"}` {
		t.Fatalf("forwardAuth missing scope = %d %s", code, body)
	}
	if code, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", nil); code != 401 || body != `{"error":"API key required"}` {
		t.Fatalf("forwardAuth no key = %d %s", code, body)
	}

	// Envoy Check over real gRPC, plus health.
	conn := dial(t, p.addrs["grpc"])
	authc := authv3.NewAuthorizationClient(conn)
	resp, err := envoyCheck(t, authc, "POST", "/api/v1/trading-signals", map[string]string{"x-api-key": k.Key})
	if err != nil || resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
		t.Fatalf("Check allowed = %v, %v", resp, err)
	}
	resp, err = envoyCheck(t, authc, "GET", "/api/v1/agents", map[string]string{"x-api-key": k.Key})
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Fatalf("Check missing scope = %v, %v", resp, err)
	}
	hc := healthgrpc.NewHealthClient(conn)
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		svc := svc
		eventually(t, "health SERVING for "+svc, func() bool {
			r, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{Service: svc})
			return err == nil && r.GetStatus() == healthgrpc.HealthCheckResponse_SERVING
		})
	}
	if code := httpJSON(t, "GET", p.url("http")+"/readyz", "", nil, nil); code != 200 {
		t.Fatalf("/readyz = %d", code)
	}

	// lastUsedAt becomes real after a flush.
	eventually(t, "lastUsedAt", func() bool {
		var list []map[string]any
		httpJSON(t, "GET", p.url("admin")+"/api/v1/api-keys", token, nil, &list)
		for _, e := range list {
			if e["id"] == k.ID && e["lastUsedAt"] != nil {
				return true
			}
		}
		return false
	})

	// The CLI: create -> list -> revoke.
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(binPath, append([]string{"keys"}, args...)...)
		cmd.Env = append(os.Environ(), "EXTAUTHZ_ADMIN_URL="+p.url("admin"), "EXTAUTHZ_ADMIN_TOKEN_FILE="+tokenFile)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := cli("create", "--name", "cli key", "--scopes", "agents", "-o", "json")
	if err != nil {
		t.Fatalf("keys create: %v\n%s", err, out)
	}
	var ck createdKey
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &ck); err != nil || ck.Key == "" {
		t.Fatalf("keys create -o json output %q: %v", out, err)
	}
	raws = append(raws, ck.Key)
	if code, _ := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", map[string]string{"X-API-Key": ck.Key}); code != 200 {
		t.Fatalf("CLI-minted key: forwardAuth = %d", code)
	}
	out, err = cli("list")
	if err != nil || !strings.Contains(out, ck.ID) || !strings.Contains(out, "cli key") {
		t.Fatalf("keys list: %v\n%s", err, out)
	}
	if strings.Contains(out, token) {
		t.Fatal("keys list printed the token")
	}
	if out, err = cli("revoke", ck.ID); err != nil {
		t.Fatalf("keys revoke: %v\n%s", err, out)
	}
	if code, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", map[string]string{"X-API-Key": ck.Key}); code != 401 || body != `{"error":"Invalid API key"}` {
		t.Fatalf("revoked key: forwardAuth = %d %s", code, body)
	}
	if resp, _ := envoyCheck(t, authc, "GET", "/api/v1/agents", map[string]string{"x-api-key": ck.Key}); codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("revoked key: Check = %v", resp)
	}

	// Metrics carry decisions, not keys.
	metrics := getBody(t, p.url("http")+"/metrics")
	for _, want := range []string{`extauthz_checks_total{decision="allow",frontend="forwardauth",reason="ok"}`, `extauthz_checks_total{decision="unauthenticated",frontend="envoy",reason="revoked"}`, "extauthz_check_duration_seconds_bucket"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	metrics += getBody(t, p.url("admin")+"/metrics")

	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; want 0", code)
	}

	// Leak search: logs, metrics, every file under the data dir.
	haystacks := map[string][]byte{"logs": []byte(p.logs.String()), "metrics": []byte(metrics)}
	_ = filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(path)
			haystacks[path] = b
		}
		return nil
	})
	for _, raw := range raws {
		for where, hay := range haystacks {
			if bytes.Contains(hay, []byte(raw)) || bytes.Contains(hay, []byte(raw[8:])) {
				t.Errorf("raw key material found in %s", where)
			}
		}
	}
	if !strings.Contains(p.logs.String(), `"key_id":"`+k.ID+`"`) {
		t.Error("denial logs lack key_id")
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestGracefulShutdown: SIGTERM under load turns health NOT_SERVING first,
// lets in-flight checks finish, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	p := start(t, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--drain-delay", "300ms")
	conn := dial(t, p.addrs["grpc"])
	hc := healthgrpc.NewHealthClient(conn)
	eventually(t, "SERVING", func() bool {
		r, err := hc.Check(context.Background(), &healthgrpc.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthgrpc.HealthCheckResponse_SERVING
	})
	watch, err := hc.Watch(context.Background(), &healthgrpc.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
		t.Fatalf("first watch status = %v, %v", r, err)
	}

	authc := authv3.NewAuthorizationClient(conn)
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	stopLoad := make(chan struct{})
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				resp, err := envoyCheck(t, authc, "GET", "/api/v1/agents", nil)
				switch {
				case err == nil && resp.GetDeniedResponse().GetStatus().GetCode() == 401:
					ok.Add(1)
				case status.Code(err) == codes.Unavailable:
					// refused after the listener closed: not an in-flight call
					return
				default:
					failed.Add(1)
					return
				}
			}
		}()
	}
	eventually(t, "load running", func() bool { return ok.Load() > 50 })

	exit := make(chan int, 1)
	go func() { exit <- p.stop(t, syscall.SIGTERM) }()
	r, err := watch.Recv()
	if err != nil || r.GetStatus() != healthgrpc.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after SIGTERM = %v, %v; want NOT_SERVING first", r, err)
	}
	// Checks are still answered during the drain delay, after NOT_SERVING.
	before := ok.Load()
	eventually(t, "checks answered while draining", func() bool { return ok.Load() > before })
	code := <-exit
	close(stopLoad)
	wg.Wait()
	if code != 0 {
		t.Fatalf("exit code %d; want 0\n%s", code, p.logs.String())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d in-flight checks failed during the drain", failed.Load())
	}
	if !strings.Contains(p.logs.String(), `"message":"drained"`) {
		t.Error("no drained log line")
	}
}

// TestPolicyReload: a bad new policy is refused and logged, the old one
// stays; a good one is applied without restart.
func TestPolicyReload(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	original, _ := os.ReadFile(pol)
	p := start(t, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--policy-poll", "20ms")

	writeFile(t, dir, "policy.yaml", string(original)+"\nbogus: field\n")
	p.logs.waitFor(t, "refusal", func(m map[string]any) bool { return m["message"] == "new policy refused; keeping the current policy" })
	if code, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", nil); code != 401 || body != `{"error":"API key required"}` {
		t.Fatalf("after a bad policy: %d %s; want the old policy's answer", code, body)
	}
	if !strings.Contains(p.logs.String(), "bogus") {
		t.Error("the refusal does not name the unknown field")
	}

	writeFile(t, dir, "policy.yaml", strings.Replace(string(original), "missingKey: API key required", "missingKey: Key please", 1))
	eventually(t, "new policy applied", func() bool {
		_, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", nil)
		return body == `{"error":"Key please"}`
	})
	// SIGHUP forces a reload of the same content without harm.
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.logs.waitFor(t, "reload on SIGHUP", func(m map[string]any) bool { return m["message"] == "policy reloaded" })
}

// TestCommandLine covers policy check, version, flag/env handling and the
// second-process lock.
func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	runBin := func(env []string, args ...string) (string, int) {
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), env...)
		out, _ := cmd.CombinedOutput()
		return string(out), cmd.ProcessState.ExitCode()
	}
	good := copyPolicy(t, dir, "nexgent.yaml")
	if out, code := runBin(nil, "policy", "check", good); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("policy check good = %d %s", code, out)
	}
	bad := writeFile(t, dir, "bad.yaml", "keys: {formats: [{prefix: nex_, charset: base64, length: 0}]}\nroutes: [{path: nope, require: ghost}]\nextra: 1\n")
	out, code := runBin(nil, "policy", "check", bad)
	if code != 1 {
		t.Errorf("policy check bad: exit %d; want 1\n%s", code, out)
	}
	if !strings.Contains(out, "extra") {
		t.Errorf("policy check does not list the unknown field:\n%s", out)
	}
	// Project isolation: nexgraph.yaml passes and names its isolated paths; a public catch-all
	// after the project routes would open them, and is refused.
	nexgraph := copyPolicy(t, dir, "nexgraph.yaml")
	if out, code := runBin(nil, "policy", "check", nexgraph); code != 0 || !strings.Contains(out, "project-isolated: /api/v1/projects/{project}/**") {
		t.Errorf("policy check nexgraph.yaml = %d %s", code, out)
	}
	shadow, err := os.ReadFile(nexgraph)
	if err != nil {
		t.Fatal(err)
	}
	shadowed := writeFile(t, dir, "shadow.yaml", strings.Replace(string(shadow), "unmatched: deny", "unmatched: allow", 1)+
		"\n# appended by the test\n")
	shadowed2 := writeFile(t, dir, "shadow2.yaml", strings.Replace(string(shadow), `  - {path: "/**", require: write}`, `  - {path: "/**", public: true}`, 1))
	for _, f := range []string{shadowed, shadowed2} {
		out, code := runBin(nil, "policy", "check", f)
		if code != 1 || !strings.Contains(out, "/api/v1/projects/{project}/**") {
			t.Errorf("policy check of a policy that opens the isolated paths = %d\n%s", code, out)
		}
	}
	if out, code := runBin(nil, "version"); code != 0 || !strings.Contains(out, "go1.") {
		t.Errorf("version = %d %s", code, out)
	}
	if out, code := runBin(nil, "sidecar", "--help"); code != 0 || !strings.Contains(out, "-admin-url") || !strings.Contains(out, "-max-staleness") {
		t.Errorf("sidecar --help = %d %s", code, out)
	}
	if out, code := runBin([]string{"EXTAUTHZ_SHUTDOWN_TIMEOUT=forever"}, "standalone", "--policy", good); code != 1 || !strings.Contains(out, "EXTAUTHZ_SHUTDOWN_TIMEOUT") {
		t.Errorf("bad env value = %d %s; want exit 1 naming the variable", code, out)
	}
	if out, code := runBin(nil, "sidecar", "--policy", good); code != 1 || !strings.Contains(out, "--admin-url is required") {
		t.Errorf("sidecar without --admin-url = %d %s", code, out)
	}
	if _, code := runBin(nil, "frobnicate"); code != 2 {
		t.Errorf("unknown command exit = %d; want 2", code)
	}

	// A second process on the same data dir fails clearly instead of hanging.
	data := filepath.Join(dir, "data")
	start(t, "standalone", "--data-dir", data, "--policy", good, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	out, code = runBin(nil, "standalone", "--data-dir", data, "--policy", good, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	if code != 1 || !strings.Contains(out, "in use by another process") {
		t.Errorf("second process = %d %s; want a lock error", code, out)
	}

}

// TestPprofOffByDefault: profiling is served only when --pprof-addr asks.
func TestPprofOffByDefault(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	base := []string{"standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}
	p := start(t, append(base, "--pprof-addr", "127.0.0.1:0")...)
	if code := httpJSON(t, "GET", p.url("pprof")+"/debug/pprof/cmdline", "", nil, nil); code != 200 {
		t.Fatalf("pprof with --pprof-addr: %d", code)
	}
	if code := httpJSON(t, "GET", p.url("http")+"/debug/pprof/cmdline", "", nil, nil); code != 404 {
		t.Fatalf("pprof on the forwardAuth port: %d; want 404", code)
	}
	p.stop(t, syscall.SIGTERM)
	p = start(t, base...)
	if _, ok := p.addrs["pprof"]; ok {
		t.Fatal("a pprof listener without --pprof-addr")
	}
}
