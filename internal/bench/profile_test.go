package main

// In-process benchmarks of the check path, for CPU profiles without a
// process in between: these rebuild what `extauthz sidecar` runs (replication.Follower over a replica file, authz with the
// shipped logger at info level writing to a real file, Prometheus metrics,
// usage tracking, the gRPC front door) inside a test binary:
//
//	go test ./internal/bench -run '^$' -bench Decision -cpuprofile cpu.out
//	go tool pprof -top internal/bench/bench.test cpu.out
//
// BENCH_PROFILE_KEYS sets the store size (default 1,000).

import (
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/envoy"
	"github.com/extauthz/extauthz/authz/forwardauth"
	"github.com/extauthz/extauthz/internal/childproc"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/replication"
	"github.com/extauthz/extauthz/usage"
)

// checkFixture is a sidecar's check path over a prefilled replica.
type checkFixture struct {
	envoy          *envoy.Server
	forwardAuth    *forwardauth.Door
	keys           *keySet
	valid, invalid []*authv3.CheckRequest
	followerCloser func() error
	logFile        *os.File
}

func newCheckFixture(b *testing.B) *checkFixture {
	b.Helper()
	n := 1000
	if v := os.Getenv("BENCH_PROFILE_KEYS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	policyFile := filepath.Join("..", "..", "examples", "policies", "nexgent.yaml")
	c, err := newCluster(dir, "/bin/true", policyFile)
	if err != nil {
		b.Fatal(err)
	}
	// A prefilled store carries a store id, so a follower opening it as its
	// replica serves it at once, exactly as after a restart.
	replicaDir := filepath.Join(dir, "replica")
	ks, err := c.prefillAdmin(replicaDir, n, min(n, 10_000))
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(filepath.Join(replicaDir, adminStoreFile), filepath.Join(replicaDir, replication.ReplicaFile)); err != nil {
		b.Fatal(err)
	}
	logFile, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	log := zerolog.New(logFile).Level(zerolog.InfoLevel).With().Timestamp().Str("service", "extauthz").Str("role", "sidecar").Str("version", "bench").Logger()
	reg := prometheus.NewRegistry()
	f, err := replication.NewFollower(replication.FollowerOptions{
		AdminURL: "http://127.0.0.1:1", Token: "t", Dir: replicaDir,
		Logger: log.With().Str("component", "replica").Logger(), Registerer: reg,
	})
	if err != nil {
		b.Fatal(err)
	}
	if !f.Ready() {
		b.Fatal("follower not ready on the prefilled replica")
	}
	pol, err := policy.Load(c.policyFile)
	if err != nil {
		b.Fatal(err)
	}
	a := authz.New(authz.Options{
		Keys: f, Available: f.Healthy, Policy: pol, Usage: usage.NewDiscard(),
		Logger: log.With().Str("component", "authz").Logger(), Metrics: checkMetrics(b, reg),
	})
	trusted, err := forwardauth.ParseTrustedProxies(forwardauth.DefaultTrustedProxies)
	if err != nil {
		b.Fatal(err)
	}
	fx := &checkFixture{envoy: envoy.NewServer(a), forwardAuth: forwardauth.New(a, trusted, forwardauth.FamilyAuto), keys: ks, followerCloser: f.Close, logFile: logFile}
	for i, k := range ks.Valid {
		fx.valid = append(fx.valid, checkRequest(k, i))
	}
	for i, k := range ks.Invalid {
		fx.invalid = append(fx.invalid, checkRequest(k, i))
	}
	b.Cleanup(func() { _ = fx.followerCloser(); logFile.Close() })
	return fx
}

var seq atomic.Uint64

// pick returns a request of the load's mix: 90 % valid, 10 % unknown keys.
func (fx *checkFixture) pick(r *rand.Rand) *authv3.CheckRequest {
	if r.Float64() < invalidShare {
		return fx.invalid[r.IntN(len(fx.invalid))]
	}
	return fx.valid[r.IntN(len(fx.valid))]
}

// BenchmarkDecision is envoy.Server.Check called directly: decision,
// lookup, logging, metrics and the response, without gRPC.
func BenchmarkDecision(b *testing.B) {
	fx := newCheckFixture(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seq.Add(1), 1))
		for pb.Next() {
			if _, err := fx.envoy.Check(context.Background(), fx.pick(r)); err != nil {
				b.Error(err)
			}
		}
	})
}

