package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testpki"
)

// tlsAdmin is an admin process serving TLS with a certificate of ca for
// 127.0.0.1, and what a sidecar needs to follow it.
type tlsAdmin struct {
	t        *testing.T
	dir      string
	ca       *testpki.CA
	caFile   string
	addr     string // fixed: impostors take it over
	token    string
	replTok  string
	policy   string
	args     []string
	proc     *proc
	client   *http.Client // trusts ca
	certFile string
	keyFile  string
}

func startTLSAdmin(t *testing.T, extra ...string) *tlsAdmin {
	t.Helper()
	dir := t.TempDir()
	a := &tlsAdmin{t: t, dir: dir, ca: testpki.NewCA(t, "extauthz test CA"), addr: freeAddr(t), token: "tls-operator-token-0123456789abcdef"}
	a.caFile = a.ca.WriteCA(t, dir, "ca.crt")
	a.certFile, a.keyFile = a.ca.WritePair(t, dir, "admin", false, "127.0.0.1")
	a.replTok = writeFile(t, dir, "replication-token", "tls-replication-token-0123456789\n")
	a.policy = copyPolicy(t, dir, "nexgent.yaml")
	a.args = append([]string{"admin", "--data-dir", filepath.Join(dir, "admin"), "--policy", a.policy,
		"--admin-token-file", writeFile(t, dir, "admin-token", a.token), "--replication-token-file", a.replTok,
		"--admin-addr", a.addr, "--heartbeat", "100ms", "--tls-cert-file", a.certFile, "--tls-key-file", a.keyFile}, extra...)
	a.proc = start(t, a.args...)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(a.ca.PEM)
	a.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	return a
}

func (a *tlsAdmin) url() string { return "https://" + a.addr }

// call sends a JSON request to the admin with the operator token.
func (a *tlsAdmin) call(method, path string, body, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.url()+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			a.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (a *tlsAdmin) create(name string) createdKey {
	a.t.Helper()
	var k createdKey
	if code := a.call("POST", "/api/v1/api-keys", map[string]any{"name": name, "scopes": []string{"signals"}}, &k); code != 201 {
		a.t.Fatalf("create key: %d", code)
	}
	return k
}

// sidecarArgs are the arguments of a sidecar that follows the admin at
// adminURL, trusting caFile.
func (a *tlsAdmin) sidecarArgs(adminURL, caFile string, extra ...string) []string {
	args := []string{"sidecar", "--admin-url", adminURL, "--replication-token-file", a.replTok, "--policy", a.policy,
		"--data-dir", filepath.Join(a.dir, "sidecar-"+strconv.FormatInt(time.Now().UnixNano(), 36)), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--usage-flush", "50ms", "--reconnect-max-backoff", "100ms", "--admin-ca-file", caFile}
	return append(args, extra...)
}

// impostor answers at an admin's address as a fake admin would: every
// watch gets a change that adds a forged full_access key, then
// heartbeats. It records whether anything reached it over HTTP, and the
// Authorization values it received.
type impostor struct {
	srv      *http.Server
	requests atomic.Int64
	tokens   atomic.Int64 // requests that carried a bearer token
}

// startImpostor listens on addr, with TLS when cfg is not nil.
func startImpostor(t *testing.T, addr string, cfg *tls.Config, forged string) *impostor {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the admin just released the port
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	im := &impostor{}
	im.srv = &http.Server{
		ErrorLog: stdlog.New(io.Discard, "", 0),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			im.requests.Add(1)
			if strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				im.tokens.Add(1)
			}
			if r.URL.Path != "/replication/v1/watch" {
				http.Error(w, "nothing here", http.StatusNotFound)
				return
			}
			since, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
			w.Header().Set("Content-Type", "application/x-ndjson")
			_, _ = w.Write(forgedKeyLine(since+1, forged))
			for {
				_, _ = fmt.Fprintf(w, `{"type":"heartbeat","revision":%d}`+"\n", since+1)
				_ = http.NewResponseController(w).Flush()
				select {
				case <-r.Context().Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}),
	}
	go func() { _ = im.srv.Serve(ln) }()
	t.Cleanup(func() { _ = im.srv.Close() })
	return im
}

func (im *impostor) stop() { _ = im.srv.Close() }

// serverTLS is a server configuration presenting a certificate of ca for
// names.
func serverTLS(t *testing.T, ca *testpki.CA, names ...string) *tls.Config {
	t.Helper()
	c, k := ca.Issue(t, false, names...)
	pair, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}}
}

