package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// onlyCluster is -only's value for the admin-cluster rows.
const onlyCluster = "cluster"

// options are the command-line flags.
type options struct {
	bin            string
	policy         string
	duration       time.Duration
	warmup         time.Duration
	keysSmall      int
	keysLarge      int
	sample         int
	concurrency    []int
	conns          int
	sidecars       []int
	revocations    int
	revokePoll     time.Duration
	revokeProbe    int
	admins         int
	rounds         int
	quick          bool
	doorE2E        bool
	nginxKeepalive bool
	tracing        bool
	limits         bool
	only           string
}

func main() {
	// The do-nothing baselines are this program re-executed.
	if len(os.Args) == 3 && (os.Args[1] == flagNoopGRPC || os.Args[1] == flagNoopHTTP) {
		if err := serveNoop(os.Args[1], os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "bench noop server:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	os.Exit(runMain(opts))
}

// runMain runs the benchmark and cleans up every child process and temp
// file, whatever happens.
func runMain(opts *options) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := os.MkdirTemp("", "extauthz-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(root)
	defer childproc.StopAll()
	b := &bench{opts: opts, root: root, began: time.Now()}
	run := b.run
	switch {
	case opts.doorE2E:
		run = b.doorE2E
	case opts.tracing:
		run = b.tracing
	case opts.limits:
		run = b.limits
	case opts.only == onlyCluster:
		run = b.runCluster
	}
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: go run ./internal/bench -bin PATH [flags]\n\nMeasures extauthz against do-nothing baselines and prints one markdown table.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.bin, "bin", "", "the extauthz binary to measure (required)")
	fs.StringVar(&o.policy, "policy", "examples/policies/nexgent.yaml", "policy file given to admin and sidecars (its first key format mints the bench keys)")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "measured time per load point")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured warm-up before each load point")
	fs.IntVar(&o.rounds, "rounds", 10, "slices each load point is split into, alternating with its baseline")
	fs.IntVar(&o.keysSmall, "keys-small", 1000, "keys in the small store")
	fs.IntVar(&o.keysLarge, "keys-large", 1_000_000, "keys in the large store")
	fs.IntVar(&o.sample, "sample", 10_000, "raw keys kept per store for the load (the rest exist only as hashes)")
	conc := fs.String("concurrency", "16,64", "closed-loop callers per load point, comma-separated")
	fs.IntVar(&o.conns, "conns", 4, "gRPC client connections the callers are spread over")
	side := fs.String("sidecars", "1,10,100", "sidecar counts for revocation propagation, comma-separated, increasing")
	fs.IntVar(&o.revocations, "revocations", 50, "keys revoked per sidecar count")
	fs.DurationVar(&o.revokePoll, "revoke-poll", 0, "pause between a revocation poller's Checks (0: tight loop)")
	fs.IntVar(&o.revokeProbe, "revoke-probe", 10, "above this many sidecars, also measure with only this many, drawn at random, polled per revocation (0: never)")
	fs.IntVar(&o.admins, "admin-clients", 16, "concurrent clients creating keys on the admin")
	fs.BoolVar(&o.quick, "quick", false, "smoke test: 2s points, 20,000 large keys, sidecars 1,3, 5 revocations (flags given explicitly still win)")
	fs.BoolVar(&o.doorE2E, "door-e2e", false, "instead of the table: requests/s through nginx auth_request (examples/nginx/extauthz.conf) beside nginx without auth, and the sidecar's CPU per request")
	fs.BoolVar(&o.tracing, "tracing", false, "instead of the table: gRPC Check with tracing off beside tracing on at 1 % sampling (OTLP to a do-nothing server), and each sidecar's CPU per check")
	fs.BoolVar(&o.limits, "limits", false, "instead of the table: gRPC Check with every key under a never-refusing rate limit beside no limits, -sample active keys")
	fs.BoolVar(&o.nginxKeepalive, "nginx-keepalive", false, "-door-e2e: nginx keeps connections to the sidecars open (upstream keepalive) instead of one per check as the shipped example does")
	fs.StringVar(&o.only, "only", "", `"cluster": only the admin-cluster rows, with the single admin's revocation series at the largest -sidecars count`)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"duration":    func() { o.duration = 2 * time.Second },
			"warmup":      func() { o.warmup = 300 * time.Millisecond },
			"keys-large":  func() { o.keysLarge = 20_000 },
			"sidecars":    func() { *side = "1,3" },
			"revocations": func() { o.revocations = 5 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
	}
	if o.only == onlyCluster && !set["sidecars"] {
		*side = (*side)[strings.LastIndex(*side, ",")+1:]
	}
	var err error
	if o.concurrency, err = intList(*conc); err != nil {
		return nil, fmt.Errorf("-concurrency: %w", err)
	}
	if o.sidecars, err = intList(*side); err != nil {
		return nil, fmt.Errorf("-sidecars: %w", err)
	}
	var problems []error
	if o.only != "" && o.only != onlyCluster {
		problems = append(problems, fmt.Errorf("-only %q: the only choice is %q", o.only, onlyCluster))
	}
	if o.bin == "" {
		problems = append(problems, errors.New("-bin is required"))
	} else if _, err := os.Stat(o.bin); err != nil {
		problems = append(problems, fmt.Errorf("-bin: %w", err))
	}
	if _, err := os.Stat(o.policy); err != nil {
		problems = append(problems, fmt.Errorf("-policy: %w (run from the repository root)", err))
	}
	if o.duration <= 0 || o.warmup < 0 || o.conns < 1 || o.admins < 1 || o.rounds < 1 || o.sample < 1 || o.keysSmall < 1 || o.keysLarge < 1 || o.revocations < 1 || o.revokePoll < 0 || o.revokeProbe < 0 {
		problems = append(problems, errors.New("durations, counts and sizes must be positive"))
	}
	for i := 1; i < len(o.sidecars); i++ {
		if o.sidecars[i] <= o.sidecars[i-1] {
			problems = append(problems, errors.New("-sidecars must increase"))
			break
		}
	}
	if need := o.revocations * o.revocationRuns(); need > min(o.keysSmall, o.sample) {
		problems = append(problems, fmt.Errorf("-revocations × sidecar counts needs %d keys, the small store's sample has %d", need, min(o.keysSmall, o.sample)))
	}
	return o, errors.Join(problems...)
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// progress logs one line to stderr with the time since start.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}
