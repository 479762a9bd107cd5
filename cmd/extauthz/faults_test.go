package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/keystore"
)

// Sidecar faults, against the real binary on loopback: a sidecar killed
// under load, a hostile network between sidecar and admin, a dead
// admin with --max-staleness, and a replica file that cannot grow. Each
// case either keeps deciding correctly or fails closed with 503; none ever
// allows a revoked or unknown key.
//
// Clock jumps cannot be staged for a process (it reads the real clock);
// they are covered with an injected clock in replication/faults_test.go.

// rlimitEnv makes this test binary a wrapper: when set to
// "RESOURCE:LIMIT:PATH" (RESOURCE fsize or nofile), it lowers that limit
// and execs PATH with its own arguments. That caps every file the child
// writes (its replica), or the descriptors it may open, without
// util-linux's prlimit or root, and without touching this process's
// limits.
const rlimitEnv = "EXTAUTHZ_TEST_RLIMIT_WRAP"

func init() {
	v := os.Getenv(rlimitEnv)
	if v == "" {
		return
	}
	parts := strings.SplitN(v, ":", 3)
	if len(parts) != 3 {
		fmt.Fprintln(os.Stderr, "bad", rlimitEnv, v)
		os.Exit(97)
	}
	res, known := map[string]int{"fsize": syscall.RLIMIT_FSIZE, "nofile": syscall.RLIMIT_NOFILE}[parts[0]]
	n, err := strconv.ParseUint(parts[1], 10, 64)
	if !known || err != nil {
		fmt.Fprintln(os.Stderr, "bad", rlimitEnv, v)
		os.Exit(97)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(res, &rl); err != nil {
		fmt.Fprintln(os.Stderr, "getrlimit:", err)
		os.Exit(97)
	}
	rl.Cur = n
	if res == syscall.RLIMIT_NOFILE {
		rl.Max = n // Go raises the soft descriptor limit to the hard one at startup
	}
	if err := syscall.Setrlimit(res, &rl); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		os.Exit(97)
	}
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, rlimitEnv+"=") {
			env = append(env, e)
		}
	}
	err = syscall.Exec(parts[2], append([]string{parts[2]}, os.Args[1:]...), env)
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(98)
}

// startLimited runs the binary with one resource limit lowered: "fsize"
// caps every file it writes at limit bytes (a write past it fails with
// EFBIG), "nofile" caps its open descriptors (accept fails with EMFILE).
func startLimited(t *testing.T, resource string, limit int64, args ...string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startProc(t, self, []string{fmt.Sprintf("%s=%s:%d:%s", rlimitEnv, resource, limit, binPath)}, args...)
}

// sidecarVia returns the arguments of a sidecar of c that replicates from
// adminURL (c's admin, or a proxy in front of it) into dataDir.
func (c *cluster) sidecarVia(adminURL, dataDir string, extra ...string) []string {
	args := []string{"sidecar", "--admin-url", adminURL, "--replication-token-file", filepath.Join(c.dir, "replication-token"),
		"--policy", c.policy, "--data-dir", dataDir, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--usage-flush", "50ms", "--reconnect-max-backoff", "100ms"}
	return append(args, extra...)
}

// directAdminURL is the admin's fixed address, which survives its restarts.
func (c *cluster) directAdminURL() string {
	for i, a := range c.adminArgs {
		if a == "--admin-addr" {
			return "http://" + c.adminArgs[i+1]
		}
	}
	c.t.Fatal("cluster admin has no --admin-addr")
	return ""
}

func faultRevoke(t *testing.T, c *cluster, id string) {
	t.Helper()
	if code := httpJSON(t, "DELETE", c.adminURL()+"/api/v1/api-keys/"+id, c.token, nil, nil); code != 200 {
		t.Fatalf("revoke %s: %d", id, code)
	}
}

const faultPath = "/api/v1/trading-signals" // needs the signals scope

func signalsKey(c *cluster, name string) createdKey {
	return c.create(map[string]any{"name": name, "scopes": []string{"signals"}})
}

// unknownKey is a well-formed key the admin never saw.
func unknownKey(t *testing.T) string {
	t.Helper()
	raw, err := keystore.Mint("nex_", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 32)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

var faultClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 32,
	},
}

