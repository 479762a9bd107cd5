package main

import (
	"context"
	"os"

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
	err = b.runArms(ctx, "tracing", arms, keys, func(a *arm, c int) (func(int) caller, func()) {
		g, err := newGRPCLoad(a.sidecar.Addr("grpc"), b.opts.conns, keys.Valid, keys.Invalid, true)
		if err != nil {
			return func(int) caller {
				return func(context.Context, bool, int) (bool, error) { return false, err }
			}, func() {}
		}
		return g.caller, g.Close
	})
	if err != nil {
		return err
	}
	printArms(os.Stdout, b, "Check (gRPC), 1,000 keys", "vs off", arms)
	return nil
}
