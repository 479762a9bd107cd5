package forwardauth

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// FuzzForwardAuth: arbitrary forwarded method, URI and credential headers
// get a bounded answer from the real handler, never a panic or a 5xx, and
// the same answer on both HTTP stacks when both parse the request.
func FuzzForwardAuth(f *testing.F) {
	f.Add("GET", "/api/v1/agents?x=1", "nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6", "")
	f.Add("POST", "/api/v1/%2e%2e/x", "", "Bearer nex_x")
	f.Add("", "", "", "")
	f.Add("get", "no-slash", "a,b", "Bearer a, Bearer b")
	p, err := policy.Load("../../examples/policies/nexgent.yaml")
	if err != nil {
		f.Fatal(err)
	}
	a := authz.New(authz.Options{Keys: emptyStore{}, Policy: p})
	trusted, _ := ParseTrustedProxies([]string{"192.0.2.0/24"})
	h := New(a, trusted, FamilyAuto)
	peer := &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1234}
	f.Fuzz(func(t *testing.T, method, uri, xkey, auth string) {
		// The request as a proxy would send it, parsed by each server's
		// own parser; what one refuses gets its 400 before the door runs.
		raw := "GET /auth HTTP/1.1\r\nHost: x\r\nX-Forwarded-Method: " + method + "\r\nX-Forwarded-Uri: " + uri +
			"\r\nX-Api-Key: " + xkey + "\r\nAuthorization: " + auth + "\r\n\r\n"
		fastCode, stdCode := -1, -1
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err == nil {
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, peer, nil)
			h.serveFast(&ctx)
			fastCode = ctx.Response.StatusCode()
			if fastCode == 200 && len(ctx.Response.Header.Peek("X-Auth-Key-Id")) != 0 {
				t.Fatal("an empty store allowed a key")
			}
		}
		if r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw))); err == nil {
			r.RemoteAddr = peer.String()
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			stdCode = w.Code
			if stdCode == 200 && w.Header().Get("X-Auth-Key-Id") != "" {
				t.Fatal("an empty store allowed a key")
			}
		}
		for _, code := range []int{fastCode, stdCode} {
			switch code {
			case -1, 200, 400, 401, 403:
			default:
				t.Fatalf("status %d for %q %q", code, method, uri)
			}
		}
		if fastCode != -1 && stdCode != -1 && fastCode != stdCode {
			t.Fatalf("fasthttp %d, net/http %d for %q %q %q %q", fastCode, stdCode, method, uri, xkey, auth)
		}
	})
}

// emptyStore knows no key.
type emptyStore struct{}

func (emptyStore) Lookup(keystore.Hash) (keystore.LookupResult, error) {
	return keystore.LookupResult{}, keystore.ErrNotFound
}

func (emptyStore) Revision() uint64 { return 0 }
