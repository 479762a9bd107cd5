package tracing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultServiceName is service.name when OTEL_SERVICE_NAME is not set.
const DefaultServiceName = "extauthz"

// Provider is the tracer provider of a process, or nil when tracing is
// off. Shutdown flushes the spans not yet exported.
type Provider struct {
	sdk *sdktrace.TracerProvider
}

// Enabled reports whether the environment getenv reads turns tracing on,
// or why it is misconfigured.
func Enabled(getenv func(string) string) (bool, error) {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false, nil
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); exp {
	case "none":
		return false, nil
	case "otlp":
		return true, nil
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "", nil
	default:
		return false, fmt.Errorf("OTEL_TRACES_EXPORTER=%q: extauthz exports traces with otlp (or none)", exp)
	}
}

// New returns the provider the environment configures, or nil with
// tracing off. version is the service.version resource attribute.
func New(ctx context.Context, version string, getenv func(string) string) (*Provider, error) {
	on, err := Enabled(getenv)
	if err != nil || !on {
		return nil, err
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp *otlptrace.Exporter
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%q: must be http/protobuf or grpc", protocol)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	// The environment's attributes come last, so they win.
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(DefaultServiceName), semconv.ServiceVersion(version)), resource.WithFromEnv()}
	res, err := resource.New(ctx, attrs...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return &Provider{sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(spanLimits()))}, nil
}

// MaxAttributeLength bounds every span attribute value unless
// OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT (or the span-specific variable) says
// otherwise: the SDK's default is unlimited, and a client's User-Agent or
// path is copied into a span, so every queued span could hold a request's
// whole header block.
const MaxAttributeLength = 256

// spanLimits are the SDK's limits from the environment, with attribute
// values bounded by MaxAttributeLength when the environment does not set
// a bound.
func spanLimits() sdktrace.SpanLimits {
	l := sdktrace.NewSpanLimits()
	if l.AttributeValueLengthLimit < 0 {
		l.AttributeValueLengthLimit = MaxAttributeLength
	}
	return l
}

// TracerProvider returns p as a trace.TracerProvider, nil when p is nil
// (tracing off), which is what authz.Options takes.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return nil
	}
	return p.sdk
}

// Shutdown exports the spans not yet exported and stops p.
func (p *Provider) Shutdown(ctx context.Context) error { return p.sdk.Shutdown(ctx) }
