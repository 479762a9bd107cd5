package envoy

import (
	"context"
	"strings"
	"time"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/keystore"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"go.opentelemetry.io/otel/propagation"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// DefaultGRPCAddr is the default listen address of the ext_authz gRPC
// Check and grpc.health.v1. The manifests and envoy.yaml are tested
// against it.
const DefaultGRPCAddr = ":9191"

// Frontend labels checks that came through the gRPC front door.
const Frontend = "envoy"

// Server implements the Envoy ext_authz v3 Authorization service.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	a     *authz.Authorizer
	allow *authz.AllowCache[*authv3.CheckResponse] // pre-encoded (see preEncoded)
}

// NewServer returns the gRPC front door over a.
func NewServer(a *authz.Authorizer) *Server {
	// Building and encoding an allow response (identity headers with
	// explicit append=false, headers to remove, dynamic metadata) costs
	// more than the decision, so both are done once per key and revision.
	// A cached response is shared between concurrent calls; grpc only
	// reads it.
	// The RateLimit fields of a limited key change with every request, so
	// they are not part of the cached response: Check appends them.
	return &Server{a: a, allow: authz.NewAllowCache(a, func(d *authz.Decision) (*authv3.CheckResponse, bool) {
		d.ShowLimit = false
		resp, err := preEncoded(Response(d))
		if err != nil {
			return Response(d), false // grpc will report the encoding error
		}
		return resp, true
	})}
}

// Codec returns the codec to serve s with (grpc.ForceServerCodecV2): the
// proto codec, except that a pre-encoded response (see preEncoded) goes
// out as its bytes directly, without sizing and copying them, and that a
// CheckRequest is decoded only as far as Check reads it
// (projectCheckRequest).
func (s *Server) Codec() encoding.CodecV2 {
	return responseCodec{encoding.GetCodecV2(grpcproto.Name)}
}

type responseCodec struct{ encoding.CodecV2 }

// Unmarshal decodes a CheckRequest with projectCheckRequest: only the
// fields envoyRequest reads.
func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	req, ok := v.(*authv3.CheckRequest)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return projectCheckRequest(buf.ReadOnlyData(), req)
}

func (c responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*authv3.CheckResponse); ok && r.Status == nil && r.HttpResponse == nil && r.DynamicMetadata == nil {
		if b := r.ProtoReflect().GetUnknown(); len(b) > 0 {
			// Never pooled, so sharing it between responses is safe.
			return mem.BufferSlice{mem.SliceBuffer(b)}, nil
		}
	}
	return c.CodecV2.Marshal(v)
}

// preEncoded returns a response that encodes to exactly the bytes of resp
// but holds them as one byte slice: an empty CheckResponse carrying the
// encoding as its unknown fields, which protobuf writes out verbatim. grpc
// then marshals it by copying those bytes instead of walking ~20 nested
// messages, and the cache keeps one small object per key for the garbage
// collector instead of the whole tree. Only its encoding is meaningful;
// read a response's fields from a decoded copy.
func preEncoded(resp *authv3.CheckResponse) (*authv3.CheckResponse, error) {
	wire, err := proto.Marshal(resp)
	if err != nil {
		return nil, err
	}
	pre := &authv3.CheckResponse{}
	pre.ProtoReflect().SetUnknown(wire)
	return pre, nil
}

// Check answers one ext_authz request. Every answer carries an explicit
// status (an empty CheckResponse would allow). Denials are successful RPCs
// with denied_response; an unusable store is the RPC error UNAVAILABLE, so
// Envoy applies its status_on_error.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if s.a.Tracing() {
		// Envoy sends its span's context in the call's metadata; it wins
		// over the traceparent of the request being checked.
		// (ValueFromIncomingContext reads without copying the metadata.)
		if tp := metadata.ValueFromIncomingContext(ctx, headerTraceParent); len(tp) > 0 {
			carrier := propagation.MapCarrier{headerTraceParent: tp[0]}
			if ts := metadata.ValueFromIncomingContext(ctx, headerTraceState); len(ts) > 0 && len(ts[0]) <= authz.MaxTraceState {
				carrier[headerTraceState] = ts[0]
			}
			ctx = s.a.ExtractTrace(ctx, carrier)
		}
	}
	r := envoyRequest(req)
	d := s.a.Check(ctx, &r)
	switch {
	case d.Kind == authz.Unavailable:
		return nil, status.Error(codes.Unavailable, "authorization unavailable")
	case d.Kind == authz.Allow && d.Key != nil:
		resp := s.allow.Get(&d)
		if d.ShowLimitFields() {
			return withLimitHeaders(resp, &d), nil
		}
		return resp, nil
	}
	return Response(&d), nil
}

