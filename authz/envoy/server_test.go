package envoy

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// BenchmarkEnvoyResponse builds the CheckResponse of an allowed request.
func BenchmarkEnvoyResponse(b *testing.B) {
	d := authz.Decision{Kind: authz.Allow, Key: &keystore.Key{ID: uuid.NewString(), Prefix: "nex_a1b2", Scopes: []string{"signals"}}, Sources: authz.FromAPIKey, Strip: true}
	b.ReportAllocs()
	for b.Loop() {
		_ = Response(&d)
	}
}

// fixedKeys is a KeyLookup that knows no key, at a settable revision.
type fixedKeys struct{ rev uint64 }

func (fixedKeys) Lookup(keystore.Hash) (keystore.LookupResult, error) {
	return keystore.LookupResult{}, keystore.ErrNotFound
}

func (k *fixedKeys) Revision() uint64 { return k.rev }

// TestAllowResponseFollowsTheRecord: a reused allow response is rebuilt
// when its key record changes, and the cache keeps one entry per key.
func TestAllowResponseFollowsTheRecord(t *testing.T) {
	pol, err := policy.Load("../../examples/policies/nexgent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(authz.New(authz.Options{Keys: &fixedKeys{rev: 1}, Policy: pol}))
	k1 := &keystore.Key{ID: "k", Prefix: "nex_a1b2", Scopes: []string{"signals"}}
	d := authz.Decision{Kind: authz.Allow, Key: k1, Sources: authz.FromAPIKey, Strip: true}
	r1 := srv.allow.Get(&d)
	if again := srv.allow.Get(&d); again != r1 {
		t.Fatal("same record: response not reused")
	}
	for i := 0; i < 100; i++ {
		k := &keystore.Key{ID: "k", Prefix: "nex_a1b2", Scopes: []string{"signals", fmt.Sprint(i)}}
		d.Key = k
		r := wireDecoded(t, srv.allow.Get(&d))
		want := "signals," + fmt.Sprint(i)
		var got string
		for _, h := range r.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == authz.HeaderScopes {
				got = h.GetHeader().GetValue()
			}
		}
		if got != want {
			t.Fatalf("record %d: x-auth-scopes = %q; want %q (stale response)", i, got, want)
		}
	}
	if n := srv.allow.Len(); n != 1 {
		t.Fatalf("cache holds %d entries for one key; want 1", n)
	}
}

// wireDecoded returns r as a client sees it: encoded, then decoded. A
// cached allow response is pre-encoded and has no fields of its own.
func wireDecoded(t *testing.T, r *authv3.CheckResponse) *authv3.CheckResponse {
	t.Helper()
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	out := new(authv3.CheckResponse)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// BenchmarkLimitHeaders adds a limited key's RateLimit fields to its
// cached allow response, as Check does for every such request.
func BenchmarkLimitHeaders(b *testing.B) {
	d := authz.Decision{Kind: authz.Allow, Key: &keystore.Key{ID: uuid.NewString(), Prefix: "nex_a1b2", Scopes: []string{"signals"}}, Sources: authz.FromAPIKey, Strip: true}
	d.Limit.RateLimit = keystore.RateLimit{Limit: 100, Duration: time.Minute}
	d.ShowLimit = true
	resp, err := preEncoded(Response(&d))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = withLimitHeaders(resp, &d)
	}
}

// TestLimitHeadersWire: the hand-made encoding of the RateLimit fields is
// byte for byte what protobuf makes of the same message, for short values
// and for ones whose lengths take several varint bytes.
func TestLimitHeadersWire(t *testing.T) {
	for _, n := range []int{0, 1, 60, 127, 128, 300, 20000} {
		k, v := "ratelimit", strings.Repeat("r", n)
		want, err := proto.Marshal(&authv3.CheckResponse{HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			ResponseHeadersToAdd: []*corev3.HeaderValueOption{header(authz.HeaderRateLimitPolicy, `"key";q=100;w=60`), header(k, v)},
		}}})
		if err != nil {
			t.Fatal(err)
		}
		got := appendResponseHeaders([]byte("pre"), respHeader{authz.HeaderRateLimitPolicy, []byte(`"key";q=100;w=60`)}, respHeader{k, []byte(v)})
		if string(got[:3]) != "pre" || !bytes.Equal(got[3:], want) {
			t.Fatalf("value of %d bytes:\n got %x\nwant %x", n, got[3:], want)
		}
	}
}