// authTry asks base/auth as Traefik would, for GET faultPath with key.
// Transport errors are returned, not fatal: a dead process is expected.
func authTry(base, key string) (int, string, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", faultPath)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := faultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func authCode(t *testing.T, p *proc, key string) (int, string) {
	t.Helper()
	code, body, err := authTry(p.url("http"), key)
	if err != nil {
		t.Fatalf("forwardAuth: %v", err)
	}
	return code, body
}

func expectAuth(t *testing.T, p *proc, what, key string, want int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s → %d", what, want), func() bool {
		code, _ := authCode(t, p, key)
		return code == want
	})
}

func readyz(t *testing.T, p *proc) (int, string) {
	t.Helper()
	resp, err := faultClient.Get(p.url("http") + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// promValue reads one sample from a Prometheus text endpoint: name with no
// labels, or the series whose labels contain label (e.g. `result="ok"`).
func promValue(t *testing.T, metricsURL, name, label string) float64 {
	t.Helper()
	v, err := promSample(metricsURL, name, label)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// promSample is promValue returning its errors, for goroutines.
func promSample(metricsURL, name, label string) (float64, error) {
	resp, err := faultClient.Get(metricsURL)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if strings.HasPrefix(line, "#") || i < 0 {
			continue
		}
		series := line[:i]
		if series == name || (strings.HasPrefix(series, name+"{") && label != "" && strings.Contains(series, label)) {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err != nil {
				return 0, fmt.Errorf("metric %s: %w", line, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("metric %s{%s} not found at %s", name, label, metricsURL)
}

func replicaRevision(t *testing.T, p *proc) uint64 {
	return uint64(promValue(t, p.url("http")+"/metrics", "extauthz_replica_revision", ""))
}

func replicaPersistedRevision(t *testing.T, p *proc) uint64 {
	return uint64(promValue(t, p.url("http")+"/metrics", "extauthz_replica_persisted_revision", ""))
}

func adminRevision(t *testing.T, c *cluster) uint64 {
	return uint64(promValue(t, c.adminURL()+"/metrics", "extauthz_store_revision", ""))
}

func resyncs(t *testing.T, p *proc, result string) float64 {
	return promValue(t, p.url("http")+"/metrics", "extauthz_replica_resyncs_total", `result="`+result+`"`)
}

// TestFaultSidecarRestartUnderLoad SIGKILLs a sidecar while four clients
// hammer it with a live and a revoked key, and restarts it on the same data
// dir. Connection errors while it is down are expected; a 200 for the
// revoked key, or anything but 200/503 for the live key, never is. A key
// revoked while the sidecar was down is revoked once it has resumed the
// watch from its persisted revision.
func TestFaultSidecarRestartUnderLoad(t *testing.T) {
	c := newCluster(t, 1)
	live := signalsKey(c, "live")
	revoked := signalsKey(c, "revoked")
	revokedWhileDown := signalsKey(c, "revoked while down")
	faultRevoke(t, c, revoked.ID)
	c.expect("revoked key", revoked.Key, "GET", faultPath, 401)
	c.expect("live key", live.Key, "GET", faultPath, 200)
	c.expect("key to revoke while down", revokedWhileDown.Key, "GET", faultPath, 200)

	var base atomic.Pointer[string]
	u := c.sidecars[0].url("http")
	base.Store(&u)
	var phase atomic.Int32 // 0 before the kill, 1 after the restart
	var (
		liveOK, revokedDenied [2]atomic.Int64
		connErrors            atomic.Int64
		mu                    sync.Mutex
		wrong                 []string
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ph := phase.Load()
				key, isLive := revoked.Key, false
				if i%2 == 0 {
					key, isLive = live.Key, true
				}
				code, body, err := authTry(*base.Load(), key)
				switch {
				case err != nil:
					connErrors.Add(1)
					time.Sleep(time.Millisecond) // don't spin on a closed port
				case isLive && code == 200:
					liveOK[ph].Add(1)
				case !isLive && code == 401:
					revokedDenied[ph].Add(1)
				case code == 503:
					// failing closed is always acceptable
				default:
					mu.Lock()
					wrong = append(wrong, fmt.Sprintf("live=%v phase=%d: %d %s", isLive, ph, code, body))
					mu.Unlock()
				}
			}
		}()
	}
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()

	eventually(t, "load before the kill", func() bool { return liveOK[0].Load() >= 50 && revokedDenied[0].Load() >= 50 })
	if code := c.sidecars[0].stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed sidecar exited 0")
	}
	faultRevoke(t, c, revokedWhileDown.ID)
	c.sidecars[0] = start(t, c.sideArgs[0]...)
	u2 := c.sidecars[0].url("http")
	phase.Store(1)
	base.Store(&u2)
	eventually(t, "load after the restart", func() bool { return liveOK[1].Load() >= 50 && revokedDenied[1].Load() >= 50 })
	c.expect("key revoked while the sidecar was down", revokedWhileDown.Key, "GET", faultPath, 401)

	halt()
	mu.Lock()
	defer mu.Unlock()
	for _, w := range wrong {
		t.Errorf("wrong decision: %s", w)
	}
	t.Logf("live 200s %d/%d, revoked 401s %d/%d (before/after), connection errors %d",
		liveOK[0].Load(), liveOK[1].Load(), revokedDenied[0].Load(), revokedDenied[1].Load(), connErrors.Load())
}

// TestFaultSidecarKilledKeepsChangesInForce: a change a sidecar put in
// force is never undone by its death. With --replica-sync-interval far
// longer than the test, the revocation is only in the write-ahead log when
// the sidecar is SIGKILLed; the admin is killed too, so the restarted
// sidecar can learn it from nowhere else. It must deny the key at once,
// and have written it to its file.
func TestFaultSidecarKilledKeepsChangesInForce(t *testing.T) {
	c := newCluster(t, 0)
	live := signalsKey(c, "live")
	victim := signalsKey(c, "revoked before the crash")
	dir := filepath.Join(c.dir, "sidecar-wal")
	args := c.sidecarVia(c.directAdminURL(), dir, "--replica-sync-interval", "1h")
	sc := start(t, args...)
	eventually(t, "sidecar ready", func() bool { code, _ := readyz(t, sc); return code == 200 })
	expectAuth(t, sc, "key to revoke", victim.Key, 200)

	faultRevoke(t, c, victim.ID)
	expectAuth(t, sc, "revoked key", victim.Key, 401)
	if in, persisted := replicaRevision(t, sc), replicaPersistedRevision(t, sc); persisted >= in {
		t.Fatalf("replica file at %d, in force %d: the file already has the revocation (the test proves nothing)", persisted, in)
	}
	head := adminRevision(t, c)
	if code := c.admin.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed admin exited 0")
	}
	if code := sc.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed sidecar exited 0")
	}

	sc = start(t, args...)
	eventually(t, "restarted sidecar ready from its file", func() bool { code, _ := readyz(t, sc); return code == 200 })
	if code, body := authCode(t, sc, victim.Key); code != 401 {
		t.Fatalf("revoked key after the crash: %d %s; want 401", code, body)
	}
	expectAuth(t, sc, "live key after the crash", live.Key, 200)
	if in, persisted := replicaRevision(t, sc), replicaPersistedRevision(t, sc); in != head || persisted != head {
		t.Errorf("restarted replica at %d in force, %d in its file; want %d for both", in, persisted, head)
	}
	if !strings.Contains(sc.logs.String(), "write-ahead log replayed") {
		t.Error("no replay logged")
	}
}

// replProxy is a fake of the network between a sidecar and the admin (the
// outside world of both): an HTTP reverse proxy on loopback that can cut,
// hold, or write into the watch stream and tamper with snapshot records.
// The admin and the sidecar on either side are the real binary.
type replProxy struct {
	t        *testing.T
	upstream string
	srv      *httptest.Server
	client   *http.Client
	rp       *httputil.ReverseProxy

	watches     atomic.Int64 // watch requests received
	snapshots   atomic.Int64 // snapshot requests received
	heldChanges atomic.Int64 // change lines held back by hold
	cuts        atomic.Int64 // streams cut

	mu     sync.Mutex
	cut    chan struct{}       // closed to cut every open watch stream
	hold   chan struct{}       // non-nil: watch lines are held until it closes
	tamper func([]byte) []byte // applied to every snapshot record line

	inject chan func(last uint64) []byte // a line to write into an open watch
}

func newReplProxy(t *testing.T, upstream string) *replProxy {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p := &replProxy{
		t: t, upstream: upstream, cut: make(chan struct{}), inject: make(chan func(uint64) []byte),
		client: &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext}},
		rp:     httputil.NewSingleHostReverseProxy(u),
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/replication/v1/watch":
			p.serveWatch(w, r)
		case "/replication/v1/snapshot":
			p.serveSnapshot(w, r)
		default:
			p.rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

func (p *replProxy) url() string { return p.srv.URL }

// cutAll cuts every open watch stream in the middle of a line.
func (p *replProxy) cutAll() {
	p.mu.Lock()
	close(p.cut)
	p.cut = make(chan struct{})
	p.mu.Unlock()
}

func (p *replProxy) holdOn() {
	p.mu.Lock()
	p.hold = make(chan struct{})
	p.mu.Unlock()
}

func (p *replProxy) release() {
	p.mu.Lock()
	close(p.hold)
	p.hold = nil
	p.mu.Unlock()
}

func (p *replProxy) setTamper(f func([]byte) []byte) {
	p.mu.Lock()
	p.tamper = f
	p.mu.Unlock()
}

// injectLine has the next (or current) watch stream write mk(last), where
// last is the last revision that stream passed to the sidecar.
func (p *replProxy) injectLine(mk func(last uint64) []byte) {
	p.t.Helper()
	select {
	case p.inject <- mk:
	case <-time.After(30 * time.Second):
		p.t.Fatal("no watch stream took the injected line within 30s")
	}
}

func (p *replProxy) upstreamGet(r *http.Request) (*http.Response, error) {
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), nil)
	if err != nil {
		return nil, err
	}
	req.Header = r.Header.Clone()
	return p.client.Do(req)
}

