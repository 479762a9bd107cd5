// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables: off unless they ask for it, so that a check pays
// nothing for tracing it does not use.
//
// Tracing is on when OTEL_TRACES_EXPORTER is "otlp", or when it is unset
// and an OTLP endpoint is (OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT); OTEL_TRACES_EXPORTER=none and
// OTEL_SDK_DISABLED=true turn it off. The exporter speaks OTLP over HTTP
// (protobuf) or, with OTEL_EXPORTER_OTLP_PROTOCOL or
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL "grpc", over gRPC, and reads its
// endpoint, headers, timeout and TLS settings from the same variables; the
// SDK reads OTEL_TRACES_SAMPLER (default parentbased_always_on, so the
// proxy's sampling decision is kept), OTEL_TRACES_SAMPLER_ARG, the OTEL_BSP_*
// batch settings, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
package tracing
