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

// respHeader is one header of response_headers_to_add.
type respHeader struct {
	key   string
	value []byte
}

// appendResponseHeaders appends the encoding of a CheckResponse whose
// ok_response holds only response_headers_to_add: one overwriting header
// (append=false, as header builds it) per element of hs. It encodes
// exactly what proto.Marshal makes of the same message built with header
// (TestLimitHeadersWire), without building that message: a limited key's
// allowed answer is the cached one plus these bytes, for every request.
func appendResponseHeaders(b []byte, hs ...respHeader) []byte {
	size := func(n protowire.Number, l int) int { return protowire.SizeTag(n) + protowire.SizeBytes(l) }
	str := func(n protowire.Number, l int) int { // proto3 leaves out an empty string
		if l == 0 {
			return 0
		}
		return size(n, l)
	}
	headerLen := func(h respHeader) int { return str(fieldHeaderKey, len(h.key)) + str(fieldHeaderValue, len(h.value)) }
	optionLen := func(h respHeader) int {
		return size(fieldOptionHeader, headerLen(h)) + size(fieldOptionAppend, 0)
	}
	ok := 0
	for _, h := range hs {
		ok += size(fieldResponseAdd, optionLen(h))
	}
	b = protowire.AppendTag(b, fieldOkResponse, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(ok))
	for _, h := range hs {
		b = protowire.AppendTag(b, fieldResponseAdd, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(optionLen(h)))
		b = protowire.AppendTag(b, fieldOptionHeader, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(headerLen(h)))
		if h.key != "" {
			b = protowire.AppendString(protowire.AppendTag(b, fieldHeaderKey, protowire.BytesType), h.key)
		}
		if len(h.value) > 0 {
			b = protowire.AppendBytes(protowire.AppendTag(b, fieldHeaderValue, protowire.BytesType), h.value)
		}
		b = protowire.AppendTag(b, fieldOptionAppend, protowire.BytesType)
		b = protowire.AppendVarint(b, 0)
	}
	return b
}