// lineRevision returns the revision of a watch line, if it has one.
func lineRevision(l []byte) (rev uint64, change bool, ok bool) {
	var v struct {
		Type     string `json:"type"`
		Revision uint64 `json:"revision"`
	}
	if json.Unmarshal(l, &v) != nil || v.Revision == 0 && v.Type != "heartbeat" {
		return 0, false, false
	}
	return v.Revision, v.Type == "key" || v.Type == "user", true
}

func (p *replProxy) serveWatch(w http.ResponseWriter, r *http.Request) {
	p.watches.Add(1)
	ctx := r.Context()
	resp, err := p.upstreamGet(r)
	if err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	last, _ := strconv.ParseUint(r.URL.Query().Get("since"), 10, 64)
	write := func(l []byte) {
		_, _ = w.Write(l)
		_ = rc.Flush()
		if rev, _, ok := lineRevision(l); ok {
			last = rev
		}
	}
	lines := make(chan []byte, 4096)
	go func() {
		defer close(lines)
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			select {
			case lines <- l:
			case <-ctx.Done():
				return
			}
		}
	}()
	var pending [][]byte
	for {
		p.mu.Lock()
		cut, hold := p.cut, p.hold
		p.mu.Unlock()
		if hold == nil {
			for _, l := range pending {
				write(l)
			}
			pending = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-cut:
			p.cuts.Add(1)
			_, _ = w.Write([]byte(`{"type":"key","revision":`))
			_ = rc.Flush()
			panic(http.ErrAbortHandler) // drop the connection mid-line
		case <-hold: // released
		case mk := <-p.inject:
			write(mk(last))
		case l, ok := <-lines:
			if !ok {
				return // the admin ended the stream
			}
			p.mu.Lock()
			held := p.hold != nil
			p.mu.Unlock()
			if held || len(pending) > 0 {
				pending = append(pending, l)
				if _, change, _ := lineRevision(l); change && held {
					p.heldChanges.Add(1)
				}
				continue
			}
			write(l)
		}
	}
}

