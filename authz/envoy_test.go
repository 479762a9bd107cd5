package authz_test

import (
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/envoy"

	"context"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// TestPreEncodedAllowResponses: allow responses served from their cached
// bytes (envoy.Server.Codec) decode to exactly the response built for that
// key, on the first call and on every later one, for each of several keys,
// and a new store revision stops serving the old bytes.
func TestPreEncodedAllowResponses(t *testing.T) {
	e := newEnv(t, "nexgraph.yaml")
	type minted struct {
		raw  string
		want *authv3.CheckResponse
	}
	var keys []minted
	for _, o := range []keyOpts{{scopes: []string{"read"}, project: "p1"}, {scopes: []string{"read", "write"}, project: "p1", user: "u1"}, {scopes: []string{"read"}, project: "p1", user: "u2"}} {
		raw, _ := e.mint(o)
		r := authz.Request{Frontend: envoy.Frontend, Method: "GET", Path: "/api/v1/projects/p1/graph", Host: "api.example.com", Authorization: []string{"Bearer " + raw}}
		d := e.a.Check(context.Background(), &r)
		if d.Kind != authz.Allow {
			t.Fatalf("key %+v: decision %v; want Allow", o, d.Kind)
		}
		keys = append(keys, minted{raw, envoy.Response(&d)})
	}
	check := func(raw string) *authv3.CheckResponse {
		t.Helper()
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/api/v1/projects/p1/graph", Host: "api.example.com",
				Headers: map[string]string{"authorization": "Bearer " + raw},
			}},
		}}
		resp, err := e.grpc.Check(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for round := range 3 {
		for i, k := range keys {
			if got := check(k.raw); !proto.Equal(got, k.want) {
				t.Fatalf("round %d, key %d: got\n%v\nwant\n%v", round, i, got, k.want)
			}
		}
	}
	// After a change (a new revision), the next answer is built afresh.
	_, k := e.mint(keyOpts{scopes: []string{"read"}, project: "p1"})
	if _, err := e.store.RevokeKey(k.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if got := check(keys[0].raw); !proto.Equal(got, keys[0].want) {
		t.Fatalf("after a new revision: got\n%v\nwant\n%v", got, keys[0].want)
	}
}

// TestCachedHTTPAllowHeaders: the HTTP door's cached allow headers stay
// per key on repeated calls, and the two credential sources strip
// different headers for the same key.
func TestCachedHTTPAllowHeaders(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	type minted struct{ raw, id, scopes string }
	var keys []minted
	for _, scopes := range [][]string{{"signals"}, {"agents", "signals"}, {"full_access"}} {
		raw, k := e.mint(keyOpts{scopes: scopes})
		keys = append(keys, minted{raw, k.ID, strings.Join(scopes, ",")})
	}
	for round := range 3 {
		for i, k := range keys {
			for _, hdr := range []map[string]string{{"X-API-Key": k.raw}, {"Authorization": "Bearer " + k.raw}} {
				got := e.viaTraefik("GET", "/api/v1/trading-signals", hdr)
				wantRemove := "x-auth-project-id,x-auth-user-id,x-api-key"
				if _, bearer := hdr["Authorization"]; bearer {
					wantRemove = "x-auth-project-id,x-auth-user-id,authorization"
				}
				if got.status != 200 || got.headers["x-auth-key-id"] != k.id || got.headers["x-auth-scopes"] != k.scopes || strings.Join(got.remove, ",") != wantRemove {
					t.Fatalf("round %d, key %d, %v: %d key-id %q scopes %q remove %q; want %s %s %s",
						round, i, hdr, got.status, got.headers["x-auth-key-id"], got.headers["x-auth-scopes"], strings.Join(got.remove, ","), k.id, k.scopes, wantRemove)
				}
			}
		}
	}
}