// BenchmarkGRPC is the whole Check over loopback gRPC, client and server
// in this process, against extauthz's front door and a do-nothing server
// with the same options; the CPU profile of each shows where the
// difference goes.
func BenchmarkGRPC(b *testing.B) {
	fx := newCheckFixture(b)
	noop := &noopAuthz{ok: &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}}
	for _, tc := range []struct {
		name string
		srv  authv3.AuthorizationServer
	}{{"extauthz", fx.envoy}, {"noop", noop}} {
		b.Run(tc.name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			opts := []grpc.ServerOption{
				grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
				grpc.MaxRecvMsgSize(4 << 20),
			}
			if tc.srv == authv3.AuthorizationServer(fx.envoy) {
				opts = append(opts, grpc.ForceServerCodecV2(fx.envoy.Codec())) // as cmd/extauthz serves it
			}
			srv := grpc.NewServer(opts...)
			authv3.RegisterAuthorizationServer(srv, tc.srv)
			go func() { _ = srv.Serve(ln) }()
			defer srv.Stop()
			var clients []authv3.AuthorizationClient
			for range 4 {
				cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer cc.Close()
				clients = append(clients, authv3.NewAuthorizationClient(cc))
			}
			b.SetParallelism(32) // 64 callers on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := seq.Add(1)
				r := rand.New(rand.NewPCG(w, 2))
				client := clients[w%uint64(len(clients))]
				for pb.Next() {
					if _, err := client.Check(context.Background(), fx.pick(r)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkHTTP is BenchmarkGRPC for the forwardAuth door: the whole
// request over loopback HTTP/1.1, client and server in this process,
// against extauthz's door served as cmd/extauthz serves it, a do-nothing
// net/http handler behind a ServeMux, as the do-nothing baseline of make
// bench serves it, and (noop-fasthttp) a do-nothing handler on the door's
// own server, the ceiling of the door's HTTP stack.
func BenchmarkHTTP(b *testing.B) {
	fx := newCheckFixture(b)
	for _, name := range []string{"extauthz", "noop", "noop-fasthttp"} {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			switch name {
			case "extauthz", "noop-fasthttp": // as cmd/extauthz serves it
				h := fx.forwardAuth.Handler(http.NotFoundHandler())
				if name != "extauthz" {
					h = func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(http.StatusOK) }
				}
				srv := forwardauth.NewHTTPServer(h, zerolog.Nop())
				go func() { _ = srv.Serve(ln) }()
				defer srv.Shutdown(context.Background())
			default:
				mux := http.NewServeMux()
				mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 256 << 10}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
			}
			load := newHTTPLoad(ln.Addr().String(), 64, fx.keys.Valid, fx.keys.Invalid, name == "extauthz")
			defer load.Close()
			b.SetParallelism(32) // 64 callers on 2 cores
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(seq.Add(1), 3))
				for pb.Next() {
					valid := r.Float64() >= invalidShare
					n := len(fx.keys.Valid)
					if !valid {
						n = len(fx.keys.Invalid)
					}
					ok, err := load.call(context.Background(), valid, r.IntN(n))
					if err != nil || !ok {
						b.Errorf("call: ok %v, err %v", ok, err)
						return
					}
				}
			})
		})
	}
}