func (p *replProxy) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	p.snapshots.Add(1)
	p.mu.Lock()
	tamper := p.tamper
	p.mu.Unlock()
	if tamper == nil {
		p.rp.ServeHTTP(w, r)
		return
	}
	resp, err := p.upstreamGet(r)
	if err != nil {
		http.Error(w, "upstream: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	for _, l := range bytes.SplitAfter(body, []byte("\n")) {
		var v struct{ Type string }
		if json.Unmarshal(l, &v) == nil && (v.Type == "key" || v.Type == "user") {
			l = tamper(l)
		}
		_, _ = w.Write(l)
	}
}

// forgedKeyLine is a watch line that would add raw as a full_access key.
func forgedKeyLine(rev uint64, raw string) []byte {
	return fmt.Appendf(nil, `{"type":"key","revision":%d,"key":{"id":"forged-%d","hash":"%s","prefix":"%s","scopes":["full_access"],"created_at":"2024-01-01T00:00:00Z"}}`+"\n",
		rev, rev, keystore.HashKey(raw), keystore.DisplayPrefix(raw))
}

// TestFaultProxy runs a sidecar whose --admin-url is a proxy that cuts,
// delays and corrupts the replication traffic.
func TestFaultProxy(t *testing.T) {
	c := newCluster(t, 0)
	px := newReplProxy(t, c.adminURL())
	sc := start(t, c.sidecarVia(px.url(), filepath.Join(c.dir, "via-proxy"))...)
	eventually(t, "sidecar ready through the proxy", func() bool { code, _ := readyz(t, sc); return code == 200 })
	live := signalsKey(c, "live")
	expectAuth(t, sc, "live key", live.Key, 200)
	forged := unknownKey(t)

	t.Run("cut", func(t *testing.T) {
		k := signalsKey(c, "revoked after a cut")
		expectAuth(t, sc, "key before the cut", k.Key, 200)
		before := px.watches.Load()
		px.cutAll()
		eventually(t, "the cut stream replaced by a new watch", func() bool { return px.cuts.Load() >= 1 && px.watches.Load() > before })
		faultRevoke(t, c, k.ID)
		expectAuth(t, sc, "revocation made after the cut", k.Key, 401)
		expectAuth(t, sc, "live key", live.Key, 200)
	})

	t.Run("delay", func(t *testing.T) {
		k := signalsKey(c, "revoked during a delay")
		expectAuth(t, sc, "key before the delay", k.Key, 200)
		px.holdOn()
		held := px.heldChanges.Load()
		faultRevoke(t, c, k.ID)
		eventually(t, "the revocation held in the proxy", func() bool { return px.heldChanges.Load() > held })
		// Fail-static: the sidecar still decides from what it has.
		if code, body := authCode(t, sc, k.Key); code != 200 {
			t.Errorf("key whose revocation is held back: %d %s; want 200 (it cannot know yet)", code, body)
		}
		if code, _ := authCode(t, sc, live.Key); code != 200 {
			t.Errorf("live key during the delay: %d", code)
		}
		if code, _ := authCode(t, sc, forged); code != 401 {
			t.Errorf("unknown key during the delay: %d", code)
		}
		px.release()
		expectAuth(t, sc, "revocation after the delay ends", k.Key, 401)
	})

	t.Run("garbage", func(t *testing.T) {
		snapshotsBefore := resyncs(t, sc, "ok")
		cases := []struct {
			name string
			line func(last uint64) []byte
		}{
			{"not json", func(uint64) []byte { return []byte("\x00\xff this is not json\n") }},
			{"revision gap", func(last uint64) []byte { return forgedKeyLine(last+2, forged) }},
			{"truncated json", func(last uint64) []byte { return append(forgedKeyLine(last+1, forged)[:60], '\n') }},
			{"heartbeat ahead", func(last uint64) []byte { return fmt.Appendf(nil, `{"type":"heartbeat","revision":%d}`+"\n", last+1) }},
			{"snapshot header", func(last uint64) []byte {
				return fmt.Appendf(nil, `{"type":"header","revision":%d,"store_id":"x","schema":1}`+"\n", last)
			}},
			{"line over 1 MiB", func(last uint64) []byte {
				l := forgedKeyLine(last+1, forged)
				return append(l[:len(l)-2:len(l)-2], []byte(`,"pad":"`+strings.Repeat("x", 1<<20)+`"}`+"\n")...)
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				before := px.watches.Load()
				px.injectLine(tc.line)
				eventually(t, "the sidecar to drop the stream and watch again", func() bool { return px.watches.Load() > before })
				if code, body := authCode(t, sc, forged); code != 401 {
					t.Fatalf("key from the injected line: %d %s; want 401", code, body)
				}
				eventually(t, "replica at the admin's revision", func() bool { return replicaRevision(t, sc) == adminRevision(t, c) })
				if code, _ := authCode(t, sc, live.Key); code != 200 {
					t.Errorf("live key after the injection: %d", code)
				}
			})
		}
		k := signalsKey(c, "revoked after the garbage")
		expectAuth(t, sc, "key after the garbage", k.Key, 200)
		faultRevoke(t, c, k.ID)
		expectAuth(t, sc, "revocation after the garbage", k.Key, 401)
		if got := resyncs(t, sc, "ok"); got != snapshotsBefore {
			t.Errorf("snapshots %v → %v: a dropped watch resumes from its revision", snapshotsBefore, got)
		}
	})

	t.Run("corrupt snapshot", func(t *testing.T) {
		rv := signalsKey(c, "revoked before the snapshot")
		faultRevoke(t, c, rv.ID)
		px2 := newReplProxy(t, c.adminURL())
		hashChar := regexp.MustCompile(`"hash":"`)
		px2.setTamper(func(l []byte) []byte { // one hex digit of a hash changes
			l = bytes.Clone(l)
			if loc := hashChar.FindIndex(l); loc != nil {
				if l[loc[1]] == '0' {
					l[loc[1]] = '1'
				} else {
					l[loc[1]] = '0'
				}
			}
			return l
		})
		fresh := start(t, c.sidecarVia(px2.url(), filepath.Join(c.dir, "fresh"))...)
		notServing := func(what string) {
			t.Helper()
			eventually(t, what+": rejected snapshots", func() bool { return resyncs(t, fresh, "failed") >= 2 })
			if code, body := readyz(t, fresh); code != 503 {
				t.Errorf("%s: /readyz %d %s; want 503", what, code, body)
			}
			for name, key := range map[string]string{"live": live.Key, "revoked": rv.Key, "unknown": forged} {
				if code, body := authCode(t, fresh, key); code != 503 || body != `{"error":"authorization unavailable"}` {
					t.Errorf("%s: %s key → %d %s; want 503 authorization unavailable", what, name, code, body)
				}
			}
			if got := resyncs(t, fresh, "ok"); got != 0 {
				t.Errorf("%s: %v snapshots accepted", what, got)
			}
		}
		notServing("flipped hash digit")

		// A tamper that would resurrect the revoked key.
		revokedAt := regexp.MustCompile(`,"revoked_at":"[^"]*"`)
		var hit atomic.Bool
		px2.setTamper(func(l []byte) []byte {
			out := revokedAt.ReplaceAll(l, nil)
			if len(out) != len(l) {
				hit.Store(true)
			}
			return out
		})
		failed := resyncs(t, fresh, "failed")
		eventually(t, "un-revoking tamper applied", func() bool { return hit.Load() && resyncs(t, fresh, "failed") >= failed+2 })
		notServing("revoked_at removed")

		px2.setTamper(nil)
		eventually(t, "ready once the snapshot is genuine", func() bool { code, _ := readyz(t, fresh); return code == 200 })
		expectAuth(t, fresh, "live key", live.Key, 200)
		expectAuth(t, fresh, "revoked key", rv.Key, 401)
		expectAuth(t, fresh, "unknown key", forged, 401)
	})
}

