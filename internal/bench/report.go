package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// The performance targets (BENCHMARKS.md), checked against the run's own
// figures.
const (
	targetCheckRatio   = 0.85 // extauthz / do-nothing throughput at the top concurrency
	targetCheckP99     = 1.5  // extauthz / do-nothing p99
	targetForwardRatio = 0.85
	targetLargeCost    = 0.10 // throughput lost from the small to the large store
	targetLimitsCost   = 0.10 // throughput and RSS added by limiting every active key
	targetCold         = 5 * time.Second
	targetRestart      = time.Second
	targetRSS          = 300 << 20
	targetCreations    = 1000.0
	targetRevokeP99    = 100 * time.Millisecond
	targetRevokeN      = 100
	targetListP99      = 20 * time.Millisecond // one user's key list on the large store
	targetFailover     = 3 * time.Second       // leader SIGKILL to the next acknowledged write
)

// print writes the machine, the command and the table.
func (b *bench) print(w io.Writer) {
	o, r := b.opts, &b.res
	fmt.Fprintf(w, "- command: `%s`\n", r.command)
	fmt.Fprintf(w, "- machine: %s; load average (1, 5, 15 min) %s before the run, %s after\n", r.machine, r.loadAvg, loadAvg())
	fmt.Fprintf(w, "- extauthz: %s\n", r.extauthzVersion)
	fmt.Fprintf(w, "- date: %s; each load point is %v measured, in %d slices interleaved with its baseline's, each after %v warm-up; gRPC callers over %d connections; 90 %% valid / 10 %% unknown keys; latencies from a log-linear histogram (< 0.8 %% error), never averages\n\n",
		r.date, o.duration, o.rounds, o.warmup/time.Duration(o.rounds), o.conns)

	t := &table{}
	t.row("measurement", "setup", "extauthz", "baseline (same run)", "ratio", "target")
	top := slices.Max(o.concurrency)
	small, large := fmt.Sprintf("%s keys", count(o.keysSmall)), fmt.Sprintf("%s keys", count(o.keysLarge))

	full := o.only == ""
	// Check and forwardAuth rows.
	for _, door := range []struct {
		name, base string
		res        *[numTargets]map[int]loadResult
		grpc       bool
	}{
		{"Check (gRPC)", "do-nothing grpc-go Check server", &r.grpc, true},
		{"forwardAuth (HTTP)", "do-nothing handler on the same fasthttp server", &r.http, false},
	} {
		if !full {
			break
		}
		for _, tk := range []targetKind{targetSmall, targetLarge} {
			for _, c := range o.concurrency {
				size := small
				if tk == targetLarge {
					size = large
				}
				setup := fmt.Sprintf("c=%d, %s", c, size)
				got, ok := door.res[tk][c]
				base, bok := door.res[targetNoop][c]
				if !ok {
					t.row(door.name, setup, notMeasured(r.targetErr[tk]), baseCell(door.base, base, bok), "—", "—")
					continue
				}
				ratio, verdicts := "—", []string{}
				if bok && base.RPS() > 0 {
					ratio = fmt.Sprintf("%.2f× req/s, %.2f× p99", got.RPS()/base.RPS(), ratioDur(got.Hist.Quantile(0.99), base.Hist.Quantile(0.99)))
					if c == top {
						if door.grpc {
							verdicts = append(verdicts, verdict(got.RPS()/base.RPS() >= targetCheckRatio && ratioDur(got.Hist.Quantile(0.99), base.Hist.Quantile(0.99)) <= targetCheckP99,
								fmt.Sprintf("≥ %.2f× req/s and p99 ≤ %.1f×", targetCheckRatio, targetCheckP99)))
						} else {
							verdicts = append(verdicts, verdict(got.RPS()/base.RPS() >= targetForwardRatio, fmt.Sprintf("≥ %.2f× req/s", targetForwardRatio)))
						}
					}
				}
				if tk == targetLarge {
					if s, ok := door.res[targetSmall][c]; ok && s.RPS() > 0 {
						loss := 1 - got.RPS()/s.RPS()
						verdicts = append(verdicts, verdict(loss < targetLargeCost, fmt.Sprintf("%s→%s costs < %.0f %%: %+.1f %% req/s vs %s", count(o.keysSmall), count(o.keysLarge), targetLargeCost*100, -loss*100, small)))
					}
				}
				t.row(door.name, setup, loadCell(got), baseCell(door.base, base, bok), ratio, orDash(strings.Join(verdicts, "; ")))
			}
		}
		if door.grpc {
			b.printLimited(t, large)
		}
	}

	// Revocation propagation: one row per measured series, then the
	// sidecar count it failed at, if any.
	for _, rr := range r.revocations {
		n := rr.Sidecars
		how := "pollers in a tight loop"
		if o.revokePoll > 0 {
			how = fmt.Sprintf("each poller pausing %v between Checks", o.revokePoll)
		}
		polled := fmt.Sprintf("all %d polled", n)
		if rr.Probed < n {
			polled = fmt.Sprintf("%d of %d polled per revocation, drawn at random", rr.Probed, n)
		}
		setup := fmt.Sprintf("N=%d sidecars, %s, %d revocations, %s, %s", n, small, o.revocations, polled, how)
		if n == 1 {
			setup = fmt.Sprintf("N=1 sidecar, %s, %d revocations, %s", small, o.revocations, how)
		}
		if rr.Unhealthy != "" {
			setup += " (" + escape(rr.Unhealthy) + ")"
		}
		if rr.Samples == nil {
			t.row("Revocation propagation", setup, "not measured", "—", "—", "—")
			continue
		}
		target := "—"
		if n >= targetRevokeN && (rr.Probed < n || o.revokeProbe == 0 || o.revokeProbe >= n) {
			target = verdict(rr.Samples.Quantile(0.99) < targetRevokeP99 && rr.Timeouts == 0, fmt.Sprintf("p99 < %v at %d sidecars", targetRevokeP99, targetRevokeN))
		}
		t.row("Revocation propagation", setup, revocationCell(rr),
			fmt.Sprintf("one polling Check round trip: p50 %s, p99 %s (the resolution)", ms(rr.Probe.Quantile(0.5)), ms(rr.Probe.Quantile(0.99))),
			"—", target)
	}
	if r.revocationErr != nil {
		t.row("Revocation propagation", fmt.Sprintf("N=%d sidecars", r.revocationErrAtN), "not yet: "+escape(firstLine(r.revocationErr)), "—", "—", "—")
	}

	if full {
		b.printSingle(t)
	}
	b.printCluster(t)
	t.write(w)
	fmt.Fprintf(w, "\nRun time %v. Sidecars log at the shipped level (info): each denied request (10 %% of the load) writes one JSON log line, included in the figures.\n", time.Since(b.began).Round(time.Second))
}