// TestImpostorAdmin: a sidecar that follows an admin over TLS is pointed
// at impostors in its place (the admin's address, taken over): a valid
// certificate for another name, a certificate of another CA, plain HTTP.
// None gets the replication token or gets its forged key applied; the
// sidecar keeps serving its last good replica, says why in its log and
// counts it in extauthz_replication_tls_errors_total. Then the real admin
// comes back and the sidecar follows it again.
func TestImpostorAdmin(t *testing.T) {
	a := startTLSAdmin(t)
	sc := start(t, a.sidecarArgs(a.url(), a.caFile)...)
	eventually(t, "sidecar ready over TLS", func() bool { code, _ := readyz(t, sc); return code == 200 })
	good := a.create("good")
	expectAuth(t, sc, "key replicated over TLS", good.Key, 200)
	forged := unknownKey(t)
	if code, _ := authCode(t, sc, forged); code != 401 {
		t.Fatalf("forged key before any impostor: %d", code)
	}
	if code := a.proc.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("admin exit %d", code)
	}

	other := testpki.NewCA(t, "another CA")
	for _, tc := range []struct {
		name   string
		tls    *tls.Config
		reason string
	}{
		{"valid certificate for another name", serverTLS(t, a.ca, "admin.elsewhere.example"), "wrong_name"},
		{"certificate of another CA", serverTLS(t, other, "127.0.0.1"), "unknown_authority"},
		{"plain HTTP", nil, "not_tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			metric := `reason="` + tc.reason + `"`
			before := promValue(t, sc.url("http")+"/metrics", "extauthz_replication_tls_errors_total", metric)
			im := startImpostor(t, a.addr, tc.tls, forged)
			defer im.stop()
			sc.logs.waitFor(t, "a log line naming "+tc.reason, func(m map[string]any) bool {
				return m["reason"] == tc.reason && m["level"] == "error"
			})
			eventually(t, "the refusal counted", func() bool {
				return promValue(t, sc.url("http")+"/metrics", "extauthz_replication_tls_errors_total", metric) > before
			})
			if n := im.tokens.Load(); n != 0 {
				t.Fatalf("the impostor received the replication token %d times", n)
			}
			if tc.tls != nil && im.requests.Load() != 0 {
				t.Fatalf("the impostor received %d HTTP requests through a refused handshake", im.requests.Load())
			}
			if code, body := authCode(t, sc, forged); code != 401 {
				t.Fatalf("forged key through the impostor: %d %s", code, body)
			}
			if code, body := authCode(t, sc, good.Key); code != 200 {
				t.Fatalf("last good replica: good key %d %s", code, body)
			}
			if code, body := readyz(t, sc); code != 200 {
				t.Fatalf("readyz while the impostor answers: %d %s", code, body)
			}
		})
	}

	// The admin comes back: the sidecar follows it again.
	a.proc = start(t, a.args...)
	later := a.create("after the impostors")
	expectAuth(t, sc, "key created after the admin came back", later.Key, 200)
	expectAuth(t, sc, "forged key after the admin came back", forged, 401)
}