// TestFaultMaxStaleness: with --max-staleness 1s, a sidecar whose admin is
// SIGKILLed turns not-ready and answers 503 on both front doors, then
// serves again once the admin is back. (Real time must pass the bound:
// about a second, waited for by polling, never by a fixed sleep.)
func TestFaultMaxStaleness(t *testing.T) {
	c := newCluster(t, 0)
	sc := start(t, c.sidecarVia(c.directAdminURL(), filepath.Join(c.dir, "bounded"), "--max-staleness", "1s")...)
	live := signalsKey(c, "live")
	expectAuth(t, sc, "live key", live.Key, 200)
	conn := dial(t, sc.addrs["grpc"])
	ac := authv3.NewAuthorizationClient(conn)
	hc := healthgrpc.NewHealthClient(conn)
	grpcCode := func(key string) codes.Code {
		resp, err := envoyCheck(t, ac, "GET", faultPath, map[string]string{"x-api-key": key})
		if err != nil {
			return status.Code(err)
		}
		return codes.Code(resp.GetStatus().GetCode())
	}
	health := func() healthgrpc.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(t.Context(), &healthgrpc.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil {
			return healthgrpc.HealthCheckResponse_UNKNOWN
		}
		return r.GetStatus()
	}
	eventually(t, "gRPC allows the live key", func() bool { return grpcCode(live.Key) == codes.OK })

	if code := c.admin.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed admin exited 0")
	}
	eventually(t, "not ready once stale", func() bool { code, _ := readyz(t, sc); return code == 503 })
	if _, body := readyz(t, sc); !strings.Contains(body, "stale") {
		t.Errorf("/readyz body %s; want the staleness named", body)
	}
	for name, key := range map[string]string{"live": live.Key, "unknown": unknownKey(t), "none": ""} {
		if code, body := authCode(t, sc, key); code != 503 || body != `{"error":"authorization unavailable"}` {
			t.Errorf("stale, %s key: %d %s; want 503 authorization unavailable", name, code, body)
		}
		if got := grpcCode(key); got != codes.Unavailable {
			t.Errorf("stale, %s key over gRPC: %v; want Unavailable", name, got)
		}
	}
	eventually(t, "gRPC health NOT_SERVING", func() bool { return health() == healthgrpc.HealthCheckResponse_NOT_SERVING })

	c.admin = start(t, c.adminArgs...)
	eventually(t, "ready once the admin is back", func() bool { code, _ := readyz(t, sc); return code == 200 })
	expectAuth(t, sc, "live key", live.Key, 200)
	eventually(t, "gRPC allows again", func() bool { return grpcCode(live.Key) == codes.OK })
	eventually(t, "gRPC health SERVING", func() bool { return health() == healthgrpc.HealthCheckResponse_SERVING })
	k := signalsKey(c, "after the admin came back")
	expectAuth(t, sc, "new key", k.Key, 200)
	faultRevoke(t, c, k.ID)
	expectAuth(t, sc, "revocation after the admin came back", k.Key, 401)
}