// W3C trace-context headers, read from the checked request for its span's
// parent when the call's metadata has none.
const (
	headerTraceParent = "traceparent"
	headerTraceState  = "tracestate"
)

// headerContentType is read for a POST, which may carry a form (authz,
// "overridden").
const headerContentType = "content-type"

// withLimitHeaders returns the cached allow response resp with d's
// RateLimit fields added to the client's response. A pre-encoded response
// gets the encoding of an ok_response holding only
// response_headers_to_add appended: protobuf decoders merge the two
// occurrences of the message field, so Envoy reads one ok_response with
// the cached headers and these.
func withLimitHeaders(resp *authv3.CheckResponse, d *authz.Decision) *authv3.CheckResponse {
	pre := resp.ProtoReflect().GetUnknown()
	if len(pre) == 0 {
		return Response(d)
	}
	var pv, lv [96]byte // the values, on the stack
	policy, limit := d.AppendRateLimitPolicy(pv[:0]), d.AppendRateLimit(lv[:0])
	b := make([]byte, 0, len(pre)+64+len(policy)+len(limit))
	b = appendResponseHeaders(append(b, pre...),
		respHeader{authz.HeaderRateLimitPolicy, policy},
		respHeader{authz.HeaderRateLimit, limit})
	out := &authv3.CheckResponse{}
	out.ProtoReflect().SetUnknown(b)
	return out
}

// limitHeaders are d's RateLimit-Policy and RateLimit fields.
func limitHeaders(d *authz.Decision) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{
		header(authz.HeaderRateLimitPolicy, d.RateLimitPolicyValue()),
		header(authz.HeaderRateLimit, d.RateLimitValue()),
	}
}

// rateLimitUnits are the Envoy rate-limit units (RateLimitUnit of
// envoy.service.ratelimit.v3) of the durations that are exactly one unit.
var rateLimitUnits = map[time.Duration]string{
	time.Second:    "SECOND",
	time.Minute:    "MINUTE",
	time.Hour:      "HOUR",
	24 * time.Hour: "DAY",
}

// rateLimitMetadata is the key's limit in the shape Envoy's rate-limit
// override (RateLimit.Override.DynamicMetadata, which Envoy Gateway's
// limit.fromMetadata configures) reads: {requests_per_unit, unit}. It is
// nil for a limit whose duration is not one unit.
func rateLimitMetadata(l keystore.RateLimit) *structpb.Value {
	unit, ok := rateLimitUnits[l.Duration]
	if !ok {
		return nil
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"requests_per_unit": structpb.NewNumberValue(float64(l.Limit)),
		"unit":              structpb.NewStringValue(unit),
	}})
}

func envoyRequest(req *authv3.CheckRequest) authz.Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := authz.Request{
		Frontend: Frontend,
		Method:   h.GetMethod(),
		Host:     h.GetHost(),
		Path:     h.GetPath(),
		SourceIP: attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	if hm := h.GetHeaderMap(); hm != nil && h.GetHeaders() == nil {
		// encode_raw_headers: values are raw bytes, duplicates separate.
		for _, hv := range hm.GetHeaders() {
			v := string(hv.GetRawValue())
			if v == "" {
				v = hv.GetValue()
			}
			requestHeader(&r, strings.ToLower(hv.GetKey()), v)
		}
		return r
	}
	// Envoy joins a repeated header's values with commas here, and sends
	// names in lower case.
	for k, v := range h.GetHeaders() {
		requestHeader(&r, k, v)
	}
	return r
}

