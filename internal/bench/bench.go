package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// The load targets, in the order they are measured: the do-nothing
// server, the sidecars of the small and the large store, and a second
// sidecar of the large store whose policy limits every key (gRPC only).
type targetKind int

const (
	targetNoop targetKind = iota
	targetSmall
	targetLarge
	targetLimited
	numTargets
)

// bench is one run: its options, its processes and what it measured.
type bench struct {
	opts  *options
	root  string
	began time.Time
	cl    *cluster
	self  string // this program, re-executed for the do-nothing servers

	small, large *keySet
	res          results
}

// results is everything measured; an error field set means the row could
// not be measured, and says why.
type results struct {
	machine, command, extauthzVersion, loadAvg, date string

	grpc, http       [numTargets]map[int]loadResult
	targetErr        [numTargets]error
	cold, coldBase   time.Duration
	coldErr          error
	restart          time.Duration
	restartBase      time.Duration
	restartErr       error
	shutdown         time.Duration
	mem, memSmall    childproc.Mem
	memNoop          childproc.Mem
	memLimited       childproc.Mem // the limited sidecar after the gRPC load
	memUnlimited     childproc.Mem // the large store's sidecar at the same time
	memErr           error
	admin            loadResult
	adminErr         error
	list, listSmall  *Histogram // one user's key list, large and small store
	listErr          error
	fsyncRate        float64
	fsyncErr         error
	revocations      []revocationResult
	revocationErr    error
	revocationErrAtN int
	ha               haResult
}

// setup records the machine and the command and writes the shared files.
func (b *bench) setup() error {
	o, r := b.opts, &b.res
	var err error
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	r.date = time.Now().UTC().Format("2006-01-02 15:04 MST")
	r.command = strings.Join(append([]string{"go run ./internal/bench"}, os.Args[1:]...), " ")
	r.machine = machine()
	r.loadAvg = loadAvg()
	if out, err := exec.Command(o.bin, "version").Output(); err == nil {
		r.extauthzVersion = strings.TrimSpace(string(out))
	}
	for t := range numTargets {
		r.grpc[t], r.http[t] = map[int]loadResult{}, map[int]loadResult{}
	}
	b.cl, err = newCluster(b.root, o.bin, o.policy)
	return err
}

// runCluster is -only cluster: the admin-cluster rows and the single
// admin's revocation series they are compared with.
func (b *bench) runCluster(ctx context.Context) error {
	if err := b.setup(); err != nil {
		return err
	}
	o := b.opts
	smallDir := filepath.Join(b.root, "admin-small")
	var err error
	if b.small, err = b.cl.prefillAdmin(smallDir, o.keysSmall, o.sample); err != nil {
		return fmt.Errorf("prefill small store: %w", err)
	}
	adminS, err := b.cl.startAdmin(ctx, "admin-small", smallDir)
	if err != nil {
		return err
	}
	return b.finish(ctx, adminS, nil)
}

