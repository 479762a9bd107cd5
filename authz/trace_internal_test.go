package authz

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// TestTraceStateFromARequestIsBounded: a tracestate longer than
// MaxTraceState from the checked request is dropped (the parent is still
// taken); a short one is kept.
func TestTraceStateFromARequestIsBounded(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	a := &Authorizer{trace: &tracing{tracer: tp.Tracer("t"), propagator: propagation.TraceContext{}}}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	long := strings.TrimSuffix(strings.Repeat("k=v,", MaxTraceState/4+8), ",")
	for _, c := range []struct {
		state string
		kept  bool
	}{{"vendor=abc", true}, {long, false}} {
		_, span := a.startSpan(context.Background(), &Request{TraceParent: parent, TraceState: c.state})
		sc := span.SpanContext()
		span.End()
		if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Fatalf("state of %d bytes: the parent was not taken", len(c.state))
		}
		if got := sc.TraceState().Len() > 0; got != c.kept {
			t.Errorf("tracestate of %d bytes kept = %v; want %v", len(c.state), got, c.kept)
		}
	}
}
