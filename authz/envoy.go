package authz

import (
	"context"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/keystore"
)

// FrontendEnvoy labels checks that came through the gRPC front door.
const FrontendEnvoy = "envoy"

// EnvoyServer implements the Envoy ext_authz v3 Authorization service.
type EnvoyServer struct {
	authv3.UnimplementedAuthorizationServer
	a *Authorizer

	// allow caches allow responses for one store revision (when the key
	// lookup reports revisions); a new revision, or a full cache, starts an
	// empty one, so it never holds more than the keys used since the last
	// change.
	mu    sync.RWMutex
	rev   uint64
	allow map[allowKey]allowEntry
}

// maxCachedResponses bounds the allow-response cache.
const maxCachedResponses = 4096

// allowKey identifies an allow response: it depends only on the key record
// and on which credential headers to strip.
type allowKey struct {
	id      string
	sources uint8
	strip   bool
}

// allowEntry is a built response and the record it was built from. The
// store's lookup cache keeps a record's pointer stable until the next
// revision; a different pointer means the record may have changed. The
// response is pre-encoded (see preEncoded).
type allowEntry struct {
	key  *keystore.Key
	resp *authv3.CheckResponse
}

// revisioner is implemented by key lookups that know their store revision
// (*keystore.Store, the replication follower).
type revisioner interface{ Revision() uint64 }

// NewEnvoyServer returns the gRPC front door over a.
func NewEnvoyServer(a *Authorizer) *EnvoyServer {
	return &EnvoyServer{a: a, allow: make(map[allowKey]allowEntry)}
}

// allowResponse returns the prebuilt response for an allow decision. A
// response is shared between concurrent calls; grpc only reads it.
// Building and encoding it (identity headers with explicit append=false,
// headers to remove, dynamic metadata) costs more than the decision, so
// both are done once per key and revision.
func (s *EnvoyServer) allowResponse(d *Decision) *authv3.CheckResponse {
	var rev uint64
	if r, ok := s.a.keys.(revisioner); ok {
		rev = r.Revision()
	}
	k := allowKey{d.Key.ID, d.Sources, d.Strip}
	s.mu.RLock()
	e, ok := s.allow[k]
	current := rev == s.rev
	s.mu.RUnlock()
	if current && ok && e.key == d.Key {
		return e.resp
	}
	resp, err := preEncoded(envoyResponse(d))
	if err != nil {
		return envoyResponse(d) // not cached; grpc will report the encoding error
	}
	s.mu.Lock()
	if rev != s.rev || len(s.allow) >= maxCachedResponses {
		s.rev = rev
		clear(s.allow)
	}
	if rev == s.rev {
		s.allow[k] = allowEntry{d.Key, resp}
	}
	s.mu.Unlock()
	return resp
}

// Codec returns the codec to serve s with (grpc.ForceServerCodecV2): the
// proto codec, except that a pre-encoded response (see preEncoded) goes
// out as its bytes directly, without sizing and copying them.
func (s *EnvoyServer) Codec() encoding.CodecV2 {
	return responseCodec{encoding.GetCodecV2(grpcproto.Name)}
}

type responseCodec struct{ encoding.CodecV2 }

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
func (s *EnvoyServer) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	r := envoyRequest(req)
	d := s.a.Check(ctx, &r)
	switch {
	case d.Kind == Unavailable:
		return nil, status.Error(codes.Unavailable, "authorization unavailable")
	case d.Kind == Allow && d.Key != nil:
		return s.allowResponse(&d), nil
	}
	return envoyResponse(&d), nil
}

func envoyRequest(req *authv3.CheckRequest) Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := Request{
		Frontend: FrontendEnvoy,
		Method:   h.GetMethod(),
		Host:     h.GetHost(),
		Path:     h.GetPath(),
		SourceIP: attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
	if hm := h.GetHeaderMap(); hm != nil && len(h.GetHeaders()) == 0 {
		// encode_raw_headers: values are raw bytes, duplicates separate.
		for _, hv := range hm.GetHeaders() {
			v := string(hv.GetRawValue())
			if v == "" {
				v = hv.GetValue()
			}
			switch strings.ToLower(hv.GetKey()) {
			case HeaderAPIKey:
				r.APIKey = append(r.APIKey, v)
			case HeaderAuthorization:
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
			}
		}
		return r
	}
	hdr := h.GetHeaders()
	if v, ok := hdr[HeaderAPIKey]; ok {
		r.APIKey = []string{v}
	}
	if v, ok := hdr[HeaderAuthorization]; ok {
		r.Authorization = []string{v}
	}
	r.RequestID = hdr["x-request-id"]
	if r.Method == "" {
		r.Method = hdr[":method"]
	}
	if r.Path == "" {
		r.Path = hdr[":path"]
	}
	if r.Host == "" {
		r.Host = hdr[":authority"]
	}
	return r
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}, Append: wrapperspb.Bool(false)}
}

func envoyResponse(d *Decision) *authv3.CheckResponse {
	if d.Kind == Allow {
		ok := &authv3.OkHttpResponse{}
		resp := &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
		}
		if d.Key == nil { // public route: nothing to assert, but never pass forged identity
			ok.HeadersToRemove = identityHeaderNames[:]
			return resp
		}
		meta := make(map[string]*structpb.Value, 4)
		for _, kv := range identity(d.Key) {
			if kv[1] == "" {
				ok.HeadersToRemove = append(ok.HeadersToRemove, kv[0])
				continue
			}
			ok.Headers = append(ok.Headers, header(kv[0], kv[1]))
		}
		if d.Strip {
			ok.HeadersToRemove = append(ok.HeadersToRemove, credentialHeaders(d.Sources)...)
		}
		meta["key_id"] = structpb.NewStringValue(d.Key.ID)
		meta["scopes"] = structpb.NewStringValue(strings.Join(d.Key.Scopes, ","))
		if d.Key.ProjectID != "" {
			meta["project_id"] = structpb.NewStringValue(d.Key.ProjectID)
		}
		if d.Key.UserID != "" {
			meta["user_id"] = structpb.NewStringValue(d.Key.UserID)
		}
		resp.DynamicMetadata = &structpb.Struct{Fields: meta}
		return resp
	}

	code, httpStatus := codes.PermissionDenied, d.Status
	switch d.Kind {
	case Unauthenticated:
		code = codes.Unauthenticated
	case RateLimited:
		code = codes.ResourceExhausted
	case AmbiguousPath:
		httpStatus = 403 // the table: PERMISSION_DENIED with a 403 denied_response
	}
	headers := []*corev3.HeaderValueOption{header("content-type", "application/json")}
	if d.WWWAuthenticate != "" {
		headers = append(headers, header("www-authenticate", d.WWWAuthenticate))
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
