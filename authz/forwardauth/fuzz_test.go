package forwardauth

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/keystore"
)

// FuzzForwardAuth: arbitrary forwarded method, URI and credential headers
// get a bounded answer from the real handler, never a panic or a 5xx.
func FuzzForwardAuth(f *testing.F) {
	f.Add("GET", "/api/v1/agents?x=1", "nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6", "")
	f.Add("POST", "/api/v1/%2e%2e/x", "", "Bearer nex_x")
	f.Add("", "", "", "")
	f.Add("get", "no-slash", "a,b", "Bearer a, Bearer b")
	h := nexgentDoor(f, []string{"192.0.2.0/24"})
	peer := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1234}
	f.Fuzz(func(t *testing.T, method, uri, xkey, auth string) {
		// The request as a proxy would send it, parsed by the server's own
		// parser; what it refuses gets its 400 before the door runs.
		raw := "GET /auth HTTP/1.1\r\nHost: x\r\nX-Forwarded-Method: " + method + "\r\nX-Forwarded-Uri: " + uri +
			"\r\nX-Api-Key: " + xkey + "\r\nAuthorization: " + auth + "\r\n\r\n"
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			return
		}
		var ctx fasthttp.RequestCtx
		ctx.Init(&req, peer, nil)
		h.Serve(&ctx)
		switch code := ctx.Response.StatusCode(); code {
		case 200, 400, 401, 403:
		default:
			t.Fatalf("status %d for %q %q", code, method, uri)
		}
		if ctx.Response.StatusCode() == 200 && len(ctx.Response.Header.Peek("X-Auth-Key-Id")) != 0 {
			t.Fatal("an empty store allowed a key")
		}
	})
}

// emptyStore knows no key.
type emptyStore struct{}

func (emptyStore) Lookup(keystore.Hash) (keystore.LookupResult, error) {
	return keystore.LookupResult{}, keystore.ErrNotFound
}

func (emptyStore) Revision() uint64 { return 0 }