// importHashes imports keys by hash over the admin API.
func importHashes(t *testing.T, c *cluster, raws []string) {
	t.Helper()
	var body bytes.Buffer
	for i, raw := range raws {
		fmt.Fprintf(&body, `{"hash":"%s","prefix":"%s","name":"imported %d","scopes":["signals"]}`+"\n", keystore.HashKey(raw), keystore.DisplayPrefix(raw), i)
	}
	req, _ := http.NewRequest("POST", c.adminURL()+"/api/v1/api-keys/import", &body)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := faultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Imported int `json:"imported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 || res.Imported != len(raws) {
		t.Fatalf("import: %d %+v %v", resp.StatusCode, res, err)
	}
}

// TestFaultDiskFull caps the size of every file a sidecar writes
// (RLIMIT_FSIZE, so writes past it fail with EFBIG as on a full disk).
//
//   - A sidecar that already serves, and then cannot apply a large batch of
//     changes followed by a revocation, keeps dropping the watch; with
//     --max-staleness it turns 503 and stays there: the revoked key is never
//     allowed once it failed closed.
//   - A fresh sidecar whose snapshot does not fit never turns ready: 503
//     for every key, never a decision from a partial replica.
//   - Restarted without the cap on the same data dir, the first sidecar
//     catches up: the revocation arrives, the imported keys work.
func TestFaultDiskFull(t *testing.T) {
	const limit = 128 << 10 // the replica can grow to 128 KiB, not to 256 KiB
	const imported = 3000   // about 1 MiB of records
	c := newCluster(t, 0)
	live := signalsKey(c, "live")
	victim := signalsKey(c, "revoked when the disk is full")
	full := startLimited(t, "fsize", limit, c.sidecarVia(c.directAdminURL(), filepath.Join(c.dir, "full"), "--max-staleness", "1s")...)
	eventually(t, "capped sidecar ready", func() bool { code, _ := readyz(t, full); return code == 200 })
	expectAuth(t, full, "live key", live.Key, 200)
	expectAuth(t, full, "key to revoke", victim.Key, 200)

	raws := make([]string, imported)
	for i := range raws {
		raws[i] = unknownKey(t)
	}
	importHashes(t, c, raws)
	faultRevoke(t, c, victim.ID)
	head := adminRevision(t, c)

	full.logs.waitFor(t, "a write refused for the file size", func(m map[string]any) bool {
		e, _ := m["error"].(string)
		return strings.Contains(e, "file too large")
	})
	eventually(t, "revoked key no longer allowed", func() bool { code, _ := authCode(t, full, victim.Key); return code != 200 })
	if rev := replicaRevision(t, full); rev >= head {
		t.Fatalf("replica reached revision %d of %d: the cap did not bite (raise imported)", rev, head)
	}
	// Failed closed, and stays so: the revocation cannot be applied.
	for i := 0; i < 20; i++ {
		for name, key := range map[string]string{"revoked": victim.Key, "live": live.Key, "imported": raws[imported-1]} {
			if code, body := authCode(t, full, key); code != 503 {
				// Only a replica believed current answers anything else.
				t.Errorf("round %d, %s key: %d %s from a sidecar that cannot apply its changes (catch-up batches mark the replica current)", i, name, code, body)
			}
		}
	}
	if code, body := readyz(t, full); code != 503 {
		t.Errorf("/readyz %d %s; want 503", code, body)
	}

	// A fresh sidecar under the same cap cannot store the snapshot.
	fresh := startLimited(t, "fsize", limit, c.sidecarVia(c.directAdminURL(), filepath.Join(c.dir, "fresh"))...)
	eventually(t, "snapshots refused by the file size", func() bool { return resyncs(t, fresh, "failed") >= 2 })
	if code, body := readyz(t, fresh); code != 503 {
		t.Errorf("fresh capped sidecar: /readyz %d %s; want 503", code, body)
	}
	for name, key := range map[string]string{"live": live.Key, "revoked": victim.Key, "imported": raws[0], "unknown": unknownKey(t)} {
		if code, body := authCode(t, fresh, key); code != 503 || body != `{"error":"authorization unavailable"}` {
			t.Errorf("fresh capped sidecar, %s key: %d %s; want 503", name, code, body)
		}
	}
	if strings.Contains(fresh.logs.String(), `"snapshot loaded"`) {
		t.Error("fresh capped sidecar logged a loaded snapshot")
	}

	// Room again: the same replica catches up from its revision.
	if code := full.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed sidecar exited 0")
	}
	healed := start(t, c.sidecarVia(c.directAdminURL(), filepath.Join(c.dir, "full"), "--max-staleness", "1s")...)
	saw200 := 0
	eventually(t, "revocation applied after the cap is lifted", func() bool {
		code, _ := authCode(t, healed, victim.Key)
		if code == 200 {
			saw200++
		}
		return code == 401
	})
	if saw200 > 0 {
		t.Errorf("revoked key allowed %d times while the restarted sidecar caught up (catch-up marks the replica current)", saw200)
	}
	expectAuth(t, healed, "imported key", raws[0], 200)
	expectAuth(t, healed, "live key", live.Key, 200)
	if rev := replicaRevision(t, healed); rev < head {
		t.Errorf("healed replica at %d; want ≥ %d", rev, head)
	}
}
