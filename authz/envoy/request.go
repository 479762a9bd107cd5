package envoy

import (
	"errors"
	"fmt"
	"github.com/extauthz/extauthz/authz"
	"strings"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
)

// envoyReadHeaders are the request headers envoyRequest reads; every other
// header Envoy sends is skipped by projectCheckRequest without being
// decoded. FuzzProjectCheckRequest fails if envoyRequest reads one that is
// not here.
var envoyReadHeaders = [...]string{authz.HeaderAPIKey, authz.HeaderAuthorization, "x-request-id", ":method", ":path", ":authority",
	headerTraceParent, headerTraceState}

// envoyReadsHeader reports whether envoyRequest reads the header name: one
// of envoyReadHeaders, Content-Type in any spelling, or one that
// authz.Request.NoteHeader marks.
func envoyReadsHeader(name string) bool {
	for _, h := range envoyReadHeaders {
		if len(name) == len(h) && strings.EqualFold(name, h) {
			return true
		}
	}
	var r authz.Request
	r.NoteHeader(name)
	return r.MethodOverride || r.PathOverride || r.IdentityTwin || authz.EqualHeaderFold(name, headerContentType)
}

// Field numbers of the parts of a CheckRequest that envoyRequest reads
// (envoy/service/auth/v3/attribute_context.proto, envoy/config/core/v3/
// address.proto and base.proto).
const (
	fieldCheckAttributes     = 1  // CheckRequest.attributes
	fieldAttrSource          = 1  // AttributeContext.source
	fieldAttrRequest         = 4  // AttributeContext.request
	fieldPeerAddress         = 1  // AttributeContext.Peer.address
	fieldAddressSocket       = 1  // Address.socket_address (oneof address)
	fieldAddressPipe         = 2  // Address.pipe (oneof address)
	fieldAddressInternal     = 3  // Address.envoy_internal_address (oneof address)
	fieldSocketAddress       = 2  // SocketAddress.address
	fieldRequestHTTP         = 2  // AttributeContext.Request.http
	fieldHTTPMethod          = 2  // HttpRequest.method
	fieldHTTPHeaders         = 3  // HttpRequest.headers (map<string, string>)
	fieldHTTPPath            = 4  // HttpRequest.path
	fieldHTTPHost            = 5  // HttpRequest.host
	fieldHTTPHeaderMap       = 13 // HttpRequest.header_map
	fieldHeaderMapHeaders    = 1  // HeaderMap.headers
	fieldHeaderValueKey      = 1  // HeaderValue.key, and a map entry's key
	fieldHeaderValueValue    = 2  // HeaderValue.value, and a map entry's value
	fieldHeaderValueRawValue = 3  // HeaderValue.raw_value
)

// errRequestEncoding is returned for bytes that are not a CheckRequest.
var errRequestEncoding = errors.New("authz: malformed CheckRequest")

// projectCheckRequest decodes into req only the fields envoyRequest reads:
// the source socket address, and the HTTP method, path, host and the
// headers of envoyReadHeaders (from headers or header_map). Everything else
// is skipped without being decoded: a CheckRequest carries every request
// header, and decoding them all was a fifth of a sidecar's CPU under load.
//
// For the fields it keeps, it decodes as protobuf does: the last value of
// a field wins, repeated occurrences of a message merge, a later member of
// a oneof replaces an earlier one, a field with an unexpected wire type is
// ignored, and strings must be valid UTF-8. It rejects any bytes that are
// not well-formed protobuf. Unlike proto.Unmarshal it does not check the
// UTF-8 of strings it skips. req must be empty; only the fields above are
// meaningful in it afterwards.
func projectCheckRequest(b []byte, req *authv3.CheckRequest) error {
	return eachMessage(b, fieldCheckAttributes, &req.Attributes, projectAttributes)
}

func projectAttributes(b []byte, a *authv3.AttributeContext) error {
	return eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldAttrSource:
			if a.Source == nil {
				a.Source = &authv3.AttributeContext_Peer{}
			}
			return eachMessage(v, fieldPeerAddress, &a.Source.Address, projectAddress)
		case fieldAttrRequest:
			if a.Request == nil {
				a.Request = &authv3.AttributeContext_Request{}
			}
			return eachMessage(v, fieldRequestHTTP, &a.Request.Http, projectHTTP)
		}
		return nil
	})
}

