package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/extauthz/extauthz/internal/childproc"
)

// The -tracing run: gRPC Check throughput of a sidecar with tracing off
// beside one with tracing on, sampling 1 % of checks (OTEL_TRACES_SAMPLER
// traceidratio) and exporting them over OTLP/HTTP to a do-nothing server,
// and each one's CPU per check.

// tracingSampleRatio is the share of checks the traced sidecar records.
const tracingSampleRatio = "0.01"

func (b *bench) tracing(ctx context.Context) error {
	keys, admin, err := b.smallAdmin(ctx)
	if err != nil {
		return err
	}
	sink, err := childproc.Start(ctx, "otlp-sink", b.self, []string{flagNoopHTTP, "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	off, err := b.readySidecar(ctx, "sidecar-untraced", admin, nil, nil)
	if err != nil {
		return err
	}
	on, err := b.readySidecar(ctx, "sidecar-traced", admin, nil, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.URL("http"),
		"OTEL_TRACES_SAMPLER=traceidratio",
		"OTEL_TRACES_SAMPLER_ARG=" + tracingSampleRatio,
	})
	if err != nil {
		return err
	}
	arms := []*arm{{name: "tracing off", sidecar: off}, {name: "tracing on, " + tracingSampleRatio + " sampled", sidecar: on}}
	b.progress("tracing: admin, sink and sidecars up")
	if err := b.runArms(ctx, "tracing", arms, keys, b.grpcArms(keys)); err != nil {
		return err
	}
	printArms(os.Stdout, b, "Check (gRPC), 1,000 keys", "vs off", arms)
	return nil
}

// grpcArms is the load of an A/B run of gRPC Check: each arm's sidecar.
func (b *bench) grpcArms(keys *keySet) func(a *arm, c int) (func(int) caller, func()) {
	return func(a *arm, c int) (func(int) caller, func()) {
		g, err := newGRPCLoad(a.sidecar.Addr("grpc"), b.opts.conns, keys.Valid, keys.Invalid, true)
		if err != nil {
			return func(int) caller {
				return func(context.Context, bool, int) (bool, error) { return false, err }
			}, func() {}
		}
		return g.caller, g.Close
	}
}

// The -limits run: gRPC Check of a sidecar whose policy gives every key a
// rate limit that never refuses (rateLimits.default 1e9/1s), beside one
// without limits: the cost of a bucket per active key (-sample keys).
func (b *bench) limits(ctx context.Context) error {
	keys, admin, err := b.smallAdmin(ctx)
	if err != nil {
		return err
	}
	off, err := b.readySidecar(ctx, "sidecar-unlimited", admin, nil, nil)
	if err != nil {
		return err
	}
	on, err := b.limitedSidecar(ctx, "sidecar-limited", admin)
	if err != nil {
		return err
	}
	arms := []*arm{{name: "no limits", sidecar: off}, {name: "every key limited", sidecar: on}}
	b.progress("limits: admin and sidecars up")
	if err := b.runArms(ctx, "limits", arms, keys, b.grpcArms(keys)); err != nil {
		return err
	}
	printArms(os.Stdout, b, fmt.Sprintf("Check (gRPC), %d keys, %d active", keys.Total, len(keys.Valid)), "vs no limits", arms)
	return nil
}

// limitedSidecar starts a sidecar following admin whose policy is the
// bench's with a default rate limit for every key that never refuses
// (rateLimits.default 1e9/1s, limit headers shown), and waits until it is
// ready.
func (b *bench) limitedSidecar(ctx context.Context, name string, admin *childproc.Proc) (*childproc.Proc, error) {
	src, err := os.ReadFile(b.cl.policyFile)
	if err != nil {
		return nil, err
	}
	limited := filepath.Join(b.root, name+"-policy.yaml")
	if err := os.WriteFile(limited, append(src, []byte("\nrateLimits: {default: {limit: 1000000000, duration: 1s}}\n")...), 0o600); err != nil {
		return nil, err
	}
	return b.readySidecarPolicy(ctx, name, admin, limited, nil, nil)
}
