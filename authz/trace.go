package authz

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// SpanName is the name of the span each check makes when tracing is on.
const SpanName = "extauthz.check"

// Span attributes of a check. None holds a presented key: the key id and
// prefix come from the stored record only.
const (
	AttrFrontend = attribute.Key("extauthz.frontend")
	AttrDecision = attribute.Key("extauthz.decision")
	AttrReason   = attribute.Key("extauthz.reason")
	AttrKeyID    = attribute.Key("extauthz.key_id")
)

// tracing is what an Authorizer needs to trace checks.
type tracing struct {
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// Tracing reports whether checks are traced (Options.TracerProvider set),
// so a front door can skip reading trace context otherwise.
func (a *Authorizer) Tracing() bool { return a.trace != nil }

// ExtractTrace returns ctx with the trace context carrier holds (a front
// door's transport metadata), by the W3C trace-context rules. With tracing
// off it returns ctx.
func (a *Authorizer) ExtractTrace(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	if a.trace == nil {
		return ctx
	}
	return a.trace.propagator.Extract(ctx, carrier)
}

// MaxTraceState bounds the tracestate a check's span takes from a
// request: the W3C limit is 32 members of up to 256 bytes, and a longer
// one, from a client, would be copied into every exported span.
const MaxTraceState = 512

// startSpan starts the check's span: a child of the span ctx holds (the
// transport's trace context, which a door put there), else of r's
// traceparent header, else a new trace.
func (a *Authorizer) startSpan(ctx context.Context, r *Request) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() && r.TraceParent != "" {
		carrier := propagation.MapCarrier{"traceparent": r.TraceParent}
		if len(r.TraceState) <= MaxTraceState {
			carrier["tracestate"] = r.TraceState
		}
		ctx = a.trace.propagator.Extract(ctx, carrier)
	}
	return a.trace.tracer.Start(ctx, SpanName, serverSpan)
}

var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

// endSpan records r and d on span, when it is sampled, and ends it.
func endSpan(span trace.Span, r *Request, d *Decision) {
	if !span.IsRecording() {
		span.End()
		return
	}
	attrs := []attribute.KeyValue{AttrFrontend.String(r.Frontend), AttrDecision.String(d.Kind.String()), AttrReason.String(d.Reason)}
	if d.Key != nil {
		attrs = append(attrs, AttrKeyID.String(d.Key.ID))
	}
	span.SetAttributes(attrs...)
	if d.Kind == Unavailable {
		span.SetStatus(codes.Error, d.Reason)
	}
	span.End()
}
