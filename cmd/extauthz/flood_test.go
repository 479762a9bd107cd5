package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// heapInuse returns the process's heap in use after a forced collection,
// read from its pprof heap profile (gc=1 runs the collector first), so
// that what is measured is what the process holds, not garbage.
func heapInuse(t *testing.T, pprofAddr string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`# HeapInuse = (\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no HeapInuse in the heap profile:\n%.500s", b)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

// floodStreams opens one HTTP/2 connection to addr and starts streams
// streams, each a gRPC Check call whose header block holds headerBytes of
// one header value, sent in CONTINUATION frames, and never any DATA. It
// returns the connection, left open, and how many streams it sent in full
// before the server refused or closed it.
func floodStreams(t *testing.T, addr string, streams, headerBytes int) (net.Conn, int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	bw := bufio.NewWriterSize(conn, 64<<10)
	if _, err := io.WriteString(bw, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(bw, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Read (and drop) whatever the server sends, so that it never blocks
	// on a full socket and its refusals are consumed.
	go func() { _, _ = io.Copy(io.Discard, conn) }()

	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	big := strings.Repeat("a", headerBytes)
	sent := 0
	for i := range streams {
		block.Reset()
		for _, f := range []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":path", Value: "/envoy.service.auth.v3.Authorization/Check"}, {Name: ":authority", Value: "flood"},
			{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
			{Name: "x-flood", Value: big, Sensitive: true},
		} {
			if err := enc.WriteField(f); err != nil {
				t.Fatal(err)
			}
		}
		frag := block.Bytes()
		const max = 16 << 10
		first := frag[:min(max, len(frag))]
		rest := frag[len(first):]
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: first, EndHeaders: len(rest) == 0})
		for err == nil && len(rest) > 0 {
			n := min(max, len(rest))
			err = fr.WriteContinuation(uint32(2*i+1), n == len(rest), rest[:n])
			rest = rest[n:]
		}
		if err == nil {
			err = bw.Flush()
		}
		if err != nil {
			break // the server closed the connection: refused
		}
		sent++
	}
	return conn, sent
}

// TestGRPCStreamFlood: one connection opening 60 Check streams with 4 MB
// of headers each, and never sending DATA, does not make the sidecar hold
// the headers (its gRPC server limits header lists and concurrent
// streams), and Check keeps answering on other connections meanwhile.
func TestGRPCStreamFlood(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	pprofAddr := freeAddr(t)
	p := start(t, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol, "--pprof-addr", pprofAddr,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	c := authv3.NewAuthorizationClient(dial(t, p.addrs["grpc"]))
	if _, err := envoyCheck(t, c, "GET", "/healthz", nil); err != nil {
		t.Fatalf("Check before the flood: %v", err)
	}
	before := heapInuse(t, pprofAddr)

	conn, sent := floodStreams(t, p.addrs["grpc"], 60, 4<<20)
	for i := range 20 {
		resp, err := envoyCheck(t, c, "GET", "/healthz", nil)
		if err != nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("Check %d during the flood: %v %v", i, resp, err)
		}
	}
	grown := heapInuse(t, pprofAddr) - before
	t.Logf("flood: %d of 60 streams sent in full; heap in use grew by %.1f MiB", sent, float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Errorf("the sidecar holds %.0f MiB more after the flood; want under 64 MiB", float64(grown)/(1<<20))
	}
	_ = conn.SetDeadline(time.Now())
}
