package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

type config struct {
	bin, policy        string
	duration           time.Duration
	quick              bool
	sidecars           int
	quotaAllowance     int64
	workers            int
	rate               float64
	churnInterval      time.Duration
	bound, expirySlack time.Duration
	sampleEvery        time.Duration
	warmup             float64
	goroutineSlack     float64
	rssGrowth          float64
	maxErrorRatio      float64
	users, liveKeys    int
	timeout            time.Duration
	keep               bool
}

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/extauthz", "the extauthz binary (make build)")
	flag.StringVar(&c.policy, "policy", "examples/policies/nexgent.yaml", "the Nexgent policy, copied into the temp dir")
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "how long load and churn run")
	flag.BoolVar(&c.quick, "quick", false, "a 20 s smoke run (overrides -duration; -warmup defaults to 0.5)")
	flag.IntVar(&c.sidecars, "sidecars", 2, "number of extauthz sidecar processes")
	flag.Int64Var(&c.quotaAllowance, "quota-allowance", 5, "the sidecars' --quota-allowance: small, so that the quota's bound is tight")
	flag.IntVar(&c.workers, "workers", 8, "concurrent load workers")
	flag.Float64Var(&c.rate, "rate", 1500, "total checks per second (paced, not closed-loop)")
	flag.DurationVar(&c.churnInterval, "churn-interval", 300*time.Millisecond, "time between admin changes")
	flag.DurationVar(&c.bound, "bound", 2*time.Second, "replication bound: a change must be visible to checks started this long after its acknowledgement")
	flag.DurationVar(&c.expirySlack, "expiry-slack", 2*time.Second, "either decision is accepted this close to an expiry instant")
	flag.DurationVar(&c.sampleEvery, "sample-every", 5*time.Second, "interval of the /metrics sampler")
	flag.Float64Var(&c.warmup, "warmup", 0.2, "fraction of the duration before the baseline sample")
	flag.Float64Var(&c.goroutineSlack, "goroutine-slack", 10, "allowed goroutine growth from the baseline to the last sample")
	flag.Float64Var(&c.rssGrowth, "rss-growth", 10, "allowed RSS growth in percent from the baseline to the last sample")
	flag.Float64Var(&c.maxErrorRatio, "max-error-ratio", 0.001, "allowed share of checks that end in an error (transport, gRPC error, 5xx)")
	flag.IntVar(&c.users, "users", 5, "users owning keys (disabled and re-enabled by the churn)")
	flag.IntVar(&c.liveKeys, "live-keys", 40, "number of live keys the churn steers towards")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Second, "timeout of one check")
	flag.BoolVar(&c.keep, "keep", false, "keep the temp dir (data dirs, tokens) after the run")
	flag.Parse()
	if c.quick {
		c.duration = 20 * time.Second
		warmupSet := false
		flag.Visit(func(f *flag.Flag) { warmupSet = warmupSet || f.Name == "warmup" })
		if !warmupSet {
			c.warmup = 0.5 // 4 s would still be the processes' own warm-up
		}
	}
	if c.rate <= 0 || c.workers <= 0 || c.sidecars <= 0 || c.quotaAllowance <= 0 || c.users <= 0 || c.duration <= 0 {
		fmt.Fprintln(os.Stderr, "soak: -rate, -workers, -sidecars, -quota-allowance, -users and -duration must be positive")
		os.Exit(2)
	}
	os.Exit(run(c))
}

// run does the whole soak and returns the exit code.
func run(c config) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &runner{c: c}
	defer r.cleanup()
	if err := r.setup(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 1
	}
	return r.soak(ctx)
}

