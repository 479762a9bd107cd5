package envoy

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

func socket(ip string) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 443},
	}}}
}

// projectionCases are CheckRequests as Envoy sends them, and odd ones.
func projectionCases() map[string]*authv3.CheckRequest {
	full := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socket("10.1.2.3"), Principal: "spiffe://x"},
		Destination: &authv3.AttributeContext_Peer{Address: socket("10.1.2.4")},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "1", Method: "POST", Path: "/api/v1/x?y=1", Host: "api.example", Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority": "api.example", ":method": "POST", ":path": "/api/v1/x?y=1", "x-api-key": "nex_abc",
				"authorization": "Bearer nxg_def", "x-request-id": "rid", "user-agent": "curl", "cookie": "a=b",
			},
		}},
		ContextExtensions: map[string]string{"route": "r"},
	}}
	raw := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":method", RawValue: []byte("GET")}, {Key: ":path", RawValue: []byte("/p")},
				{Key: ":authority", Value: "h"}, {Key: "X-API-Key", RawValue: []byte("nex_1")},
				{Key: "x-api-key", RawValue: []byte("nex_2")}, {Key: "accept", RawValue: []byte("*/*")},
				{Key: "authorization", Value: "Bearer t"},
			}},
		}},
	}}
	pipe := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/s"}}}},
	}}
	return map[string]*authv3.CheckRequest{
		"full": full, "header_map": raw, "pipe source": pipe, "empty": {},
		"no key": {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/", Headers: map[string]string{"accept": "x"},
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{{Key: "x-api-key", Value: "ignored: headers is present"}}},
		}}}},
	}
}

// checkProjection asserts that Check reads the same from the projection
// of b as from its full decoding, whenever protobuf accepts b.
func checkProjection(t *testing.T, b []byte) {
	t.Helper()
	var full authv3.CheckRequest
	fullErr := proto.Unmarshal(b, &full)
	var proj authv3.CheckRequest
	projErr := projectCheckRequest(b, &proj)
	if fullErr != nil {
		return // protobuf refuses it; the projection may skip what made it fail
	}
	if projErr != nil {
		t.Fatalf("projection refused what protobuf accepts: %v", projErr)
	}
	if got, want := envoyRequest(&proj), envoyRequest(&full); !reflect.DeepEqual(got, want) {
		t.Fatalf("projection reads %+v; full decoding %+v", got, want)
	}
}

func TestProjectCheckRequest(t *testing.T) {
	for name, req := range projectionCases() {
		t.Run(name, func(t *testing.T) {
			b, err := proto.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			checkProjection(t, b)
			var proj authv3.CheckRequest
			if err := projectCheckRequest(b, &proj); err != nil {
				t.Fatal(err)
			}
			// Skipped headers are not decoded.
			if _, ok := proj.GetAttributes().GetRequest().GetHttp().GetHeaders()["user-agent"]; ok {
				t.Error("projection kept user-agent")
			}
		})
	}
	got := envoyRequest(mustProject(t, projectionCases()["full"]))
	if got.Method != "POST" || got.Path != "/api/v1/x?y=1" || got.Host != "api.example" || got.SourceIP != "10.1.2.3" ||
		!reflect.DeepEqual(got.APIKey, []string{"nex_abc"}) || !reflect.DeepEqual(got.Authorization, []string{"Bearer nxg_def"}) || got.RequestID != "rid" {
		t.Errorf("full request read as %+v", got)
	}
	if got := envoyRequest(mustProject(t, projectionCases()["header_map"])); !reflect.DeepEqual(got.APIKey, []string{"nex_1", "nex_2"}) || got.Method != "GET" {
		t.Errorf("header_map request read as %+v", got)
	}

	// Encodings protobuf merges or overrides, built by hand.
	msg := func(num protowire.Number, parts ...[]byte) []byte {
		var inner []byte
		for _, p := range parts {
			inner = append(inner, p...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), inner)
	}
	str := func(num protowire.Number, s string) []byte { return msg(num, []byte(s)) }
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	http := func(parts ...[]byte) []byte { return msg(1, msg(4, msg(2, parts...))) }
	entry := func(k, v string) []byte { return msg(3, str(1, k), str(2, v)) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for name, b := range map[string][]byte{
		"last method wins":             http(str(2, "GET"), str(2, "DELETE")),
		"messages merge":               cat(http(str(2, "GET")), http(str(4, "/p")), http(entry("x-api-key", "a")), http(entry("x-api-key", "b"))),
		"wrong wire type ignored":      http(varint(2, 7), str(4, "/p"), varint(3, 1)),
		"oneof replaced":               msg(1, msg(1, msg(1, msg(1, str(2, "10.0.0.1")), msg(2, str(1, "/pipe"))))),
		"oneof back to socket":         msg(1, msg(1, msg(1, msg(1, str(2, "10.0.0.1")), msg(2, str(1, "/pipe")), msg(1, varint(3, 80))))),
		"socket address merges":        msg(1, msg(1, msg(1, msg(1, str(2, "10.0.0.1")), msg(1, varint(3, 80))))),
		"entry value before key":       http(msg(3, str(2, "v"), str(1, "x-api-key"))),
		"entry without value":          http(msg(3, str(1, "x-api-key"))),
		"skipped field with groups":    cat(protowire.AppendTag(nil, 9, protowire.StartGroupType), protowire.AppendTag(nil, 9, protowire.EndGroupType), http(str(2, "GET"))),
		"header_map value and raw":     http(msg(13, msg(1, str(1, "x-api-key"), str(2, "v"), str(3, "raw")))),
		"empty headers entry":          http(msg(3), msg(13, msg(1, str(1, "x-api-key"), str(2, "v")))),
		"unknown fields at every step": cat(varint(5, 1), msg(1, varint(99, 1), msg(4, str(7, "x"), msg(2, str(99, "y"), str(2, "PUT"))))),
	} {
		t.Run(name, func(t *testing.T) {
			if err := proto.Unmarshal(b, &authv3.CheckRequest{}); err != nil {
				t.Fatalf("the case is not a valid CheckRequest: %v", err)
			}
			checkProjection(t, b)
		})
	}
	for name, b := range map[string][]byte{
		"truncated":           http(str(2, "GET"))[:5],
		"bad UTF-8 method":    http(str(2, "\xff")),
		"bad UTF-8 key":       http(entry("x-api-key", "\xff")),
		"stray end group":     protowire.AppendTag(nil, 9, protowire.EndGroupType),
		"field number 0":      protowire.AppendTag(nil, 0, protowire.VarintType),
		"length past the end": {0x0a, 0x05, 0x01},
	} {
		if err := projectCheckRequest(b, &authv3.CheckRequest{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustProject(t *testing.T, req *authv3.CheckRequest) *authv3.CheckRequest {
	t.Helper()
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var proj authv3.CheckRequest
	if err := projectCheckRequest(b, &proj); err != nil {
		t.Fatal(err)
	}
	return &proj
}

// FuzzProjectCheckRequest: for any bytes protobuf decodes as a
// CheckRequest, Check reads the same from the projection.
func FuzzProjectCheckRequest(f *testing.F) {
	for _, req := range projectionCases() {
		b, err := proto.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkProjection(t, b)
	})
}
