package forwardauth

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/policy"
)

// benchRequest is a Traefik-form request with an unknown key.
const benchRequest = "GET /auth HTTP/1.1\r\nHost: 127.0.0.1:9192\r\nUser-Agent: Go-http-client/1.1\r\nX-Forwarded-Method: GET\r\n" +
	"X-Forwarded-Uri: /api/v1/trading-signals\r\nX-Forwarded-Host: api.example.com\r\nX-Forwarded-Proto: https\r\n" +
	"X-Forwarded-For: 10.0.0.7\r\nX-Api-Key: nex_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nAccept-Encoding: gzip\r\n\r\n"

// BenchmarkServe is the door's own work for a Traefik-form request with an
// unknown key (the decision's store lookup is the empty store's): reading
// the forwarded headers, the decision, the 401 answer; on each stack, the
// request already parsed.
func BenchmarkServe(b *testing.B) {
	p, err := policy.Load("../../examples/policies/nexgent.yaml")
	if err != nil {
		b.Fatal(err)
	}
	trusted, _ := ParseTrustedProxies(DefaultTrustedProxies)
	h := New(authz.New(authz.Options{Keys: emptyStore{}, Policy: p}), trusted, FamilyAuto)
	b.Run("fasthttp", func(b *testing.B) {
		var req fasthttp.Request
		if err := req.Read(bufio.NewReader(strings.NewReader(benchRequest))); err != nil {
			b.Fatal(err)
		}
		peer := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1234}
		var ctx fasthttp.RequestCtx
		b.ReportAllocs()
		for b.Loop() {
			ctx.Init(&req, peer, nil)
			h.serveFast(&ctx)
			if ctx.Response.StatusCode() != 401 {
				b.Fatalf("status %d", ctx.Response.StatusCode())
			}
		}
	})
	b.Run("net/http", func(b *testing.B) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(benchRequest)))
		if err != nil {
			b.Fatal(err)
		}
		req.RemoteAddr = "127.0.0.1:1234"
		w := &discardWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.status != 401 {
				b.Fatalf("status %d", w.status)
			}
		}
	})
}

// discardWriter is a ResponseWriter that keeps the status and drops the
// body, as cheap as the server's own (which reuses its header map too).
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
