package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// The A/B runs (-door-e2e, -tracing) compare a few configurations, each an
// arm, under the same load, with their slices interleaved.

// arm is one configuration measured in an A/B run.
type arm struct {
	name    string
	addr    string          // where its load goes, when not the sidecar's own port
	sidecar *childproc.Proc // nil for a baseline without extauthz
	res     map[int]loadResult
	cpu     map[int]time.Duration // the sidecar's CPU time over the measured slices
}

// smallAdmin prefills and starts an admin with -keys-small keys.
func (b *bench) smallAdmin(ctx context.Context) (*keySet, *childproc.Proc, error) {
	o := b.opts
	var err error
	if b.self, err = os.Executable(); err != nil {
		return nil, nil, err
	}
	if b.cl, err = newCluster(b.root, o.bin, o.policy); err != nil {
		return nil, nil, err
	}
	dir := filepath.Join(b.root, "admin-ab")
	keys, err := b.cl.prefillAdmin(dir, o.keysSmall, o.sample)
	if err != nil {
		return nil, nil, err
	}
	admin, err := b.cl.startAdmin(ctx, "admin-ab", dir)
	return keys, admin, err
}

// readySidecar starts a sidecar following admin with extra flags and
// environment, and waits until it is ready.
func (b *bench) readySidecar(ctx context.Context, name string, admin *childproc.Proc, extra, env []string) (*childproc.Proc, error) {
	return b.readySidecarPolicy(ctx, name, admin, b.cl.policyFile, extra, env)
}

// readySidecarPolicy is readySidecar with its own policy file.
func (b *bench) readySidecarPolicy(ctx context.Context, name string, admin *childproc.Proc, policyFile string, extra, env []string) (*childproc.Proc, error) {
	args := append([]string{"sidecar",
		"--admin-url", admin.URL("admin"),
		"--replication-token-file", b.cl.replTokenFile,
		"--policy", policyFile,
		"--data-dir", filepath.Join(b.root, name),
		"--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0",
		"--node", name,
		"--log-level", "info",
		"--log-format", "json",
	}, extra...)
	p, err := childproc.Start(ctx, name, b.cl.bin, args, env)
	if err != nil {
		return nil, err
	}
	if _, err := p.WaitReady(ctx, p.URL("http")+"/readyz", childproc.StartTimeout); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// runArms measures every arm at each -concurrency for -duration, in
// -rounds slices that alternate between the arms (rotating the order), so
// drifting background load hits them alike. load returns arm a's callers
// at c and what to close after its slice.
func (b *bench) runArms(ctx context.Context, what string, arms []*arm, keys *keySet, load func(a *arm, c int) (func(int) caller, func())) error {
	o := b.opts
	for _, a := range arms {
		a.res, a.cpu = map[int]loadResult{}, map[int]time.Duration{}
	}
	for _, c := range o.concurrency {
		spec := loadSpec{Concurrency: c, Warmup: o.warmup / time.Duration(o.rounds), Duration: o.duration / time.Duration(o.rounds),
			Valid: len(keys.Valid), Invalid: len(keys.Invalid)}
		for round := range o.rounds {
			for i := range arms {
				a := arms[(i+round)%len(arms)]
				if ctx.Err() != nil {
					return ctx.Err()
				}
				callers, done := load(a, c)
				before := procCPU(a.sidecar)
				res := runLoad(ctx, spec, callers)
				a.cpu[c] += procCPU(a.sidecar) - before
				done()
				if prev, ok := a.res[c]; ok {
					prev.add(res)
					a.res[c] = prev
				} else {
					a.res[c] = res
				}
			}
		}
		for _, a := range arms {
			b.progress("%s c=%d %s: %s", what, c, a.name, loadCell(a.res[c]))
		}
	}
	return nil
}

// printArms prints an A/B run's table: each arm beside the first.
func printArms(w io.Writer, b *bench, title, ratio string, arms []*arm) {
	fmt.Fprintf(w, "Command: `go run ./internal/bench %s`\n\n", strings.Join(os.Args[1:], " "))
	fmt.Fprintf(w, "Machine: %s; load average at the end: %s; %s\n\n", machine(), loadAvg(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	t := &table{}
	t.row(title, "Callers", "Requests/s", "p50", "p99", ratio, "Sidecar CPU per request", "Sidecar RSS after the run")
	for _, c := range b.opts.concurrency {
		base := arms[0].res[c]
		for _, a := range arms {
			r := a.res[c]
			cpu, rss := "—", "—"
			if a.sidecar != nil && r.Requests > 0 {
				cpu = fmt.Sprintf("%.1f µs", float64(a.cpu[c].Microseconds())/float64(r.Requests))
			}
			if a.sidecar != nil {
				if m, err := a.sidecar.Memory(); err == nil {
					rss = mib(m.RSS)
				}
			}
			t.row(a.name, strconv.Itoa(c), fmt.Sprintf("%.0f%s", r.RPS(), problems(r)), ms(r.Hist.Quantile(0.50)), ms(r.Hist.Quantile(0.99)),
				fmt.Sprintf("%.2f×", r.RPS()/base.RPS()), cpu, rss)
		}
	}
	t.write(w)
}