// printLimited adds the rows of Check with every key of the large store
// limited, against the same store's sidecar without limits.
func (b *bench) printLimited(t *table, large string) {
	o, r := b.opts, &b.res
	name := "Check (gRPC), every key limited"
	for _, c := range o.concurrency {
		setup := fmt.Sprintf("c=%d, %s, %s active, each under a never-refusing rate limit (policy default 1e9/1s, RateLimit fields on every answer)", c, large, count(o.sample))
		got, ok := r.grpc[targetLimited][c]
		base, bok := r.grpc[targetLarge][c]
		baseName := fmt.Sprintf("the %s sidecar without limits", large)
		if !ok {
			t.row(name, setup, notMeasured(r.targetErr[targetLimited]), baseCell(baseName, base, bok), "—", "—")
			continue
		}
		ratio, target := "—", "—"
		if bok && base.RPS() > 0 {
			ratio = fmt.Sprintf("%.2f× req/s, %.2f× p99", got.RPS()/base.RPS(), ratioDur(got.Hist.Quantile(0.99), base.Hist.Quantile(0.99)))
			target = verdict(got.RPS()/base.RPS() >= 1-targetLimitsCost, fmt.Sprintf("≥ %.2f× req/s", 1-targetLimitsCost))
		}
		t.row(name, setup, loadCell(got), baseCell(baseName, base, bok), ratio, target)
	}
	if lim, base := r.memLimited, r.memUnlimited; lim.RSS > 0 && base.RSS > 0 {
		t.row("Memory (VmRSS), every key limited", fmt.Sprintf("the limited sidecar after the gRPC Check load, %s", large),
			fmt.Sprintf("%s (anon %s, file-backed %s)", mib(lim.RSS), mib(lim.Anon), mib(lim.File)),
			fmt.Sprintf("the %s sidecar without limits, then: %s (anon %s)", large, mib(base.RSS), mib(base.Anon)),
			fmt.Sprintf("%.2f×", float64(lim.RSS)/float64(base.RSS)),
			verdict(float64(lim.RSS) <= (1+targetLimitsCost)*float64(base.RSS), fmt.Sprintf("≤ %.2f×", 1+targetLimitsCost)))
	}
}