// TestPlainAdminImpostor is the original finding, and the control of
// TestImpostorAdmin: the same impostor, at the address of an admin a
// sidecar follows over plain HTTP, receives the replication token in
// clear and makes the sidecar allow its forged key. Such a sidecar is
// warned about at start when the admin is on another host.
func TestPlainAdminImpostor(t *testing.T) {
	c := newCluster(t, 1)
	sc := c.sidecars[0]
	good := signalsKey(c, "good")
	expectAuth(t, sc, "key replicated over plain HTTP", good.Key, 200)
	forged := unknownKey(t)
	addr := strings.TrimPrefix(c.directAdminURL(), "http://")
	if code := c.admin.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("admin exit %d", code)
	}
	im := startImpostor(t, addr, nil, forged)
	expectAuth(t, sc, "forged key through a plain-HTTP impostor", forged, 200)
	if im.tokens.Load() == 0 {
		t.Fatal("the impostor saw no replication token")
	}

	dir := t.TempDir()
	warned := start(t, "sidecar", "--admin-url", "http://admin.invalid:8181", "--replication-token-file", filepath.Join(c.dir, "replication-token"),
		"--policy", c.policy, "--data-dir", filepath.Join(dir, "warned"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0")
	warned.logs.waitFor(t, "the plain-HTTP warning", func(m map[string]any) bool {
		return m["level"] == "warn" && strings.Contains(fmt.Sprint(m["message"]), "plain HTTP")
	})
	sc.logs.mu.Lock()
	defer sc.logs.mu.Unlock()
	for _, m := range sc.logs.lines {
		if m["level"] == "warn" && strings.Contains(fmt.Sprint(m["message"]), "plain HTTP on another host") {
			t.Fatalf("a loopback admin URL was warned about: %v", m)
		}
	}
}

// TestTLSFlagsRefused: TLS settings that would protect nothing, and weak
// secret files, stop the process at start with a clear message.
func TestTLSFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	policy := copyPolicy(t, dir, "nexgent.yaml")
	ca := testpki.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	cert, key := ca.WritePair(t, dir, "admin", false, "127.0.0.1")
	good := writeFile(t, dir, "token", "a-token-of-enough-bytes-0123456789")
	short := writeFile(t, dir, "short", "x\n")
	open := writeFile(t, dir, "open", "a-token-of-enough-bytes-but-open-0123")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	openKey := writeFile(t, dir, "open.key", readToken(t, key))
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	admin := func(extra ...string) []string {
		return append([]string{"admin", "--data-dir", filepath.Join(dir, "admin"), "--policy", policy, "--admin-addr", "127.0.0.1:0"}, extra...)
	}
	sidecar := func(extra ...string) []string {
		return append([]string{"sidecar", "--policy", policy, "--data-dir", filepath.Join(dir, "sc"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"CA file with a plain URL", sidecar("--admin-url", "http://127.0.0.1:1", "--replication-token-file", good, "--admin-ca-file", caFile), "--admin-ca-file is set but --admin-url"},
		{"client certificate with a plain URL", sidecar("--admin-url", "http://127.0.0.1:1", "--replication-token-file", good, "--tls-client-cert-file", cert, "--tls-client-key-file", key), "--tls-client-cert-file is set but"},
		{"certificate without key", admin("--admin-token-file", good, "--replication-token-file", good, "--tls-cert-file", cert), "go together"},
		{"client CA without server certificate", admin("--admin-token-file", good, "--replication-token-file", good, "--tls-client-ca-file", caFile), "--tls-client-ca-file needs"},
		{"short operator token", admin("--admin-token-file", short, "--replication-token-file", good), "at least 16"},
		{"short replication token", sidecar("--admin-url", "http://127.0.0.1:1", "--replication-token-file", short), "at least 16"},
		{"world-readable operator token", admin("--admin-token-file", open, "--replication-token-file", good), "readable by every user"},
		{"world-readable replication token", admin("--admin-token-file", good, "--replication-token-file", open), "readable by every user"},
		{"world-readable JWT secret", admin("--admin-token-file", good, "--replication-token-file", good, "--jwt-hs256-secret-file", open), "readable by every user"},
		{"world-readable TLS key", admin("--admin-token-file", good, "--replication-token-file", good, "--tls-cert-file", cert, "--tls-key-file", openKey), "readable by every user"},
		{"JWKS without audience", admin("--admin-token-file", good, "--replication-token-file", good, "--jwt-jwks-file", filepath.Join(dir, "jwks.json")), "--jwt-jwks-file needs --jwt-audience"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := run(ctx, tc.args, func(string) string { return "" }, io.Discard, &stderr)
			if err == nil {
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error()+stderr.String(), "a-token-of-enough-bytes") {
				t.Fatalf("a secret in the error: %v", err)
			}
		})
	}
}

// TestAdminTLSClientsAndRotation: replication with a client certificate
// when the admin requires one; the CLI over https with --admin-ca-file;
// a rotated admin certificate served to new connections without a
// restart.
func TestAdminTLSClientsAndRotation(t *testing.T) {
	clients := testpki.NewCA(t, "replication clients")
	dir := t.TempDir()
	clientCA := clients.WriteCA(t, dir, "clients.crt")
	a := startTLSAdmin(t, "--tls-client-ca-file", clientCA)
	k := a.create("mtls")

	certFile, keyFile := clients.WritePair(t, dir, "sidecar", true, "sidecar-1")
	withCert := start(t, a.sidecarArgs(a.url(), a.caFile, "--tls-client-cert-file", certFile, "--tls-client-key-file", keyFile)...)
	expectAuth(t, withCert, "key replicated with a client certificate", k.Key, 200)
	without := start(t, a.sidecarArgs(a.url(), a.caFile)...)
	without.logs.waitFor(t, "the refusal of a sidecar without a client certificate", func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m["error"]), "client certificate")
	})
	if code, _ := readyz(t, without); code == 200 {
		t.Fatal("a sidecar without a client certificate got a replica")
	}

	// The CLI: verified with --admin-ca-file, refused with the system roots.
	var stdout, stderr bytes.Buffer
	getenv := func(string) string { return "" }
	if err := run(context.Background(), []string{"keys", "list", "--admin-url", a.url(), "--admin-ca-file", a.caFile, "--admin-token", a.token, "-o", "json"}, getenv, &stdout, &stderr); err != nil {
		t.Fatalf("keys list over https: %v; %s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), k.ID) {
		t.Fatalf("keys list over https: %s", stdout.String())
	}
	if err := run(context.Background(), []string{"keys", "list", "--admin-url", a.url(), "--admin-token", a.token}, getenv, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("keys list trusting only the system roots: %v", err)
	}

	// Rotation: the files are replaced; the next handshake has the new
	// certificate, and the sidecar keeps following.
	serial := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", a.addr, a.client.Transport.(*http.Transport).TLSClientConfig)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	c, key := a.ca.Issue(t, false, "127.0.0.1")
	if err := os.WriteFile(a.keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if after := serial(); after == before {
		t.Fatal("the admin still serves the certificate from before the rotation")
	}
	later := a.create("after the rotation")
	expectAuth(t, withCert, "key created after the rotation", later.Key, 200)
}
