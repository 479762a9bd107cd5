package authz_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/extauthz/extauthz/authz"
)

// Trace contexts a proxy would send: Envoy in the call's metadata, the
// client's in the checked request's headers.
const (
	metaParent   = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	headerParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
)

// TestCheckSpans: with a tracer provider, every check through either door
// is one server span named extauthz.check, child of the trace context in
// the gRPC metadata, else of the checked request's traceparent, with the
// decision, the reason, the key id and the frontend, and never the key.
func TestCheckSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := newEnv(t, "nexgent.yaml", func(o *authz.Options) { o.TracerProvider = tp })
	raw, k := e.mint(keyOpts{scopes: []string{"signals"}})
	client, httpURL := e.grpc, e.httpURL

	check := func(md metadata.MD, hdr map[string]string) {
		t.Helper()
		headers := map[string]string{":method": "GET", ":path": "/api/v1/trading-signals", "x-api-key": raw}
		for k, v := range hdr {
			headers[k] = v
		}
		ctx := metadata.NewOutgoingContext(context.Background(), md)
		_, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/v1/trading-signals", Host: "api", Headers: headers}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	check(metadata.Pairs("traceparent", metaParent), map[string]string{"traceparent": headerParent})
	check(nil, map[string]string{"traceparent": headerParent})
	check(nil, nil)
	req, _ := http.NewRequest("GET", httpURL+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/agents")
	req.Header.Set("X-Api-Key", raw)
	req.Header.Set("Traceparent", headerParent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	spans := rec.Ended()
	if len(spans) != 4 {
		t.Fatalf("%d spans; want one per check (4)", len(spans))
	}
	want := []struct {
		parent   string // trace id-span id of the parent, "" for a root
		frontend string
		decision string
		reason   string
	}{
		{"0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331", "envoy", "allow", "ok"},
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "envoy", "allow", "ok"},
		{"", "envoy", "allow", "ok"},
		{"4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", "forwardauth", "forbidden", "missing_scope"},
	}
	for i, s := range spans {
		w := want[i]
		if s.Name() != authz.SpanName || s.SpanKind() != trace.SpanKindServer {
			t.Errorf("span %d: %q kind %v", i, s.Name(), s.SpanKind())
		}
		parent := ""
		if p := s.Parent(); p.IsValid() {
			parent = p.TraceID().String() + "-" + p.SpanID().String()
			if s.SpanContext().TraceID() != p.TraceID() {
				t.Errorf("span %d is not in its parent's trace", i)
			}
		}
		if parent != w.parent {
			t.Errorf("span %d parent %q; want %q", i, parent, w.parent)
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
			if strings.Contains(kv.Value.String(), raw) || strings.Contains(kv.Value.String(), raw[len(k.Prefix):]) {
				t.Errorf("span %d attribute %s holds the key", i, kv.Key)
			}
		}
		if attrs["extauthz.frontend"] != w.frontend || attrs["extauthz.decision"] != w.decision || attrs["extauthz.reason"] != w.reason || attrs["extauthz.key_id"] != k.ID {
			t.Errorf("span %d attributes %v; want %+v and key id %s", i, attrs, w, k.ID)
		}
	}
}
