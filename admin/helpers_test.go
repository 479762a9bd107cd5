package admin

import (
	"bytes"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/cluster/clustertest"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
	"github.com/extauthz/extauthz/policy"
)

// Policies the tests run against: the key formats and scopes of
// examples/policies/nexgent.yaml and nexgraph.yaml (docs/policy.md), copied
// here so no test reads files outside the package.
const (
	nexgentPolicy = `
keys:
  formats: [{prefix: nex_, charset: alphanumeric, length: 32}]
  sources: [x-api-key, bearer]
scopes: [full_access, signals, agents, positions, balances, transactions, history]
superScope: full_access
routes:
  - {methods: [GET, POST], path: /api/v1/trading-signals, require: signals}
unmatched: require-super
`
	nexgraphPolicy = `
keys:
  formats: [{prefix: nxg_, charset: hex, length: 64}]
  sources: [bearer]
scopes: [read, write]
routes:
  - {methods: [GET, HEAD], path: "/api/v1/projects/{project}/**", require: read, project: project}
  - {path: "/api/v1/projects/{project}/**", require: write, project: project}
unmatched: deny
messages:
  missingKey: Invalid or expired API key
  invalidKey: Invalid or expired API key
  missingScope: "Insufficient permissions: requires {scope}"
`
)

const (
	testAdminToken = "operator-token-0123456789abcdef"
	testHSSecret   = "hs256-secret-for-tests-0123456789abcdef"
	testIssuer     = "https://auth.nexgent.test"
	testAudience   = "nexgent-api"
)

var (
	nexKeyRE   = regexp.MustCompile(`^nex_[A-Za-z0-9]{32}$`)
	nxgKeyRE   = regexp.MustCompile(`^nxg_[0-9a-f]{64}$`)
	uuidRE     = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	seedEpoch  = time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC) // the Nexgent documentation's createdAt
	graphEpoch = time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC) // the NexGraph documentation's created_at
)

type envConfig struct {
	policy       string // YAML; default nexgentPolicy
	jwt          *JWTOptions
	publicCreate bool
	start        time.Time
	// rate limits; zero: none
	principalRate, operatorRate, publicCreateRate Rate
	// wrapWriter, when set, wraps the writer the server is given; usage
	// records uses as the store's RecordUsage does.
	wrapWriter func(w Writer, usage func([]keystore.Usage) error) Writer
}

// onCluster runs the suite against a follower of a three-member admin
// cluster: go test ./admin -cluster (make test runs both).
var onCluster = flag.Bool("cluster", false, "serve the admin API of every test from a follower of a three-member raft cluster")

// testEnv is a running admin API over a real bbolt file and a real
// loopback HTTP server. With -cluster, the server is a follower's: its
// writes go through raft (forwarded to the leader), its API reads wait for
// the read index, as in extauthz admin.
type testEnv struct {
	t     testing.TB
	clock *keystoretest.Clock
	// store holds every acknowledged write: the leader's with -cluster, for
	// the tests that inspect the store directly.
	store *keystore.Store
	// served is the store the server reads: store, or the follower's.
	served *keystore.Store
	// usage records key use as the program does: into the store, or as a
	// raft command.
	usage    func([]keystore.Usage) error
	srv      *Server
	http     *httptest.Server
	logs     *keystoretest.LogBuffer
	registry *prometheus.Registry
}

func mustPolicy(t testing.TB, yaml string) *policy.Policy {
	t.Helper()
	p, err := policy.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("policy.Parse: %v", err)
	}
	return p
}

func newEnv(t testing.TB, cfg envConfig) *testEnv {
	t.Helper()
	if cfg.policy == "" {
		cfg.policy = nexgentPolicy
	}
	if cfg.start.IsZero() {
		cfg.start = seedEpoch
	}
	jwtOpts := JWTOptions{HS256Secret: []byte(testHSSecret), Issuer: testIssuer, Audience: testAudience}
	if cfg.jwt != nil {
		jwtOpts = *cfg.jwt
	}
	clock := keystoretest.NewClock(cfg.start)
	var (
		leader, served *keystore.Store
		writer         Writer
		usage          func([]keystore.Usage) error
		serve          func(http.Handler) http.Handler
	)
	if *onCluster {
		members := clustertest.Start(t, 3, clock.Now)
		f := members[1]
		leader, served, writer, usage, serve = members[0].Store, f.Store, f.Writer, f.Writer.RecordUsage, f.Node.ReadIndexed
	} else {
		st, err := keystore.Open(filepath.Join(t.TempDir(), "admin.db"), keystore.Options{Now: clock.Now})
		if err != nil {
			t.Fatalf("keystore.Open: %v", err)
		}
		t.Cleanup(func() { st.Close() })
		leader, served, writer, usage = st, st, st, st.RecordUsage
		serve = func(h http.Handler) http.Handler { return h }
	}
	if cfg.wrapWriter != nil {
		writer = cfg.wrapWriter(writer, usage)
	}
	pol := mustPolicy(t, cfg.policy)
	logs := &keystoretest.LogBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := New(Options{
		Store:               served,
		Writer:              writer,
		Policy:              func() *policy.Policy { return pol },
		AdminToken:          testAdminToken,
		JWT:                 jwtOpts,
		PublicProjectCreate: cfg.publicCreate,
		PrincipalRate:       cfg.principalRate,
		OperatorRate:        cfg.operatorRate,
		PublicCreateRate:    cfg.publicCreateRate,
		Logger:              zerolog.New(logs).Level(zerolog.DebugLevel),
		Registerer:          reg,
		Now:                 clock.Now,
	})
	if err != nil {
		t.Fatalf("admin.New: %v", err)
	}
	hs := httptest.NewServer(serve(srv))
	t.Cleanup(hs.Close)
	e := &testEnv{t: t, clock: clock, store: leader, served: served, usage: usage, srv: srv, http: hs, logs: logs, registry: reg}
	t.Cleanup(func() { e.checkLogsClean() })
	return e
}