// requestHeader reads one request header into r: the headers of
// envoyReadHeaders, their names in lower case as Envoy sends them, and
// Content-Type in any spelling, and the others for Request.NoteHeader.
// The method, path and host come from the pseudo-headers only when the
// request's attributes lack them.
func requestHeader(r *authz.Request, name, v string) {
	switch name {
	case authz.HeaderAPIKey:
		r.APIKey = append(r.APIKey, v)
	case authz.HeaderAuthorization:
		r.Authorization = append(r.Authorization, v)
	case "x-request-id":
		r.RequestID = v
	case ":method":
		if r.Method == "" {
			r.Method = v
		}
	case ":path":
		if r.Path == "" {
			r.Path = v
		}
	case ":authority":
		if r.Host == "" {
			r.Host = v
		}
	case headerTraceParent:
		r.TraceParent = v
	case headerTraceState:
		r.TraceState = v
	default:
		if authz.EqualHeaderFold(name, headerContentType) {
			r.ContentType = append(r.ContentType, v)
			return
		}
		r.NoteHeader(name)
	}
}

// header is a header to set with overwrite semantics. The deprecated append
// field, set to false, is the one spelling of "overwrite" that every Envoy
// release honours (append_action was ignored up to 1.36, and its default
// appends where it is read).
func header(k, v string) *corev3.HeaderValueOption {
	//lint:ignore SA1019 append=false is the portable overwrite; see above.
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, Append: wrapperspb.Bool(false)}
}

// Response returns the CheckResponse Check sends for d, built afresh: Check
// itself serves an allowed key's from the cache of encoded responses.
func Response(d *authz.Decision) *authv3.CheckResponse {
	if d.Kind == authz.Allow {
		ok := &authv3.OkHttpResponse{}
		resp := &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
		if d.Key == nil { // public route: nothing to assert, but never pass forged identity
			ok.HeadersToRemove = authz.IdentityHeaderNames[:]
			return resp
		}
		meta := make(map[string]*structpb.Value, 4)
		for _, kv := range authz.Identity(d.Key) {
			if kv[1] == "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, kv[0])
				continue
			}
			ok.Headers = append(ok.Headers, header(kv[0], kv[1]))
		}
		if d.Strip {
			ok.HeadersToRemove = append(ok.HeadersToRemove, authz.CredentialHeaders(d.Sources)...)
		}
		meta["key_id"] = structpb.NewStringValue(d.Key.ID)
		meta["scopes"] = structpb.NewStringValue(strings.Join(d.Key.Scopes, ","))
		if d.Key.ProjectID != "" {
			meta["project_id"] = structpb.NewStringValue(d.Key.ProjectID)
		}
		if d.Key.UserID != "" {
			meta["user_id"] = structpb.NewStringValue(d.Key.UserID)
		}
		if d.Limited() {
			if v := rateLimitMetadata(d.Limit.RateLimit); v != nil {
				meta["rate_limit"] = v
			}
		}
		if d.ShowLimitFields() {
			ok.ResponseHeadersToAdd = limitHeaders(d)
		}
		resp.DynamicMetadata = &structpb.Struct{Fields: meta}
		return resp
	}

	code, httpStatus := codes.PermissionDenied, d.Status
	switch d.Kind {
	case authz.Unauthenticated:
		code = codes.Unauthenticated
	case authz.RateLimited:
		code = codes.ResourceExhausted
	case authz.AmbiguousPath:
		httpStatus = 403 // the table: PERMISSION_DENIED with a 403 denied_response
	}
	headers := []*corev3.HeaderValueOption{header("content-type", "application/json")}
	if d.WWWAuthenticate != "" {
		headers = append(headers, header("www-authenticate", d.WWWAuthenticate))
	}
	if d.Kind == authz.RateLimited {
		if v := d.RetryAfterValue(); v != "" {
			headers = append(headers, header(authz.HeaderRetryAfter, v))
		}
		if d.ShowLimitFields() {
			headers = append(headers, limitHeaders(d)...)
		}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(httpStatus)},
			Headers: headers,
			Body:    string(d.Body),
		}},
	}
}
