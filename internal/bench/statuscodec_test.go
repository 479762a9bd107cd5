package main

import (
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/envoy"
	"github.com/extauthz/extauthz/keystore"
)

// answers are encoded CheckResponses as the sidecar sends them: allowed
// (with and without a limited key's RateLimit fields), denied, refused
// for the rate limit, and one with two status fields, which protobuf
// merges.
func answers(t testing.TB) [][]byte {
	key := &keystore.Key{ID: "k", Prefix: "nex_a1b2", Scopes: []string{"signals"}}
	limited := authz.Decision{Kind: authz.Allow, Key: key, Sources: authz.FromAPIKey, Strip: true, ShowLimit: true}
	limited.Limit.RateLimit = keystore.RateLimit{Limit: 100, Duration: time.Minute}
	refused := authz.Decision{Kind: authz.RateLimited, Status: 429, Body: []byte(`{"error":"slow down"}`), Key: key}
	refused.Limit = limited.Limit
	var out [][]byte
	for _, d := range []authz.Decision{
		{Kind: authz.Allow, Key: key, Sources: authz.FromAPIKey, Strip: true},
		limited,
		{Kind: authz.Unauthenticated, Status: 401, Body: []byte(`{"error":"no"}`)},
		refused,
	} {
		b, err := proto.Marshal(envoy.Response(&d))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, append(append([]byte(nil), out[2]...), out[3]...), nil)
}

// TestStatusCodeAsProtobufReadsIt: the load's partial decoding finds the
// code protobuf finds, in every kind of answer.
func TestStatusCodeAsProtobufReadsIt(t *testing.T) {
	for i, b := range answers(t) {
		var want authv3.CheckResponse
		if err := proto.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got, err := statusCode(b)
		if err != nil || got != want.GetStatus().GetCode() {
			t.Fatalf("answer %d: code %d, %v; protobuf reads %d", i, got, err, want.GetStatus().GetCode())
		}
	}
	if _, err := statusCode([]byte{0x0a, 0x05, 0x08}); err == nil {
		t.Fatal("a truncated answer was read without an error")
	}
}

// FuzzStatusCode: whatever protobuf decodes, statusCode decodes to the
// same code.
func FuzzStatusCode(f *testing.F) {
	for _, b := range answers(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want authv3.CheckResponse
		if proto.Unmarshal(b, &want) != nil {
			return
		}
		if got, err := statusCode(b); err != nil || got != want.GetStatus().GetCode() {
			t.Fatalf("%x: code %d, %v; protobuf reads %d", b, got, err, want.GetStatus().GetCode())
		}
	})
}
