package authz_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/envoy"
	"github.com/extauthz/extauthz/authz/forwardauth"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/usage"
)

// env is a real store, a real gRPC server and a real HTTP server on
// loopback, both over one authz.Authorizer.
type env struct {
	t           *testing.T
	store       *keystore.Store
	pol         *policy.Policy
	clock       *keystoretest.Clock
	a           *authz.Authorizer
	grpc        authv3.AuthorizationClient
	httpURL     string // the HTTP port: http://127.0.0.1:port
	logs        *keystoretest.LogBuffer
	unavailable error
	mu          sync.Mutex
}

func loadPolicy(t testing.TB, name string) *policy.Policy {
	t.Helper()
	p, err := policy.Load(filepath.Join("..", "examples", "policies", name))
	if err != nil {
		t.Fatalf("load policy %s: %v", name, err)
	}
	return p
}

// newEnv starts the env over the example policy policyFile; each of with
// may change the Authorizer's options.
func newEnv(t *testing.T, policyFile string, with ...func(*authz.Options)) *env {
	t.Helper()
	e := &env{t: t, clock: keystoretest.NewClock(time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)), logs: &keystoretest.LogBuffer{}}
	var err error
	e.store, err = keystore.Open(filepath.Join(t.TempDir(), "keys.db"), keystore.Options{Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	e.pol = loadPolicy(t, policyFile)
	opts := authz.Options{
		Keys:   e.store,
		Policy: e.pol,
		Now:    e.clock.Now,
		Logger: zerolog.New(e.logs).Level(zerolog.DebugLevel),
		Usage:  usage.NewDiscard(),
		Available: func() error {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.unavailable
		},
		Metrics: mustMetrics(t),
	}
	for _, f := range with {
		f(&opts)
	}
	e.a = authz.New(opts)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	envoy := envoy.NewServer(e.a)
	gs := grpc.NewServer(grpc.ForceServerCodecV2(envoy.Codec()))
	authv3.RegisterAuthorizationServer(gs, envoy)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	e.grpc = authv3.NewAuthorizationClient(conn)

	trusted, _ := forwardauth.ParseTrustedProxies([]string{"127.0.0.0/8"})
	fa := forwardauth.New(e.a, trusted, forwardauth.FamilyAuto)
	e.httpURL = serveHTTP(t, fa.Handler(http.NotFoundHandler())) // as cmd/extauthz serves it, with probes on the mux
	return e
}

// serveHTTP serves h with the HTTP port's server on a loopback port until
// the test ends, and returns its base URL.
func serveHTTP(t *testing.T, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := forwardauth.NewHTTPServer(h, zerolog.Nop())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

type keyOpts struct {
	scopes  []string
	project string
	user    string
	expires *time.Time
}

// mint creates a key in the policy's minting format and returns the raw key.
func (e *env) mint(o keyOpts) (string, *keystore.Key) {
	e.t.Helper()
	f := e.pol.MintFormat()
	raw, err := keystore.Mint(f.Prefix, f.Alphabet(), f.Length)
	if err != nil {
		e.t.Fatal(err)
	}
	k := &keystore.Key{ID: uuid.NewString(), Hash: keystore.HashKey(raw), Prefix: keystore.DisplayPrefix(raw), Name: "test", Scopes: o.scopes, ProjectID: o.project, UserID: o.user, ExpiresAt: o.expires}
	if err := e.store.CreateKey(k, "test"); err != nil {
		e.t.Fatal(err)
	}
	return raw, k
}

// result is a front door's answer in one shape for both doors.
type result struct {
	status  int        // HTTP status the client would see
	code    codes.Code // gRPC CheckResponse.status.code (envoy only)
	rpcErr  codes.Code // RPC error code (envoy only), OK when none
	body    string
	headers map[string]string // lower-case names: denial headers or upstream identity headers
	remove  []string          // envoy headers_to_remove, or x-envoy-auth-headers-to-remove
	meta    map[string]string // envoy dynamic metadata
	client  map[string]string // envoy response_headers_to_add (to the client on allow)
	limit   map[string]any    // envoy dynamic metadata rate_limit
}

// viaEnvoy sends a CheckRequest over real gRPC as Envoy would build it.
func (e *env) viaEnvoy(method, path string, hdr map[string]string) result {
	e.t.Helper()
	headers := map[string]string{":method": method, ":path": path, ":authority": "api.example.com", "x-request-id": "req-1"}
	for k, v := range hdr {
		headers[strings.ToLower(k)] = v
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "api.example.com", Headers: headers, Protocol: "HTTP/1.1",
		}},
	}}
	resp, err := e.grpc.Check(context.Background(), req)
	if err != nil {
		return result{rpcErr: status.Code(err), status: 503}
	}
	if resp.GetStatus() == nil {
		e.t.Fatalf("CheckResponse without status allows by default: %v", resp)
	}
	r := result{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}, meta: map[string]string{}}
	if d := resp.GetDeniedResponse(); d != nil {
		r.status = int(d.GetStatus().GetCode())
		r.body = d.GetBody()
		for _, h := range d.GetHeaders() {
			r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		return r
	}
	if r.code != codes.OK {
		e.t.Fatalf("non-OK status without denied_response: %v", resp)
	}
	r.status = 200
	ok := resp.GetOkResponse()
	for _, h := range ok.GetHeaders() {
		//lint:ignore SA1019 the portable overwrite is what is checked (see header in envoy.go)
		if h.GetAppend() == nil || h.GetAppend().GetValue() {
			e.t.Errorf("identity header %s must set append=false explicitly", h.GetHeader().GetKey())
		}
		r.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	r.remove = ok.GetHeadersToRemove()
	for k, v := range resp.GetDynamicMetadata().GetFields() {
		r.meta[k] = v.GetStringValue()
	}
	if l := resp.GetDynamicMetadata().GetFields()["rate_limit"]; l != nil {
		r.limit = l.GetStructValue().AsMap()
	}
	r.client = map[string]string{}
	for _, h := range ok.GetResponseHeadersToAdd() {
		//lint:ignore SA1019 the portable overwrite is what is checked (see header in envoy.go)
		if h.GetAppend() == nil || h.GetAppend().GetValue() {
			e.t.Errorf("response header %s must set append=false explicitly", h.GetHeader().GetKey())
		}
		r.client[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	return r
}

// viaTraefik sends what Traefik forwardAuth sends: GET /auth with the
// original request in X-Forwarded-* and every client header copied.
func (e *env) viaTraefik(method, path string, hdr map[string]string) result {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.httpURL+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", path)
	req.Header.Set("X-Forwarded-Host", "api.example.com")
	req.Header.Set("X-Forwarded-Proto", "https")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return e.do(req)
}

func (e *env) do(req *http.Request) result {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := result{status: resp.StatusCode, body: string(body), headers: map[string]string{}}
	for k := range resp.Header {
		lk := strings.ToLower(k)
		if lk == "date" || lk == "content-length" {
			continue
		}
		r.headers[lk] = resp.Header.Get(k)
	}
	if v := resp.Header.Get("X-Envoy-Auth-Headers-To-Remove"); v != "" {
		r.remove = strings.Split(v, ",")
		delete(r.headers, "x-envoy-auth-headers-to-remove")
	}
	return r
}

type door struct {
	name  string
	check func(e *env, method, path string, hdr map[string]string) result
}

var doors = []door{
	{"envoy", (*env).viaEnvoy},
	{"forwardauth", (*env).viaTraefik},
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// mustMetrics returns check metrics registered nowhere.
func mustMetrics(tb testing.TB) *authz.Metrics {
	m, err := authz.NewMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
