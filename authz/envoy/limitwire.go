package envoy

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The field numbers of the response_headers_to_add encoding, read from the
// messages' descriptors.
var (
	fieldOkResponse   = fieldNumber(&authv3.CheckResponse{}, "ok_response")
	fieldResponseAdd  = fieldNumber(&authv3.OkHttpResponse{}, "response_headers_to_add")
	fieldOptionHeader = fieldNumber(&corev3.HeaderValueOption{}, "header")
	fieldOptionAppend = fieldNumber(&corev3.HeaderValueOption{}, "append")
	fieldHeaderKey    = fieldNumber(&corev3.HeaderValue{}, "key")
	fieldHeaderValue  = fieldNumber(&corev3.HeaderValue{}, "value")
	_                 = fieldNumber(&wrapperspb.BoolValue{}, "value") // false: an empty message
)

func fieldNumber(m interface {
	ProtoReflect() protoreflect.Message
}, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil {
		panic("envoy: no field " + string(name))
	}
	return f.Number()
}

// appendResponseHeaders appends the encoding of a CheckResponse whose
// ok_response holds only response_headers_to_add: one overwriting header
// (append=false, as header builds it) per key and value of kv, which
// alternates keys and values. It encodes exactly what proto.Marshal makes
// of the same message built with header (TestLimitHeadersWire), without
// building that message: a limited key's allowed answer is the cached one
// plus these bytes, for every request.
func appendResponseHeaders(b []byte, kv ...string) []byte {
	size := func(n protowire.Number, l int) int { return protowire.SizeTag(n) + protowire.SizeBytes(l) }
	str := func(n protowire.Number, s string) int { // proto3 leaves out an empty string
		if s == "" {
			return 0
		}
		return size(n, len(s))
	}
	headerLen := func(k, v string) int { return str(fieldHeaderKey, k) + str(fieldHeaderValue, v) }
	optionLen := func(k, v string) int {
		return size(fieldOptionHeader, headerLen(k, v)) + size(fieldOptionAppend, 0)
	}
	ok := 0
	for i := 0; i+1 < len(kv); i += 2 {
		ok += size(fieldResponseAdd, optionLen(kv[i], kv[i+1]))
	}
	b = protowire.AppendTag(b, fieldOkResponse, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ok))
	for i := 0; i+1 < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		b = protowire.AppendTag(b, fieldResponseAdd, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(optionLen(k, v)))
		b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerLen(k, v)))
		b = appendString(b, fieldHeaderKey, k)
		b = appendString(b, fieldHeaderValue, v)
		b = protowire.AppendTag(b, fieldOptionAppend, protowire.BytesType)
		b = protowire.AppendVarint(b, 0)
	}
	return b
}

// appendString appends string field n unless s is empty (proto3's rule).
func appendString(b []byte, n protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	return protowire.AppendString(protowire.AppendTag(b, n, protowire.BytesType), s)
}
