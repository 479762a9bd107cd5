package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracev1 "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is an OTLP/HTTP trace endpoint that keeps every span.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracev1.Span
	raw   bytes.Buffer // every request body, to search for keys
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	var req coltrace.ExportTraceServiceRequest
	if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(b, &req) != nil {
		http.Error(w, "bad export", 400)
		return
	}
	o.mu.Lock()
	o.raw.Write(b)
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			o.spans = append(o.spans, ss.GetSpans()...)
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// named returns an exported span named name, if any.
func (o *otlpReceiver) named(name string) *tracev1.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

// span returns the span whose parent is parentSpanID (hex), if exported.
func (o *otlpReceiver) span(parentSpanID string) *tracev1.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans {
		if hex.EncodeToString(s.GetParentSpanId()) == parentSpanID {
			return s
		}
	}
	return nil
}

// TestTracingEndToEnd: the real binary, with only OTEL_EXPORTER_OTLP_ENDPOINT
// set, exports a span per check to an OTLP receiver: for a gRPC Check, a
// child of the traceparent in the call's metadata; for forwardAuth, of the
// request's Traceparent header; with the decision, reason, key id and
// frontend as attributes and no raw key anywhere in the export.
func TestTracingEndToEnd(t *testing.T) {
	recv := &otlpReceiver{}
	hs := httptest.NewServer(recv)
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	const token = "tracing-operator-token-0123456789ab"
	p := startProc(t, binPath, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + hs.URL, "OTEL_BSP_SCHEDULE_DELAY=50"},
		"standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--admin-token-file", writeFile(t, dir, "admin-token", token),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	var k createdKey
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "traced", "scopes": []string{"signals"}}, &k); code != 201 {
		t.Fatalf("create: %d", code)
	}
	client := authv3.NewAuthorizationClient(dial(t, p.addrs["grpc"]))
	const grpcParent, httpParent = "b7ad6b7169203331", "00f067aa0ba902b7"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-0af7651916cd43dd8448eb211c80319c-"+grpcParent+"-01")
	if _, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/api/v1/trading-signals", Host: "api",
			Headers: map[string]string{":method": "GET", ":path": "/api/v1/trading-signals", "x-api-key": k.Key}}}}}); err != nil {
		t.Fatal(err)
	}
	if code, _ := forwardAuth(t, p.url("http"), "GET", "/api/v1/agents", map[string]string{"X-API-Key": k.Key,
		"Traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-" + httpParent + "-01"}); code != 403 {
		t.Fatalf("forwardAuth: %d; want 403", code)
	}
	for _, c := range []struct{ parent, trace, frontend, decision, reason string }{
		{grpcParent, "0af7651916cd43dd8448eb211c80319c", "envoy", "allow", "ok"},
		{httpParent, "4bf92f3577b34da6a3ce929d0e0e4736", "forwardauth", "forbidden", "missing_scope"},
	} {
		var s *tracev1.Span
		eventually(t, "the "+c.frontend+" span exported", func() bool { s = recv.span(c.parent); return s != nil })
		if s.GetName() != "extauthz.check" || s.GetKind() != tracev1.Span_SPAN_KIND_SERVER || hex.EncodeToString(s.GetTraceId()) != c.trace {
			t.Errorf("%s span: name %q kind %v trace %x", c.frontend, s.GetName(), s.GetKind(), s.GetTraceId())
		}
		attrs := map[string]string{}
		for _, kv := range s.GetAttributes() {
			attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		if attrs["extauthz.frontend"] != c.frontend || attrs["extauthz.decision"] != c.decision || attrs["extauthz.reason"] != c.reason || attrs["extauthz.key_id"] != k.ID {
			t.Errorf("%s span attributes %v", c.frontend, attrs)
		}
	}
	// The admin port is public: a caller's trace context is a link, not the
	// parent (it cannot make its requests sampled), and attribute values
	// are bounded (a client's User-Agent is copied into the span).
	const adminParent = "a3ce929d0e0e4736"
	req, _ := http.NewRequest("GET", p.url("admin")+"/api/v1/api-keys", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4799-"+adminParent+"-01")
	req.Header.Set("User-Agent", strings.Repeat("U", 5000))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var admin *tracev1.Span
	eventually(t, "the admin span exported", func() bool { admin = recv.named("GET /api"); return admin != nil })
	if len(admin.GetParentSpanId()) != 0 || len(admin.GetLinks()) != 1 || hex.EncodeToString(admin.GetLinks()[0].GetSpanId()) != adminParent {
		t.Errorf("admin span: parent %x, links %v; want no parent and a link to the caller's span", admin.GetParentSpanId(), admin.GetLinks())
	}
	for _, kv := range admin.GetAttributes() {
		if n := len(kv.GetValue().GetStringValue()); n > 256 {
			t.Errorf("admin span attribute %s holds %d bytes; want at most 256", kv.GetKey(), n)
		}
	}
	p.stop(t, 15)
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if bytes.Contains(recv.raw.Bytes(), []byte(k.Key)) || bytes.Contains(recv.raw.Bytes(), []byte(strings.TrimPrefix(k.Key, k.Prefix))) {
		t.Error("a raw key was exported in a span")
	}
	if !strings.Contains(p.logs.String(), "tracing on") {
		t.Error("no log line says tracing is on")
	}
}