// printSingle adds the rows of cold start, restart, memory and the admin.
func (b *bench) printSingle(t *table) {
	o, r := b.opts, &b.res
	small, large := fmt.Sprintf("%s keys", count(o.keysSmall)), fmt.Sprintf("%s keys", count(o.keysLarge))
	// Cold start and restart.
	if r.cold > 0 {
		t.row("Cold start", "new sidecar, empty data dir, exec → /readyz 200", fmt.Sprintf("%s: %s", large, secs(r.cold)),
			fmt.Sprintf("%s: %s", small, secs(r.coldBase)), fmt.Sprintf("%.1f×", ratioDur(r.cold, r.coldBase)),
			verdict(r.cold < targetCold, fmt.Sprintf("< %v", targetCold)))
	} else {
		t.row("Cold start", "new sidecar, empty data dir, exec → /readyz 200", notMeasured(r.coldErr), "—", "—", "—")
	}
	if r.restart > 0 {
		t.row("Restart", "SIGTERM, start again on its own replica file, exec → /readyz 200", fmt.Sprintf("%s: %s (SIGTERM → exit %s)", large, secs(r.restart), secs(r.shutdown)),
			fmt.Sprintf("%s: %s", small, secs(r.restartBase)), fmt.Sprintf("%.1f×", ratioDur(r.restart, r.restartBase)),
			verdict(r.restart < targetRestart, fmt.Sprintf("< %v", targetRestart)))
	} else {
		t.row("Restart", "SIGTERM, start again on its own replica file", notMeasured(r.restartErr), "—", "—", "—")
	}

	// Memory.
	if r.mem.RSS > 0 {
		base := fmt.Sprintf("do-nothing gRPC server: %s; sidecar with %s: %s", mib(r.memNoop.RSS), small, mib(r.memSmall.RSS))
		t.row("Memory (VmRSS)", fmt.Sprintf("sidecar after its %s load", large), fmt.Sprintf("%s (anon %s, file-backed %s)", mib(r.mem.RSS), mib(r.mem.Anon), mib(r.mem.File)),
			base, fmt.Sprintf("%.1f× the do-nothing server", float64(r.mem.RSS)/float64(max(r.memNoop.RSS, 1))),
			verdict(r.mem.RSS < targetRSS, "< 300 MiB"))
	} else {
		t.row("Memory (VmRSS)", fmt.Sprintf("sidecar with %s", large), notMeasured(r.memErr), "—", "—", "—")
	}

	// Admin creations.
	created := float64(r.admin.Requests-r.admin.Unexpected-r.admin.Errors) / r.admin.Window.Seconds()
	setup := fmt.Sprintf("%d operator clients POST /api/v1/api-keys, %s store, its sidecar following", o.admins, large)
	base := "—"
	if r.fsyncErr == nil && r.fsyncRate > 0 {
		base = fmt.Sprintf("disk: %s write+fdatasync/s, one writer", count(int(r.fsyncRate)))
	}
	if r.adminErr != nil || r.admin.Window == 0 {
		t.row("Admin key creations", setup, notMeasured(r.adminErr), base, "—", "—")
	} else {
		cell := fmt.Sprintf("%s creations/s · p50 %s · p99 %s", count(int(created)), ms(r.admin.Hist.Quantile(0.5)), ms(r.admin.Hist.Quantile(0.99)))
		cell += problems(r.admin)
		ratio := "—"
		if r.fsyncRate > 0 {
			ratio = fmt.Sprintf("%.2f creations per fsync", created/r.fsyncRate)
		}
		t.row("Admin key creations", setup, cell, base, ratio, verdict(created >= targetCreations, fmt.Sprintf("≥ %s/s", count(int(targetCreations)))))
	}
	// One user's key list.
	setup = fmt.Sprintf("operator GET /api/v1/api-keys?userId= for a user with %d keys, %d sequential calls, %s store", listUserKeys, listCalls, large)
	switch {
	case r.listErr != nil || r.list == nil:
		t.row("Admin key list", setup, notMeasured(r.listErr), "—", "—", "—")
	default:
		base := "—"
		if r.listSmall != nil {
			base = fmt.Sprintf("the same on the %s store: p50 %s · p99 %s", small, ms(r.listSmall.Quantile(0.5)), ms(r.listSmall.Quantile(0.99)))
		}
		ratio := "—"
		if r.listSmall != nil {
			ratio = fmt.Sprintf("%.1f× p99", ratioDur(r.list.Quantile(0.99), r.listSmall.Quantile(0.99)))
		}
		t.row("Admin key list", setup, fmt.Sprintf("p50 %s · p99 %s · max %s", ms(r.list.Quantile(0.5)), ms(r.list.Quantile(0.99)), ms(r.list.Max())),
			base, ratio, verdict(r.list.Quantile(0.99) < targetListP99, "p99 < 20 ms"))
	}
}

