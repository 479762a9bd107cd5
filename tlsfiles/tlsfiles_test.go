package tlsfiles_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/extauthz/extauthz/internal/testpki"
	"github.com/extauthz/extauthz/tlsfiles"
)

// server serves, over TLS with cfg on 127.0.0.1, the common name of the
// certificate it presented and whether the client's verified.
func server(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: cfg,
		ErrorLog:  log.New(io.Discard, "", 0), // refused handshakes are expected
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			client := "none"
			if tlsfiles.HasVerifiedClient(r.TLS) {
				client = r.TLS.VerifiedChains[0][0].Subject.CommonName
			}
			_, _ = io.WriteString(w, "client="+client)
		}),
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// get makes one request on a new connection and returns the body and the
// common name of the server's certificate.
func get(cfg *tls.Config, url string) (body, serverCN string, err error) {
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(url)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS.PeerCertificates[0].Subject.CommonName, err
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestServerCertificateReloads(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := ca.WritePair(t, dir, "server", false, "127.0.0.1", "first")
	var mu sync.Mutex
	var reloadErrs []error
	cfg, err := tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: certFile, KeyFile: keyFile, OnError: func(err error) {
		mu.Lock()
		reloadErrs = append(reloadErrs, err)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr := server(t, cfg)
	client, err := tlsfiles.ClientConfig(tlsfiles.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	cn := func() string {
		t.Helper()
		_, cn, err := get(client, "https://"+addr)
		if err != nil {
			t.Fatal(err)
		}
		return cn
	}
	if got := cn(); got != "127.0.0.1" {
		t.Fatalf("first certificate: CN %q", got)
	}

	// A rotation: both files replaced; the next handshake has the new pair.
	c2, k2 := ca.Issue(t, false, "rotated", "127.0.0.1")
	writeFile(t, certFile, c2)
	writeFile(t, keyFile, k2)
	if got := cn(); got != "rotated" {
		t.Fatalf("after rotation: CN %q, want rotated", got)
	}

	// Half a rotation (a new certificate, the old key): the previous pair
	// stays in use and the failure is reported, without key material.
	c3, k3 := ca.Issue(t, false, "third", "127.0.0.1")
	writeFile(t, certFile, c3)
	if got := cn(); got != "rotated" {
		t.Fatalf("mismatched pair: CN %q, want the previous pair (rotated)", got)
	}
	mu.Lock()
	n := len(reloadErrs)
	var msg string
	if n > 0 {
		msg = reloadErrs[n-1].Error()
	}
	mu.Unlock()
	if n == 0 {
		t.Fatal("a failed reload was not reported")
	}
	if strings.Contains(msg, "PRIVATE KEY") || strings.Contains(msg, string(k2[40:60])) {
		t.Fatalf("reload error shows key material: %s", msg)
	}
	writeFile(t, keyFile, k3)
	if got := cn(); got != "third" {
		t.Fatalf("completed rotation: CN %q, want third", got)
	}
}

func TestClientVerifies(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	other := testpki.NewCA(t, "other")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	serve := func(issuer *testpki.CA, names ...string) string {
		c, k := issuer.WritePair(t, t.TempDir(), "s", false, names...)
		cfg, err := tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c, KeyFile: k})
		if err != nil {
			t.Fatal(err)
		}
		return server(t, cfg)
	}
	client, err := tlsfiles.ClientConfig(tlsfiles.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	good := serve(ca, "127.0.0.1")
	if _, _, err := get(client, "https://"+good); err != nil {
		t.Fatalf("trusted server: %v", err)
	}
	plain := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(plain.Close)
	for _, tc := range []struct {
		name, url, reason string
	}{
		{"another name", "https://" + serve(ca, "admin.elsewhere.example"), tlsfiles.ReasonWrongName},
		{"another CA", "https://" + serve(other, "127.0.0.1"), tlsfiles.ReasonUnknownAuthority},
		{"plain HTTP", "https://" + strings.TrimPrefix(plain.URL, "http://"), tlsfiles.ReasonNotTLS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := get(client, tc.url)
			if err == nil {
				t.Fatal("connected")
			}
			if got := tlsfiles.Classify(err); got != tc.reason {
				t.Fatalf("Classify(%v) = %q, want %q", err, got, tc.reason)
			}
		})
	}

	// The system roots by default: our CA is not among them.
	sys, err := tlsfiles.ClientConfig(tlsfiles.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(sys, "https://"+good); tlsfiles.Classify(err) != tlsfiles.ReasonUnknownAuthority {
		t.Fatalf("system roots trusted a private CA: %v", err)
	}

}

// TestTransportFollowsCAFile: once the CA file names another CA, new
// connections trust that one and no longer the first.
func TestTransportFollowsCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	next := testpki.NewCA(t, "next")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	serve := func(issuer *testpki.CA) string {
		c, k := issuer.WritePair(t, t.TempDir(), "s", false, "127.0.0.1")
		cfg, err := tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c, KeyFile: k})
		if err != nil {
			t.Fatal(err)
		}
		return "https://" + server(t, cfg)
	}
	oldURL, newURL := serve(ca), serve(next)
	tr, err := tlsfiles.NewTransport(&http.Transport{ForceAttemptHTTP2: true}, tlsfiles.ClientOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	try := func(url string) error {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := try(oldURL); err != nil {
		t.Fatalf("server of the CA file: %v", err)
	}
	if err := try(newURL); tlsfiles.Classify(err) != tlsfiles.ReasonUnknownAuthority {
		t.Fatalf("server of another CA: %v", err)
	}
	writeFile(t, caFile, next.PEM)
	if err := try(newURL); err != nil {
		t.Fatalf("after the CA file changed, the new CA's server: %v", err)
	}
	if err := try(oldURL); tlsfiles.Classify(err) != tlsfiles.ReasonUnknownAuthority {
		t.Fatalf("after the CA file changed, the old CA's server: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	clients := testpki.NewCA(t, "clients")
	other := testpki.NewCA(t, "other")
	c, k := ca.WritePair(t, dir, "s", false, "127.0.0.1")
	scfg, err := tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c, KeyFile: k, ClientCAFile: clients.WriteCA(t, dir, "clients.crt")})
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + server(t, scfg)
	caFile := ca.WriteCA(t, dir, "ca.crt")
	client := func(issuer *testpki.CA, name string) *tls.Config {
		t.Helper()
		o := tlsfiles.ClientOptions{CAFile: caFile}
		if issuer != nil {
			o.CertFile, o.KeyFile = issuer.WritePair(t, t.TempDir(), "c", true, name)
		}
		cfg, err := tlsfiles.ClientConfig(o)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if body, _, err := get(client(clients, "sidecar-1"), url); err != nil || body != "client=sidecar-1" {
		t.Fatalf("client certificate: %q, %v", body, err)
	}
	if body, _, err := get(client(nil, ""), url); err != nil || body != "client=none" {
		t.Fatalf("no client certificate: %q, %v", body, err)
	}
	// With TLS 1.3 the server refuses the certificate after the client's
	// side of the handshake: the alert arrives at the first read (over
	// HTTP/2 net/http may report the broken preface instead).
	cfg := client(other, "impostor")
	cfg.ServerName = "127.0.0.1"
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), cfg)
	if err == nil {
		_, _ = conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if got := tlsfiles.Classify(err); got != tlsfiles.ReasonRefused {
		t.Fatalf("client certificate of another CA: Classify(%v) = %q, want %q", err, got, tlsfiles.ReasonRefused)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	c, k := ca.WritePair(t, dir, "s", false, "x")
	junk := filepath.Join(dir, "junk")
	writeFile(t, junk, []byte("not PEM"))
	for name, err := range map[string]error{
		"server without key":    second(tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c})),
		"server key mismatch":   second(tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c, KeyFile: junk})),
		"server missing file":   second(tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: filepath.Join(dir, "absent"), KeyFile: k})),
		"client CA not PEM":     second(tlsfiles.ClientConfig(tlsfiles.ClientOptions{CAFile: junk})),
		"client cert alone":     second(tlsfiles.ClientConfig(tlsfiles.ClientOptions{CertFile: c})),
		"server client CA junk": second(tlsfiles.ServerConfig(tlsfiles.ServerOptions{CertFile: c, KeyFile: k, ClientCAFile: junk})),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if tlsfiles.Classify(nil) != "" || tlsfiles.Classify(errors.New("connection refused")) != "" {
		t.Error("a non-TLS error was classified as TLS")
	}
}

func second[T any](_ T, err error) error { return err }
