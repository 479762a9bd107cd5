package forwardauth

import (
	"bufio"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkServe is the door's own work for a Traefik-form request with an
// unknown key (the decision's store lookup is the empty store's): reading
// the forwarded headers, the decision, the 401 answer.
func BenchmarkServe(b *testing.B) {
	h := nexgentDoor(b, DefaultTrustedProxies)
	raw := "GET /auth HTTP/1.1\r\nHost: 127.0.0.1:9192\r\nUser-Agent: Go-http-client/1.1\r\nX-Forwarded-Method: GET\r\n" +
		"X-Forwarded-Uri: /api/v1/trading-signals\r\nX-Forwarded-Host: api.example.com\r\nX-Forwarded-Proto: https\r\n" +
		"X-Forwarded-For: 10.0.0.7\r\nX-Api-Key: nex_" + strings.Repeat("a", 32) + "\r\nAccept-Encoding: gzip\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	peer := &net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1234}
	var ctx fasthttp.RequestCtx
	b.ReportAllocs()
	for b.Loop() {
		ctx.Init(&req, peer, nil)
		h.Serve(&ctx)
		if ctx.Response.StatusCode() != 401 {
			b.Fatalf("status %d", ctx.Response.StatusCode())
		}
	}
}