// printCluster adds the admin-cluster rows, each beside the single
// admin's figure of the same run.
func (b *bench) printCluster(t *table) {
	o, r := b.opts, &b.res.ha
	name := fmt.Sprintf("Admin cluster (%d voters)", haNodes)
	// Creations.
	setup := fmt.Sprintf("key creations: %d operator clients POST /api/v1/api-keys, client i on voter i mod %d, empty stores; each 201 after a quorum fsynced the entry", o.admins, haNodes)
	perSec := func(l loadResult) float64 {
		return float64(l.Requests-l.Unexpected-l.Errors) / l.Window.Seconds()
	}
	cell := func(l loadResult) string {
		return fmt.Sprintf("%s creations/s · p50 %s · p99 %s", count(int(perSec(l))), ms(l.Hist.Quantile(0.5)), ms(l.Hist.Quantile(0.99))) + problems(l)
	}
	if r.creationsErr != nil || r.creations.Window == 0 {
		t.row(name, setup, notMeasured(r.creationsErr), "—", "—", "—")
	} else {
		base, ratio := "one admin: not measured", "—"
		if r.creationsBase.Window > 0 {
			base = "one admin, empty store, the same clients, interleaved: " + cell(r.creationsBase)
			ratio = fmt.Sprintf("%.2f× one admin", perSec(r.creations)/max(perSec(r.creationsBase), 1))
		}
		t.row(name, setup, cell(r.creations), base, ratio, verdict(perSec(r.creations) >= targetCreations, fmt.Sprintf("≥ %s/s", count(int(targetCreations)))))
	}
	// Revocation propagation.
	n := o.sidecars[len(o.sidecars)-1]
	setup = fmt.Sprintf("revocation propagation: N=%d sidecars, sidecar i following voter i mod %d, a store of %s keys created through the cluster; %d revoked one at a time, each DELETE on the next voter", n, haNodes, count(o.keysSmall), o.revocations)
	if r.revocation.Samples == nil {
		t.row(name, setup, notMeasured(r.revocationErr), "—", "—", "—")
	} else {
		rr := r.revocation
		if rr.Probed < n {
			setup += fmt.Sprintf("; %d of %d polled per revocation, drawn at random (the load of all %d would be mostly the scheduler's, see the single admin's rows)", rr.Probed, n, n)
		}
		setup += fmt.Sprintf("; sidecars' VmRSS %s in all", mib(r.revocationRSS))
		base, ratio := "one admin, the same series: not measured", "—"
		for _, s := range b.res.revocations {
			if s.Sidecars == n && s.Probed == rr.Probed && s.Samples != nil {
				base = fmt.Sprintf("one admin, %d sidecars, %d polled: p50 %s · p99 %s", n, s.Probed, ms(s.Samples.Quantile(0.5)), ms(s.Samples.Quantile(0.99)))
				ratio = fmt.Sprintf("%.1f× p99", ratioDur(rr.Samples.Quantile(0.99), s.Samples.Quantile(0.99)))
			}
		}
		base += fmt.Sprintf("; one polling Check round trip here: p50 %s, p99 %s", ms(rr.Probe.Quantile(0.5)), ms(rr.Probe.Quantile(0.99)))
		target := "—"
		if n >= targetRevokeN {
			target = verdict(rr.Samples.Quantile(0.99) < targetRevokeP99 && rr.Timeouts == 0, fmt.Sprintf("p99 < %v at %d sidecars", targetRevokeP99, targetRevokeN))
		}
		t.row(name, setup, revocationCell(rr), base, ratio, target)
	}
	// Leader failover.
	setup = "leader SIGKILL (raft's default timeouts: heartbeat and election 1 s) → first 201 of a key created through a surviving voter, tried every 10 ms"
	if r.failover == 0 {
		t.row(name, setup, notMeasured(r.failoverErr), "—", "—", "—")
	} else {
		base, ratio := "one admin: not measured", "—"
		if r.failoverBase > 0 {
			base = fmt.Sprintf("one admin SIGKILLed and started again at once on its data dir → first 201: %s", secs(r.failoverBase))
			ratio = fmt.Sprintf("%.1f×", ratioDur(r.failover, r.failoverBase))
		}
		t.row(name, setup, secs(r.failover), base, ratio, verdict(r.failover < targetFailover, fmt.Sprintf("< %v", targetFailover)))
	}
}