// response is a decoded HTTP answer.
type response struct {
	status int
	header http.Header
	raw    []byte
}

// json decodes the body into a generic value.
func (r response) json(t testing.TB) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.raw, &v); err != nil {
		t.Fatalf("response %d is not JSON: %v: %q", r.status, err, r.raw)
	}
	return v
}

func (r response) object(t testing.TB) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	if !ok {
		t.Fatalf("response %d is not a JSON object: %s", r.status, r.raw)
	}
	return m
}

func (r response) array(t testing.TB) []any {
	t.Helper()
	a, ok := r.json(t).([]any)
	if !ok {
		t.Fatalf("response %d is not a JSON array: %s", r.status, r.raw)
	}
	return a
}

// errorMessage returns the "error" of an error body, failing unless the
// body is exactly {"error": string}.
func (r response) errorMessage(t testing.TB) string {
	t.Helper()
	m := r.object(t)
	msg, ok := m["error"].(string)
	if !ok || len(m) != 1 {
		t.Fatalf("error body = %s; want exactly {\"error\": string}", r.raw)
	}
	return msg
}

// request sends one request. body may be nil, a string (sent verbatim) or
// a value to marshal; a JSON content type is set unless header overrides.
func (e *testEnv) request(method, path, token string, body any, header ...string) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.http.URL+path, rd)
	if err != nil {
		e.t.Fatalf("NewRequest: %v", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode >= 500 {
		e.t.Errorf("%s %s = %d %s; no request of the tests may cause a 5xx", method, path, resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); len(raw) > 0 && ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type = %q; want application/json", method, path, ct)
	}
	return response{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// expect fails unless the response has the wanted status.
func (e *testEnv) expect(r response, status int, what string) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("%s: status = %d %s; want %d", what, r.status, r.raw, status)
	}
	return r
}

// userToken returns an HS256 access token for sub, valid for an hour from
// the env's clock.
func (e *testEnv) userToken(sub string) string {
	e.t.Helper()
	now := e.clock.Now()
	return signHS256(e.t, []byte(testHSSecret), jwt.MapClaims{
		"sub": sub,
		"iss": testIssuer,
		"aud": testAudience,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	})
}

func signHS256(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// createNexKey creates a key through the API and returns the response
// object.
func (e *testEnv) createNexKey(token string, body any) map[string]any {
	e.t.Helper()
	r := e.expect(e.request("POST", "/api/v1/api-keys", token, body), http.StatusCreated, "create key")
	return r.object(e.t)
}

// createProject creates a NexGraph project and returns its id, its first
// key's id and the raw key.
func (e *testEnv) createProject(token, name string) (pid, kid, raw string) {
	e.t.Helper()
	r := e.expect(e.request("POST", "/api/v1/projects", token, map[string]any{"name": name}), http.StatusCreated, "create project")
	m := r.object(e.t)
	p := m["project"].(map[string]any)
	k := m["api_key"].(map[string]any)
	return p["id"].(string), k["id"].(string), k["key"].(string)
}

// keyValid reports whether raw authorizes at the store's clock: the key
// check of the enforcement path (docs/policy.md) done with store.Lookup and
// the expiry/revocation fields.
func (e *testEnv) keyValid(raw string) bool {
	e.t.Helper()
	res, err := e.store.Lookup(keystore.HashKey(raw))
	if err != nil {
		return false
	}
	return !res.Key.Revoked() && !res.Key.Expired(e.clock.Now()) && res.OwnerActive
}

// keysOf returns the sorted key names of a JSON object.
func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkShape fails unless m has exactly the fields of want, each of the
// JSON kind named: "string", "null", "array", "object", "bool", "number",
// or "string|null".
func checkShape(t testing.TB, what string, m map[string]any, want map[string]string) {
	t.Helper()
	wantKeys := make([]string, 0, len(want))
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	sort.Strings(wantKeys)
	if got := keysOf(m); strings.Join(got, ",") != strings.Join(wantKeys, ",") {
		t.Errorf("%s: fields = %v; want %v", what, got, wantKeys)
	}
	for k, kind := range want {
		v, ok := m[k]
		if !ok {
			continue
		}
		if got := jsonKind(v); !strings.Contains("|"+kind+"|", "|"+got+"|") {
			t.Errorf("%s: %s is %s (%v); want %s", what, k, got, v, kind)
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return "unknown"
	}
}

// checkLogsClean fails if a raw key or a token ever reached the log.
func (e *testEnv) checkLogsClean() {
	logs := e.logs.String()
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`nex_[A-Za-z0-9]{32}`),
		regexp.MustCompile(`nxg_[0-9a-f]{64}`),
		regexp.MustCompile(`eyJ[A-Za-z0-9_-]+\.`),
	} {
		if m := re.FindString(logs); m != "" {
			e.t.Errorf("log contains secret material %q", m)
		}
	}
	if strings.Contains(logs, testAdminToken) || strings.Contains(logs, testHSSecret) {
		e.t.Errorf("log contains the operator token or JWT secret")
	}
}
