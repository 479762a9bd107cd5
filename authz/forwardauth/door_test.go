package forwardauth

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/policy"
)

// nexgentDoor is a door over the Nexgent example policy and a store that
// knows no key, trusting forwarded headers from the trusted ranges.
func nexgentDoor(tb testing.TB, trusted []string) *Door {
	tb.Helper()
	p, err := policy.Load("../../examples/policies/nexgent.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	ranges, err := ParseTrustedProxies(trusted)
	if err != nil {
		tb.Fatal(err)
	}
	return New(authz.New(authz.Options{Keys: emptyStore{}, Policy: p}), ranges, FamilyAuto)
}

// TestFormPOSTWithoutRawHeaders: a request built in memory, which has no
// raw header block to walk, still has its Content-Type read, so a form
// POST is refused as it is off the wire.
func TestFormPOSTWithoutRawHeaders(t *testing.T) {
	h := nexgentDoor(t, DefaultTrustedProxies)
	for ct, want := range map[string]int{"application/x-www-form-urlencoded": 400, "application/json": 401} {
		var req fasthttp.Request
		req.Header.SetMethod(fasthttp.MethodGet)
		req.SetRequestURI("/auth")
		req.Header.Set("X-Forwarded-Method", "POST")
		req.Header.Set("X-Forwarded-Uri", "/api/v1/trading-signals")
		req.Header.SetContentType(ct)
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1234}, nil)
		h.Serve(&ctx)
		if got := ctx.Response.StatusCode(); got != want {
			t.Errorf("POST with Content-Type %s: %d %s; want %d", ct, got, ctx.Response.Body(), want)
		}
	}
}