// finish measures revocation propagation on the small admin (first, when
// not nil, its first sidecar), then the admin cluster, and prints the
// table.
func (b *bench) finish(ctx context.Context, adminS, first *childproc.Proc) error {
	if ctx.Err() == nil {
		b.revocations(ctx, adminS, first)
	}
	_, _ = adminS.Stop(30 * time.Second)
	if ctx.Err() == nil {
		b.clusterRows(ctx)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.print(os.Stdout)
	return nil
}

func (b *bench) run(ctx context.Context) error {
	o, r := b.opts, &b.res
	if err := b.setup(); err != nil {
		return err
	}
	var err error

	// Stores first, before any process runs, so minting does not overlap
	// a measurement.
	smallDir, largeDir := filepath.Join(b.root, "admin-small"), filepath.Join(b.root, "admin-large")
	t0 := time.Now()
	if b.small, err = b.cl.prefillAdmin(smallDir, o.keysSmall, o.sample); err != nil {
		return fmt.Errorf("prefill small store: %w", err)
	}
	b.progress("small store: %d keys in %v", o.keysSmall, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if b.large, err = b.cl.prefillAdmin(largeDir, o.keysLarge, o.sample); err != nil {
		return fmt.Errorf("prefill large store: %w", err)
	}
	b.progress("large store: %d keys in %v", o.keysLarge, time.Since(t0).Round(time.Millisecond))

	noopG, err := childproc.Start(ctx, "noop-grpc", b.self, []string{flagNoopGRPC, "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	noopH, err := childproc.Start(ctx, "noop-http", b.self, []string{flagNoopHTTP, "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	adminS, err := b.cl.startAdmin(ctx, "admin-small", smallDir)
	if err != nil {
		return err
	}
	adminL, err := b.cl.startAdmin(ctx, "admin-large", largeDir)
	if err != nil {
		return err
	}
	b.progress("admins and do-nothing servers up")

	// Cold starts: an empty data dir to /readyz 200, small store first as
	// the baseline.
	scSDir, scLDir := filepath.Join(b.root, "sidecar-small"), filepath.Join(b.root, "sidecar-large")
	scS, d, err := b.cl.startReadySidecar(ctx, "sidecar-small", scSDir, adminS, childproc.StartTimeout)
	if err != nil {
		r.targetErr[targetSmall], r.coldErr = err, err
		b.progress("sidecar (small store) failed: %v", err)
	} else {
		r.coldBase = d
		b.progress("sidecar with %d keys ready in %v", o.keysSmall, d.Round(time.Millisecond))
	}
	var scL *childproc.Proc
	if ctx.Err() == nil {
		scL, d, err = b.cl.startReadySidecar(ctx, "sidecar-large", scLDir, adminL, childproc.StartTimeout)
		if err != nil {
			r.targetErr[targetLarge], r.coldErr = err, err
			b.progress("sidecar (large store) failed: %v", err)
		} else {
			r.cold = d
			b.progress("sidecar with %d keys ready in %v", o.keysLarge, d.Round(time.Millisecond))
		}
	}

	// The large store's sidecar again, with every key limited, after the
	// cold starts so that it does not slow them.
	var scLim *childproc.Proc
	if ctx.Err() == nil {
		if scLim, err = b.limitedSidecar(ctx, "sidecar-large-limited", adminL); err != nil {
			r.targetErr[targetLimited] = err
			b.progress("sidecar (large store, limited) failed: %v", err)
		}
	}

	// Load: per front door and concurrency, the targets back to back so
	// that each figure and its baseline see the same machine.
	targets := [numTargets]*childproc.Proc{noopG, scS, scL, scLim}
	keys := [numTargets]*keySet{b.small, b.small, b.large, b.large}
	names := [numTargets]string{"do-nothing", fmt.Sprintf("extauthz %d keys", o.keysSmall), fmt.Sprintf("extauthz %d keys", o.keysLarge),
		fmt.Sprintf("extauthz %d keys, every key limited", o.keysLarge)}
	b.loadGRPC(ctx, targets, keys, names)
	if scLim != nil { // both large-store sidecars after the same gRPC load
		r.memLimited, _ = scLim.Memory()
		if scL != nil {
			r.memUnlimited, _ = scL.Memory()
		}
		_, _ = scLim.Stop(30 * time.Second)
	}
	targets[targetNoop], targets[targetLimited] = noopH, nil
	b.loadHTTP(ctx, targets, keys, names)

	// Memory after the load.
	if m, err := noopG.Memory(); err == nil {
		r.memNoop = m
	}
	if scS != nil {
		r.memSmall, _ = scS.Memory()
	}
	if scL != nil {
		if r.mem, err = scL.Memory(); err != nil {
			r.memErr = err
		}
	} else {
		r.memErr = r.targetErr[targetLarge]
	}
	_, _ = noopG.Stop(10 * time.Second)
	_, _ = noopH.Stop(10 * time.Second)

	// Restart from the sidecar's own file: SIGTERM, then start again.
	if scS != nil && ctx.Err() == nil {
		if scS, r.restartBase, err = b.restartSidecar(ctx, scS, scSDir, adminS); err != nil {
			r.restartErr = err
		} else {
			b.progress("sidecar with %d keys restarted in %v", o.keysSmall, r.restartBase.Round(time.Millisecond))
		}
	}
	if scL != nil && ctx.Err() == nil {
		var d time.Duration
		r.shutdown, _ = scL.Stop(30 * time.Second)
		scL, d, err = b.cl.startReadySidecar(ctx, "sidecar-large", scLDir, adminL, childproc.StartTimeout)
		if err != nil {
			r.restartErr = err
		} else {
			r.restart = d
			b.progress("sidecar with %d keys restarted in %v (SIGTERM drain took %v)", o.keysLarge, d.Round(time.Millisecond), r.shutdown.Round(time.Millisecond))
		}
	} else if r.restartErr == nil {
		r.restartErr = r.targetErr[targetLarge]
	}

	// Admin key creations, on the large store with its sidecar following,
	// then one user's key list on both stores.
	if ctx.Err() == nil {
		b.adminCreations(ctx, adminL, largeDir)
	}
	if ctx.Err() == nil {
		if b.res.list, b.res.listErr = b.userKeyList(ctx, adminL); b.res.listErr == nil {
			b.res.listSmall, b.res.listErr = b.userKeyList(ctx, adminS)
		}
	}
	if scL != nil {
		_, _ = scL.Stop(30 * time.Second)
	}
	_, _ = adminL.Stop(30 * time.Second)

	return b.finish(ctx, adminS, scS)
}

// restartSidecar stops p with SIGTERM and starts it again on the same data
// dir, returning the new process and its exec-to-ready time.
func (b *bench) restartSidecar(ctx context.Context, p *childproc.Proc, dir string, admin *childproc.Proc) (*childproc.Proc, time.Duration, error) {
	if _, err := p.Stop(30 * time.Second); err != nil {
		return nil, 0, err
	}
	return b.cl.startReadySidecar(ctx, p.Name, dir, admin, childproc.StartTimeout)
}

func (b *bench) loadGRPC(ctx context.Context, targets [numTargets]*childproc.Proc, keys [numTargets]*keySet, names [numTargets]string) {
	o, r := b.opts, &b.res
	var loads [numTargets]*grpcLoad
	for t, p := range targets {
		if p == nil {
			continue
		}
		g, err := newGRPCLoad(p.Addr("grpc"), o.conns, keys[t].Valid, keys[t].Invalid, targetKind(t) != targetNoop)
		if err != nil {
			r.targetErr[t] = err
			continue
		}
		defer g.Close()
		loads[t] = g
	}
	for _, c := range o.concurrency {
		b.interleave(ctx, c, names, r.grpc, func(t targetKind, spec loadSpec) (loadResult, bool) {
			if loads[t] == nil {
				return loadResult{}, false
			}
			return runGRPC(ctx, loads[t], spec), true
		}, "gRPC Check")
	}
}

func (b *bench) loadHTTP(ctx context.Context, targets [numTargets]*childproc.Proc, keys [numTargets]*keySet, names [numTargets]string) {
	o, r := b.opts, &b.res
	maxC := 0
	for _, c := range o.concurrency {
		maxC = max(maxC, c)
	}
	var loads [numTargets]*httpLoad
	for t, p := range targets {
		if p == nil {
			continue
		}
		loads[t] = newHTTPLoad(p.Addr("http"), maxC, keys[t].Valid, keys[t].Invalid, targetKind(t) != targetNoop)
		defer loads[t].Close()
	}
	for _, c := range o.concurrency {
		b.interleave(ctx, c, names, r.http, func(t targetKind, spec loadSpec) (loadResult, bool) {
			if loads[t] == nil {
				return loadResult{}, false
			}
			return runHTTP(ctx, loads[t], spec), true
		}, "forwardAuth")
	}
}

// interleave measures one concurrency against every target in -rounds
// slices of duration/rounds each, rotating the order every round, and adds
// the slices up per target. Spreading each figure and its baseline over
// the same stretch of time keeps drifting background load on a shared
// machine from favouring one of them.
func (b *bench) interleave(ctx context.Context, c int, names [numTargets]string, into [numTargets]map[int]loadResult,
	run func(targetKind, loadSpec) (loadResult, bool), door string) {
	o := b.opts
	rounds := o.rounds
	spec := loadSpec{Concurrency: c, Warmup: o.warmup / time.Duration(rounds), Duration: o.duration / time.Duration(rounds)}
	var acc [numTargets]*loadResult
	for round := range rounds {
		for i := range numTargets {
			t := (targetKind(i) + targetKind(round)) % numTargets
			if ctx.Err() != nil {
				return
			}
			res, ok := run(t, spec)
			if !ok {
				continue
			}
			if acc[t] == nil {
				acc[t] = &loadResult{Hist: NewHistogram()}
			}
			acc[t].add(res)
		}
	}
	for t, a := range acc {
		if a != nil {
			into[t][c] = *a
			b.progress("%s c=%d %s: %s", door, c, names[t], loadCell(*a))
		}
	}
}

// adminCreations runs -admin-clients operator clients creating keys for
// -duration, beside the disk's fsync rate as the baseline.
func (b *bench) adminCreations(ctx context.Context, admin *childproc.Proc, dir string) {
	o, r := b.opts, &b.res
	r.fsyncRate, r.fsyncErr = fsyncRate(dir, min(o.duration, 3*time.Second))
	if r.fsyncErr == nil {
		b.progress("fsync baseline: %.0f/s", r.fsyncRate)
	}
	ac := b.cl.adminClient(admin, o.admins)
	body := map[string]any{"name": "bench", "scopes": []string{"signals"}}
	call := func(ctx context.Context, _ bool, _ int) (bool, error) {
		code, _, err := ac.do(ctx, http.MethodPost, "/api/v1/api-keys", body)
		return code == http.StatusCreated, err
	}
	r.admin = runLoad(ctx, loadSpec{Concurrency: o.admins, Warmup: o.warmup, Duration: o.duration, Valid: 1, Invalid: 1},
		func(int) caller { return call })
	created := r.admin.Requests - r.admin.Unexpected - r.admin.Errors
	if created == 0 {
		r.adminErr = fmt.Errorf("no key created (%d non-201 answers, %d errors: %v)", r.admin.Unexpected, r.admin.Errors, r.admin.FirstErr)
	}
	b.progress("admin creations with %d clients: %s", o.admins, loadCell(r.admin))
}

// The key-list measurement: a user with listUserKeys keys, listed
// listCalls times one after the other.
const (
	listUserKeys = 3
	listCalls    = 200
)

// userKeyList gives a new user listUserKeys keys on admin and times
// listCalls operator lists of that user's keys: what a user's own list
// costs in a store of any size.
func (b *bench) userKeyList(ctx context.Context, admin *childproc.Proc) (*Histogram, error) {
	ac := b.cl.adminClient(admin, 1)
	user := "bench-list-" + admin.Name
	for i := range listUserKeys {
		body := map[string]any{"name": fmt.Sprintf("list-%d", i), "scopes": []string{"signals"}, "userId": user}
		if code, _, err := ac.do(ctx, http.MethodPost, "/api/v1/api-keys", body); err != nil || code != http.StatusCreated {
			return nil, fmt.Errorf("create the user's key: %d %v", code, err)
		}
	}
	h := NewHistogram()
	for range listCalls {
		start := time.Now()
		code, body, err := ac.do(ctx, http.MethodGet, "/api/v1/api-keys?userId="+user, nil)
		if err != nil || code != http.StatusOK {
			return nil, fmt.Errorf("list: %d %v", code, err)
		}
		h.Record(time.Since(start))
		if n := bytes.Count(body, []byte(`"id"`)); n != listUserKeys {
			return nil, fmt.Errorf("list returned %d keys; want %d", n, listUserKeys)
		}
	}
	b.progress("%s: one user's key list p50 %s p99 %s", admin.Name, ms(h.Quantile(0.5)), ms(h.Quantile(0.99)))
	return h, nil
}

// fsyncRate measures how many 4 KiB write + fdatasync pairs one writer
// completes per second in dir: the disk's rate of durable commits.
func fsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.WriteAt(buf, 0); err != nil {
			return 0, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// revocations grows the set of sidecars following the small admin to each
// -sidecars count and measures -revocations revocations at each; it stops
// them all when done.
func (b *bench) revocations(ctx context.Context, admin, first *childproc.Proc) {
	o, r := b.opts, &b.res
	var running []*childproc.Proc
	if first != nil {
		running = append(running, first)
	}
	defer func() { stopAll(running) }()
	ac := []*adminClient{b.cl.adminClient(admin, 2)}
	next := 0
	for _, n := range o.sidecars {
		if ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		started, err := b.startSidecars(ctx, []*childproc.Proc{admin}, n-len(running), len(running), "sidecar-r")
		running = append(running, started...)
		res := revocationResult{Sidecars: n}
		if err != nil {
			res.Unhealthy = fmt.Sprintf("%d of %d sidecars running: %v", len(running), n, firstLine(err))
			b.progress("revocation N=%d: %s", n, res.Unhealthy)
			if len(running) == 0 {
				r.revocations = append(r.revocations, res)
				continue
			}
		}
		b.progress("revocation: %d sidecars ready (%v to start the new ones)", len(running), time.Since(t0).Round(time.Millisecond))
		// Every sidecar polled; then, with more sidecars than
		// -revoke-probe, a random few polled per revocation.
		probes := []int{0}
		if o.revokeProbe > 0 && len(running) > o.revokeProbe {
			probes = append(probes, o.revokeProbe)
		}
		for _, probe := range probes {
			keys, ids := b.small.Valid[next:next+o.revocations], b.small.IDs[next:next+o.revocations]
			next += o.revocations
			got, err := measureRevocations(ctx, ac, running, keys, ids, probe, o.revokePoll)
			if err != nil {
				r.revocationErr, r.revocationErrAtN = err, n
				b.progress("revocation N=%d failed: %v", n, err)
				return
			}
			got.Unhealthy = res.Unhealthy
			r.revocations = append(r.revocations, got)
			b.progress("revocation N=%d, %d polled: %s", len(running), got.Probed, revocationCell(got))
		}
	}
}

// revocationRuns is how many revocation series a run measures: one per
// sidecar count, and one more for each count above -revoke-probe.
func (o *options) revocationRuns() int {
	runs := 0
	for _, n := range o.sidecars {
		runs++
		if o.revokeProbe > 0 && n > o.revokeProbe {
			runs++
		}
	}
	return runs
}

// startSidecars starts count sidecars, at most 8 at a time, named prefix
// and a number from base, sidecar i following admins[i mod len(admins)],
// and waits until each is ready. It returns those that became ready and
// the first error.
func (b *bench) startSidecars(ctx context.Context, admins []*childproc.Proc, count, base int, prefix string) ([]*childproc.Proc, error) {
	var (
		mu       sync.Mutex
		out      []*childproc.Proc
		errs     []error
		wg       sync.WaitGroup
		parallel = make(chan struct{}, 8)
	)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			parallel <- struct{}{}
			defer func() { <-parallel }()
			name := fmt.Sprintf("%s%d", prefix, base+i)
			p, _, err := b.cl.startReadySidecar(ctx, name, filepath.Join(b.root, name), admins[i%len(admins)], childproc.StartTimeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			out = append(out, p)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return out, fmt.Errorf("%d failed to start, first: %w", len(errs), errs[0])
	}
	return out, nil
}

func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}

// loadAvg returns the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// machine describes the host: cores, CPU model, Go version.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (runtime.NumCPU), %s, %s %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

var errNotMeasured = errors.New("not measured")