type runner struct {
	c        config
	dir      string
	token    string
	admin    *childproc.Proc
	sidecars []*childproc.Proc
	procs    []*childproc.Proc // every child, in start order
	targets  []*target
	series   []*series
	t0       time.Time

	o      *oracle
	churn  *churner
	load   *loader
	client *http.Client // admin API and /metrics

	mu   sync.Mutex
	died []string // processes that exited during the run
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// setup writes the temp dir and starts the admin and the sidecars.
func (r *runner) setup(ctx context.Context) error {
	c := r.c
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build` first, or pass -bin)", err)
	}
	pol, err := os.ReadFile(c.policy)
	if err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	if r.dir, err = os.MkdirTemp("", "extauthz-soak-"); err != nil {
		return err
	}
	write := func(name, content string) (string, error) {
		p := filepath.Join(r.dir, name)
		return p, os.WriteFile(p, []byte(content), 0o600)
	}
	r.token = "soak-operator-" + randomHex(16)
	adminTok, err := write("admin-token", r.token+"\n")
	if err != nil {
		return err
	}
	replTok, err := write("replication-token", "soak-replication-"+randomHex(16)+"\n")
	if err != nil {
		return err
	}
	policy, err := write("policy.yaml", string(pol))
	if err != nil {
		return err
	}

	r.t0 = time.Now()
	r.admin, err = childproc.Start(ctx, "admin", bin, []string{"admin",
		"--data-dir", filepath.Join(r.dir, "admin"), "--policy", policy,
		"--admin-token-file", adminTok, "--replication-token-file", replTok,
		"--admin-addr", "127.0.0.1:0"}, jsonLogs)
	if r.admin != nil {
		r.procs = append(r.procs, r.admin)
	}
	if err != nil {
		return err
	}
	for i := range c.sidecars {
		name := fmt.Sprintf("sidecar-%d", i+1)
		p, err := childproc.Start(ctx, name, bin, []string{"sidecar",
			"--admin-url", r.admin.URL("admin"), "--replication-token-file", replTok, "--policy", policy,
			"--data-dir", filepath.Join(r.dir, name), "--node", name,
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--quota-allowance", strconv.FormatInt(c.quotaAllowance, 10)}, jsonLogs)
		if p != nil {
			r.procs = append(r.procs, p)
		}
		if err != nil {
			return err
		}
		r.sidecars = append(r.sidecars, p)
	}
	for _, p := range r.sidecars {
		if _, err := p.WaitReady(ctx, p.URL("http")+"/readyz", time.Minute); err != nil {
			return err
		}
		t, err := newTarget(p.Name, p)
		if err != nil {
			return err
		}
		r.targets = append(r.targets, t)
	}

	r.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 16, MaxIdleConnsPerHost: 4, IdleConnTimeout: time.Minute,
	}}
	r.series = append(r.series, &series{name: "admin", p: r.admin, url: r.admin.URL("admin") + "/metrics", revMetric: "extauthz_store_revision",
		dbPath: filepath.Join(r.dir, "admin", "extauthz.db")})
	for _, p := range r.sidecars {
		r.series = append(r.series, &series{name: p.Name, p: p, url: p.URL("http") + "/metrics", revMetric: "extauthz_replica_revision",
			dbPath: filepath.Join(r.dir, p.Name, "replica.db")})
	}
	r.o = newOracle(c.bound, c.expirySlack, r.t0, c.users)
	r.o.sidecars, r.o.quotaAllowance = int64(c.sidecars), c.quotaAllowance
	r.churn = &churner{o: r.o, adminURL: r.admin.URL("admin"), token: r.token, client: r.client,
		rng: mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1)), targetLive: c.liveKeys}
	r.load = &loader{o: r.o, targets: r.targets, st: &stats{}, timeout: c.timeout,
		http: &http.Client{Transport: &http.Transport{
			MaxIdleConns: 4 * c.workers, MaxIdleConnsPerHost: 2 * c.workers, IdleConnTimeout: time.Minute,
		}}}
	return nil
}

// jsonLogs makes the children log JSON lines, which childproc reads.
var jsonLogs = []string{"EXTAUTHZ_LOG_FORMAT=json"}

// cleanup stops every child still running and removes the temp dir.
func (r *runner) cleanup() {
	for _, t := range r.targets {
		_ = t.conn.Close()
	}
	var wg sync.WaitGroup
	for _, p := range r.procs {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop(15 * time.Second) }()
	}
	wg.Wait()
	if r.dir != "" {
		if r.c.keep {
			fmt.Println("kept", r.dir)
		} else {
			_ = os.RemoveAll(r.dir)
		}
	}
}

// soak runs load, churn and sampler for the duration, then reports.
func (r *runner) soak(ctx context.Context) int {
	c := r.c
	fmt.Printf("extauthz soak: %v, 1 admin + %d sidecars, %d workers at ≤ %.0f checks/s, a change every %v, bound %v (binary %s, GOMAXPROCS %d)\n",
		c.duration, c.sidecars, c.workers, c.rate, c.churnInterval, c.bound, c.bin, runtime.GOMAXPROCS(0))

	// Seed the pool before the load starts.
	for range c.liveKeys {
		r.churn.create(ctx)
	}
	seeded := r.churn.snapshot().creates
	r.churn.note(func(cc *churnCounts) { *cc = churnCounts{} })

	runCtx, cancelRun := context.WithTimeout(ctx, c.duration)
	defer cancelRun()
	start := time.Now()
	r.o.t0 = start // times in reports are relative to the start of the load
	// A child that exits during the run ends it.
	for _, p := range r.procs {
		go func() {
			select {
			case <-p.Done():
				if runCtx.Err() == nil {
					r.mu.Lock()
					r.died = append(r.died, fmt.Sprintf("%s exited during the run (%v) after %v; last log lines:\n%s",
						p.Name, p.WaitErr(), p.ExitAt().Sub(start).Round(time.Millisecond), p.LogTail()))
					r.mu.Unlock()
					cancelRun()
				}
			case <-runCtx.Done():
			}
		}()
	}

	loadCtx, cancelLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); r.load.run(loadCtx, c.workers, c.rate) }()
	go func() { defer wg.Done(); r.churn.run(loadCtx, c.churnInterval) }()

	tick := time.NewTicker(c.sampleEvery)
	sampleCtx := context.Background()
	for runCtx.Err() == nil {
		select {
		case <-runCtx.Done():
		case <-tick.C:
			take(sampleCtx, r.client, r.series, start)
			r.progress(start)
		}
	}
	tick.Stop()
	interrupted := ctx.Err() != nil
	// The last sample is taken under load, like the baseline.
	if !interrupted && len(r.died) == 0 && r.lastSampleAge(start) > c.sampleEvery/2 {
		take(sampleCtx, r.client, r.series, start)
		r.progress(start)
	}
	ran := time.Since(start)
	cancelLoad()
	wg.Wait()

	// After the churn stops, every replica must reach the admin's revision.
	converged, convergeMsg := true, "skipped: interrupted"
	if !interrupted {
		converged, convergeMsg = r.converge(ctx)
	}

	// Clean shutdown: sidecars first, then the admin.
	type exit struct {
		name string
		code int
		took time.Duration
	}
	var exits []exit
	for _, p := range append(append([]*childproc.Proc(nil), r.sidecars...), r.admin) {
		if p.Exited() {
			exits = append(exits, exit{p.Name, p.ExitCode(), 0})
			continue
		}
		took, _ := p.Stop(30 * time.Second)
		exits = append(exits, exit{p.Name, p.ExitCode(), took})
	}

	// Summary.
	st := r.load.st
	st.mu.Lock()
	defer st.mu.Unlock()
	cc := r.churn.snapshot()
	fmt.Println()
	fmt.Println("== summary")
	fmt.Printf("duration      %v (load and churn), %s\n", ran.Round(time.Second), time.Now().Format(time.RFC3339))
	fmt.Printf("checks        %s (%.0f/s): correct %s, wrong %s, errors %s; answered while either decision was admissible: %s\n",
		num(st.total), float64(st.total)/ran.Seconds(), num(st.classes[classCorrect]), num(st.classes[classWrong]),
		num(st.classes[classError]), num(st.either))
	for fe := range numFrontends {
		x := st.byFrontend[fe]
		fmt.Printf("  %-22s %s: correct %s, wrong %s, errors %s\n", frontendNames[fe], num(x[0]+x[1]+x[2]), num(x[classCorrect]), num(x[classWrong]), num(x[classError]))
	}
	for cat := range numCategories {
		x := st.byCategory[cat]
		fmt.Printf("  %-22s %s: correct %s, wrong %s, errors %s\n", categoryNames[cat]+" keys", num(x[0]+x[1]+x[2]), num(x[classCorrect]), num(x[classWrong]), num(x[classError]))
	}
	var outs []string
	for o := range numOutcomes {
		outs = append(outs, fmt.Sprintf("%s %s", outcomeNames[o], num(st.byOutcome[o])))
	}
	fmt.Printf("  answers: %s\n", strings.Join(outs, ", "))
	fmt.Printf("churn         %d keys created before the load started, then %d changes (%.1f/s): creates %d (%d owned, %d with a short expiry), rotations %d (grace 0s: %d, grace 2-5s: %d), revokes %d, user disables %d, enables %d; refused %d, failed %d\n",
		seeded, cc.total(), float64(cc.total())/ran.Seconds(), cc.creates, cc.createsOwned, cc.createsExpiring, cc.rotate0+cc.rotateGrace,
		cc.rotate0, cc.rotateGrace, cc.revokes, cc.disables, cc.enables, cc.refused, cc.failed)
	for _, p := range cc.problems {
		fmt.Println("  churn problem:", p)
	}

	from := time.Duration(float64(c.duration) * c.warmup)
	fmt.Printf("processes     baseline = first sample at or after %v; last = the end of the run\n", from.Round(time.Second))
	fmt.Printf("  %-10s %-12s %-36s %-24s %-22s %-20s %s\n", "process", "goroutines", "RSS (process_resident_memory_bytes)", "RSS anon / file, MiB", "Go heap in use / goal", "bbolt file", "revision")
	goroutinesOK, rssOK := true, true
	var goroutineBad, rssBad []string
	for _, s := range r.series {
		first, last, ok := s.baseline(from)
		if !ok {
			fmt.Printf("  %-10s no samples after the warm-up\n", s.name)
			goroutinesOK, rssOK = false, false
			goroutineBad = append(goroutineBad, s.name+": no samples")
			rssBad = append(rssBad, s.name+": no samples")
			continue
		}
		growth := 100 * (last.rss - first.rss) / first.rss
		fmt.Printf("  %-10s %-12s %-36s %-24s %-22s %-20s %.0f → %.0f\n", s.name,
			fmt.Sprintf("%.0f → %.0f", first.goroutines, last.goroutines),
			fmt.Sprintf("%s → %s (%+.1f%%)", mib(first.rss), mib(last.rss), growth),
			fmt.Sprintf("%s/%s → %s/%s", mibShort(first.anon), mibShort(first.file), mibShort(last.anon), mibShort(last.file)),
			fmt.Sprintf("%.1f/%.1f → %.1f/%.1f", first.heapInuse/(1<<20), first.heapGoal/(1<<20), last.heapInuse/(1<<20), last.heapGoal/(1<<20)),
			fmt.Sprintf("%s → %s", mibShort(first.dbSize), mibShort(last.dbSize)),
			first.revision, last.revision)
		if last.goroutines > first.goroutines+c.goroutineSlack {
			goroutinesOK = false
			goroutineBad = append(goroutineBad, fmt.Sprintf("%s %.0f → %.0f", s.name, first.goroutines, last.goroutines))
		}
		if growth >= c.rssGrowth {
			rssOK = false
			msg := fmt.Sprintf("%s %+.1f%%", s.name, growth)
			if first.anon > 0 && last.anon > 0 {
				msg += fmt.Sprintf(": anonymous %+.1f%%, file-backed %+.1f MiB, bbolt file %+.1f MiB",
					100*float64(last.anon-first.anon)/float64(first.anon), float64(last.file-first.file)/(1<<20),
					float64(last.dbSize-first.dbSize)/(1<<20))
			}
			msg += fmt.Sprintf(", Go heap goal %+.1f MiB", (last.heapGoal-first.heapGoal)/(1<<20))
			rssBad = append(rssBad, msg)
		}
	}
	fmt.Printf("  per 1,000 changes, mean of the first and last %d samples after the baseline (RSS anon / file, Go heap goal, bbolt file; KiB):", smoothSamples)
	for _, s := range r.series {
		if g, ok := s.growthPer1000(from); ok {
			fmt.Printf(" %s %+.0f/%+.0f, %+.0f, %+.0f;", s.name, g.anon, g.file, g.heapGoal, g.dbSize)
		}
	}
	fmt.Println()
	for _, s := range r.series {
		var errs int
		for _, x := range s.all() {
			if x.err != nil {
				errs++
			}
		}
		if errs > 0 {
			fmt.Printf("  %s: %d failed scrapes\n", s.name, errs)
		}
	}
	for _, p := range r.procs {
		if warnings, errs, first := p.Problems(); warnings+errs > 0 {
			fmt.Printf("  %s logged %d warnings and %d errors after start; first ones:\n", p.Name, warnings, errs)
			for _, l := range first {
				fmt.Println("    " + l)
			}
		}
	}
	var exitLines []string
	exitsOK := true
	for _, e := range exits {
		exitLines = append(exitLines, fmt.Sprintf("%s %d in %v", e.name, e.code, e.took.Round(time.Millisecond)))
		if e.code != 0 {
			exitsOK = false
		}
	}
	fmt.Printf("shutdown      SIGTERM → exit code: %s\n", strings.Join(exitLines, ", "))
	if len(st.wrongs) > 0 {
		fmt.Printf("wrong decisions (first %d):\n", len(st.wrongs))
		for _, w := range st.wrongs {
			fmt.Println("  " + w)
		}
	}
	if len(st.errs) > 0 {
		fmt.Printf("errors (first %d):\n", len(st.errs))
		for _, e := range st.errs {
			fmt.Println("  " + e)
		}
	}
	r.mu.Lock()
	died := r.died
	r.mu.Unlock()
	for _, d := range died {
		fmt.Println(d)
	}

	errRatio := 0.0
	if st.total > 0 {
		errRatio = float64(st.classes[classError]) / float64(st.total)
	}
	fmt.Println()
	fmt.Println("== verdicts")
	ok := true
	verdict := func(pass bool, what, detail string) {
		mark := "PASS"
		if !pass {
			mark, ok = "FAIL", false
		}
		if detail != "" {
			what += " (" + detail + ")"
		}
		fmt.Printf("%s  %s\n", mark, what)
	}
	verdict(st.classes[classWrong] == 0 && st.total > 0, "wrong decisions = 0", fmt.Sprintf("%s of %s checks", num(st.classes[classWrong]), num(st.total)))
	verdict(errRatio <= c.maxErrorRatio, fmt.Sprintf("errors ≤ %g of checks", c.maxErrorRatio), fmt.Sprintf("%s, %.4f%%", num(st.classes[classError]), 100*errRatio))
	verdict(goroutinesOK, fmt.Sprintf("goroutines flat (last ≤ baseline + %.0f)", c.goroutineSlack), strings.Join(goroutineBad, "; "))
	verdict(rssOK, fmt.Sprintf("RSS growth < %.0f%%", c.rssGrowth), strings.Join(rssBad, "; "))
	verdict(len(died) == 0, "every process up for the whole run", "")
	verdict(converged, "replicas converged to the admin's revision after the churn stopped", convergeMsg)
	verdict(exitsOK, "clean shutdown (exit 0 on SIGTERM)", "")
	if interrupted {
		fmt.Println("FAIL  interrupted before the end of the run")
		return 130
	}
	if !ok {
		return 1
	}
	return 0
}

// lastSampleAge is the time since the admin's last sample was taken.
func (r *runner) lastSampleAge(start time.Time) time.Duration {
	all := r.series[0].all()
	if len(all) == 0 {
		return time.Since(start)
	}
	return time.Since(start) - all[len(all)-1].at
}

// progress prints one line per sample.
func (r *runner) progress(start time.Time) {
	total, wrong, errs := r.load.st.snapshot()
	cc := r.churn.snapshot()
	var parts []string
	for _, s := range r.series {
		all := s.all()
		if len(all) == 0 {
			continue
		}
		x := all[len(all)-1]
		if x.err != nil {
			parts = append(parts, fmt.Sprintf("%s scrape failed: %v", s.name, x.err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s g=%.0f rss=%.1fMiB heap=%.1fMiB rev=%.0f", s.name, x.goroutines, x.rss/(1<<20), x.heapInuse/(1<<20), x.revision))
	}
	fmt.Printf("[%4.0fs] checks %s wrong %d errors %d churn %d | %s\n", time.Since(start).Seconds(), num(total), wrong, errs, cc.total(), strings.Join(parts, " | "))
}

// converge waits until every sidecar's replica revision equals the admin's
// store revision, bounded by 5 × the replication bound.
func (r *runner) converge(ctx context.Context) (bool, string) {
	deadline := time.Now().Add(5 * r.c.bound)
	var last string
	for {
		adm, err := scrape(ctx, r.client, r.series[0].url, "extauthz_store_revision")
		if err != nil {
			return false, err.Error()
		}
		want := adm["extauthz_store_revision"]
		all := true
		var parts []string
		for _, s := range r.series[1:] {
			m, err := scrape(ctx, r.client, s.url, "extauthz_replica_revision")
			if err != nil {
				return false, err.Error()
			}
			got := m["extauthz_replica_revision"]
			parts = append(parts, fmt.Sprintf("%s %.0f", s.name, got))
			if got != want {
				all = false
			}
		}
		last = fmt.Sprintf("admin %.0f; %s", want, strings.Join(parts, ", "))
		if all {
			return true, last
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false, last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// num formats n with thousands separators.
func num(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + num(-n)
	}
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}

func mibShort(b int64) string {
	if b == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f", float64(b)/(1<<20))
}