// table is a markdown table.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	for i, r := range t.rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		if i == 0 {
			fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(r)))
		}
	}
}

// loadCell formats throughput and latency quantiles of one load point,
// with any failed or unexpected answers.
func loadCell(r loadResult) string {
	s := fmt.Sprintf("%s req/s · p50 %s · p99 %s · p99.9 %s", count(int(r.RPS())),
		ms(r.Hist.Quantile(0.5)), ms(r.Hist.Quantile(0.99)), ms(r.Hist.Quantile(0.999)))
	return s + problems(r)
}

func problems(r loadResult) string {
	s := ""
	if r.Unexpected > 0 {
		s += fmt.Sprintf(" · **%d unexpected answers**", r.Unexpected)
	}
	if r.Errors > 0 {
		s += fmt.Sprintf(" · **%d errors** (%s)", r.Errors, escape(firstLine(r.FirstErr)))
	}
	return s
}

func baseCell(name string, r loadResult, ok bool) string {
	if !ok {
		return name + ": not measured"
	}
	return name + ": " + loadCell(r)
}

func revocationCell(r revocationResult) string {
	s := fmt.Sprintf("p50 %s · p99 %s · max %s (%d samples)", ms(r.Samples.Quantile(0.5)), ms(r.Samples.Quantile(0.99)), ms(r.Samples.Max()), r.Samples.Count())
	if r.Timeouts > 0 {
		s += fmt.Sprintf(" · **%d never denied within %v**", r.Timeouts, revokeTimeout)
	}
	return s
}

func verdict(ok bool, target string) string {
	if ok {
		return target + ": met"
	}
	return target + ": **missed**"
}

func notMeasured(err error) string {
	if err == nil {
		err = errNotMeasured
	}
	return "not yet: " + escape(firstLine(err))
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// escape keeps a message from breaking the table.
func escape(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func ratioDur(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// ms formats a latency in milliseconds with three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / 1e6
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 10:
		return fmt.Sprintf("%.2f ms", v)
	case v < 100:
		return fmt.Sprintf("%.1f ms", v)
	default:
		return fmt.Sprintf("%.0f ms", v)
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// count formats an integer with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + count(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