func projectAddress(b []byte, a *corev3.Address) error {
	return eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldAddressSocket:
			sa := a.GetSocketAddress()
			if sa == nil { // a new oneof member replaces the previous one
				sa = &corev3.SocketAddress{}
				a.Address = &corev3.Address_SocketAddress{SocketAddress: sa}
			}
			return eachOf(v, fieldSocketAddress, func(v []byte) error { return setString(&sa.Address, v) })
		case fieldAddressPipe, fieldAddressInternal:
			a.Address = nil // not a socket address: not read
		}
		return nil
	})
}

func projectHTTP(b []byte, h *authv3.AttributeContext_HttpRequest) error {
	return eachBytesField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldHTTPMethod:
			return setString(&h.Method, v)
		case fieldHTTPPath:
			return setString(&h.Path, v)
		case fieldHTTPHost:
			return setString(&h.Host, v)
		case fieldHTTPHeaders:
			if h.Headers == nil {
				// Present even when no entry is kept: envoyRequest reads
				// header_map only when headers is absent.
				h.Headers = make(map[string]string, 4)
			}
			return projectHeaderEntry(v, h.Headers)
		case fieldHTTPHeaderMap:
			if h.HeaderMap == nil {
				h.HeaderMap = &corev3.HeaderMap{}
			}
			return eachOf(v, fieldHeaderMapHeaders, func(v []byte) error { return projectHeaderValue(v, h.HeaderMap) })
		}
		return nil
	})
}

// projectHeaderEntry adds one map entry to m when its key is read.
func projectHeaderEntry(b []byte, m map[string]string) error {
	key, val, _, ok, err := readHeader(b)
	if !ok || err != nil {
		return err
	}
	m[key] = val
	return nil
}

// projectHeaderValue appends one header_map entry to hm when its key is
// read.
func projectHeaderValue(b []byte, hm *corev3.HeaderMap) error {
	key, val, raw, ok, err := readHeader(b)
	if !ok || err != nil {
		return err
	}
	hv := &corev3.HeaderValue{Key: key, Value: val}
	if raw != nil {
		hv.RawValue = append([]byte(nil), raw...)
	}
	hm.Headers = append(hm.Headers, hv)
	return nil
}

// readHeader reads a map entry or a HeaderValue (key 1, value 2, and for
// a HeaderValue raw_value 3). ok is false for a header Check does not read,
// whose strings are then not checked.
func readHeader(b []byte) (key, val string, raw []byte, ok bool, err error) {
	var k, v []byte
	err = eachBytesField(b, func(num protowire.Number, f []byte) error {
		switch num {
		case fieldHeaderValueKey:
			k = f
		case fieldHeaderValueValue:
			v = f
		case fieldHeaderValueRawValue:
			raw = f
		}
		return nil
	})
	if err != nil || !envoyReadsHeader(string(k)) {
		return "", "", nil, false, err
	}
	if !utf8.Valid(k) || !utf8.Valid(v) {
		return "", "", nil, false, fmt.Errorf("%w: header is not valid UTF-8", errRequestEncoding)
	}
	return string(k), string(v), raw, true, nil
}

func setString(dst *string, v []byte) error {
	if !utf8.Valid(v) {
		return fmt.Errorf("%w: string field is not valid UTF-8", errRequestEncoding)
	}
	*dst = string(v)
	return nil
}

// eachMessage calls fn with every occurrence of the message field want of
// b and *dst, which it creates at the first one: occurrences merge.
func eachMessage[T any](b []byte, want protowire.Number, dst **T, fn func([]byte, *T) error) error {
	return eachOf(b, want, func(v []byte) error {
		if *dst == nil {
			*dst = new(T)
		}
		return fn(v, *dst)
	})
}

// eachOf calls fn with the contents of every occurrence of the
// length-delimited field want of b.
func eachOf(b []byte, want protowire.Number, fn func([]byte) error) error {
	return eachBytesField(b, func(num protowire.Number, v []byte) error {
		if num != want {
			return nil
		}
		return fn(v)
	})
}

// eachBytesField calls fn with the number and contents of every
// length-delimited field of the message b, in order, and skips the others.
func eachBytesField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errRequestEncoding, protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return fmt.Errorf("%w: %w", errRequestEncoding, protowire.ParseError(n))
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return fmt.Errorf("%w: %w", errRequestEncoding, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, v); err != nil {
			return err
		}
	}
	return nil
}