// profileSetup is the start of the process profiling tests: the binary
// (BENCH_PROFILE_BIN, run with --pprof-addr), the output path
// (BENCH_PROFILE_OUT), the store size (BENCH_PROFILE_KEYS, else keys) and
// a cluster in a temp dir. It skips the test unless both are set.
func profileSetup(t *testing.T, keys int) (bin, out string, n int, dir string, c *cluster) {
	t.Helper()
	bin, out = os.Getenv("BENCH_PROFILE_BIN"), os.Getenv("BENCH_PROFILE_OUT")
	if bin == "" || out == "" {
		t.Skip("BENCH_PROFILE_BIN and BENCH_PROFILE_OUT not set")
	}
	n = keys
	if v := os.Getenv("BENCH_PROFILE_KEYS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir = t.TempDir()
	c, err := newCluster(dir, bin, filepath.Join("..", "..", "examples", "policies", "nexgent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return bin, out, n, dir, c
}

// TestProfileSidecar profiles a real sidecar process (--pprof-addr) under
// the bench's gRPC (or, with BENCH_PROFILE_DOOR=http, forwardAuth) load:
//
//	make build && BENCH_PROFILE_BIN=$PWD/bin/extauthz BENCH_PROFILE_OUT=/tmp/sidecar.prof \
//	  go test ./internal/bench -run ProfileSidecar -v
//
// BENCH_PROFILE_NOOP=1 profiles the do-nothing server instead, for
// comparison. BENCH_PROFILE_SIDECAR_ENV adds environment variables to the sidecar only
// (e.g. "GOGC=400"), BENCH_PROFILE_KEYS sets the store size.
func TestProfileSidecar(t *testing.T) {
	bin, out, n, dir, c := profileSetup(t, 1000)
	ctx := context.Background()
	ks, err := c.prefillAdmin(filepath.Join(dir, "admin"), n, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := c.startAdmin(ctx, "admin", filepath.Join(dir, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Stop(10 * time.Second)
	pprofAddr := "127.0.0.1:6161"
	args := []string{"sidecar",
		"--admin-url", admin.URL("admin"), "--replication-token-file", c.replTokenFile,
		"--policy", c.policyFile, "--data-dir", filepath.Join(dir, "sidecar"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-level", "info",
		"--pprof-addr", pprofAddr,
	}
	if os.Getenv("BENCH_PROFILE_NOOP") != "" { // the do-nothing server instead (pprof from BENCH_PPROF_ADDR)
		self, _ := os.Executable()
		bin, args = self, []string{flagNoopGRPC, "127.0.0.1:0"}
		if os.Getenv("BENCH_PROFILE_DOOR") == "http" {
			args[0] = flagNoopHTTP
		}
	}
	sc, err := childproc.Start(ctx, "sidecar", bin, args, append([]string{"BENCH_PPROF_ADDR=" + pprofAddr}, strings.Fields(os.Getenv("BENCH_PROFILE_SIDECAR_ENV"))...))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Stop(10 * time.Second)
	if os.Getenv("BENCH_PROFILE_NOOP") == "" {
		if _, err := sc.WaitReady(ctx, sc.URL("http")+"/readyz", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	spec := loadSpec{Concurrency: 64, Warmup: time.Second, Duration: 10 * time.Second}
	done := make(chan loadResult)
	go func() {
		if os.Getenv("BENCH_PROFILE_DOOR") == "http" {
			h := newHTTPLoad(sc.Addr("http"), 64, ks.Valid, ks.Invalid, os.Getenv("BENCH_PROFILE_NOOP") == "")
			defer h.Close()
			done <- runHTTP(ctx, h, spec)
			return
		}
		g, err := newGRPCLoad(sc.Addr("grpc"), 4, ks.Valid, ks.Invalid, os.Getenv("BENCH_PROFILE_NOOP") == "")
		if err != nil {
			t.Error(err)
			close(done)
			return
		}
		defer g.Close()
		done <- runGRPC(ctx, g, spec)
	}()
	time.Sleep(2 * time.Second)
	minflt0, majflt0 := pageFaults(sc)
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/profile?seconds=8")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		t.Fatal(err)
	}
	f.Close()
	minflt1, majflt1 := pageFaults(sc)
	t.Logf("page faults during the profile: %d minor, %d major", minflt1-minflt0, majflt1-majflt0)
	res := <-done
	t.Logf("load: %s", loadCell(res))
	if os.Getenv("BENCH_PROFILE_NOOP") == "" {
		logGoMetrics(t, sc.URL("http")+"/metrics")
		// The live heap after the load, beside the CPU profile.
		if resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1"); err == nil {
			if f, err := os.Create(out + ".heap"); err == nil {
				_, _ = io.Copy(f, resp.Body)
				f.Close()
			}
			resp.Body.Close()
		}
	}
}

// pageFaults returns the minor and major page faults of p so far
// (/proc/PID/stat fields 10 and 12).
func pageFaults(p *childproc.Proc) (minor, major int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid()) + "/stat")
	if err != nil {
		return 0, 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:] // fields from 3 (state) on
	}
	f := strings.Fields(s)
	if len(f) < 10 {
		return 0, 0
	}
	minor, _ = strconv.ParseInt(f[7], 10, 64)
	major, _ = strconv.ParseInt(f[9], 10, 64)
	return minor, major
}

// logGoMetrics logs the garbage collector's counters from a /metrics page.
func logGoMetrics(t *testing.T, url string) {
	resp, err := http.Get(url)
	if err != nil {
		t.Log(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		for _, name := range []string{"go_gc_duration_seconds_count", "go_memstats_heap_inuse_bytes", "go_gc_gogc_percent", "go_memstats_alloc_bytes_total"} {
			if strings.HasPrefix(line, name+" ") {
				t.Log(line)
			}
		}
	}
}

// TestProfileColdStart profiles the admin and a new sidecar (both with
// --pprof-addr) while the sidecar loads its first snapshot; the profiles go
// to $BENCH_PROFILE_OUT.admin and $BENCH_PROFILE_OUT.sidecar.
//
//	BENCH_PROFILE_KEYS=1000000 BENCH_PROFILE_BIN=$PWD/bin/extauthz BENCH_PROFILE_OUT=/tmp/cold \
//	  go test ./internal/bench -run ProfileColdStart -v -timeout 10m
func TestProfileColdStart(t *testing.T) {
	bin, out, n, dir, c := profileSetup(t, 100_000)
	ctx := context.Background()
	if _, err := c.prefillAdmin(filepath.Join(dir, "admin"), n, 10); err != nil {
		t.Fatal(err)
	}
	const adminPprof, sidecarPprof = "127.0.0.1:6162", "127.0.0.1:6161"
	t0 := time.Now()
	admin, err := childproc.Start(ctx, "admin", bin, []string{"admin", "--data-dir", filepath.Join(dir, "admin"), "--admin-addr", "127.0.0.1:0",
		"--admin-token-file", c.adminTokenFile, "--replication-token-file", c.replTokenFile, "--policy", c.policyFile, "--pprof-addr", adminPprof}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Stop(10 * time.Second)
	t.Logf("admin with %d keys started in %v", n, time.Since(t0))
	sc, err := childproc.Start(ctx, "sidecar", bin, []string{"sidecar",
		"--admin-url", admin.URL("admin"), "--replication-token-file", c.replTokenFile,
		"--policy", c.policyFile, "--data-dir", filepath.Join(dir, "sidecar"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--pprof-addr", sidecarPprof,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Stop(10 * time.Second)
	secs := os.Getenv("BENCH_PROFILE_SECONDS")
	if secs == "" {
		secs = "20"
	}
	errs := make(chan error, 2)
	for _, p := range []struct{ addr, file string }{{adminPprof, out + ".admin"}, {sidecarPprof, out + ".sidecar"}} {
		go func() {
			resp, err := http.Get("http://" + p.addr + "/debug/pprof/profile?seconds=" + secs)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			f, err := os.Create(p.file)
			if err != nil {
				errs <- err
				return
			}
			_, err = io.Copy(f, resp.Body)
			f.Close()
			errs <- err
		}()
	}
	d, err := sc.WaitReady(ctx, sc.URL("http")+"/readyz", 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sidecar ready after %v", d)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m, err := sc.Memory(); err == nil {
		t.Logf("sidecar memory: %+v MiB", []int64{m.RSS >> 20, m.Anon >> 20, m.File >> 20})
	}
}

// checkMetrics returns the check metrics registered with reg.
func checkMetrics(tb testing.TB, reg prometheus.Registerer) *authz.Metrics {
	m, err := authz.NewMetrics(reg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
