package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// checkPath is the upstream path every load request asks about; the
// nexgent policy requires the "signals" scope for it, which every bench
// key holds.
const checkPath = "/api/v1/trading-signals"

// invalidShare is the fraction of load requests carrying a well-formed but
// unknown key (they are denied with 401 / UNAUTHENTICATED).
const invalidShare = 0.10

// caller sends one request. valid says which key kind to send; it returns
// whether the answer was the one expected (allow for a valid key, 401 for
// an invalid one; a do-nothing server always allows, and is not checked),
// or an error when the request failed.
type caller func(ctx context.Context, valid bool, idx int) (expected bool, err error)

// loadResult is one closed-loop load point.
type loadResult struct {
	Hist       *Histogram
	Requests   uint64        // completed in the measured window
	Window     time.Duration // measured window
	Unexpected uint64        // answers other than expected
	Errors     uint64        // failed requests
	FirstErr   error
}

// add folds another slice of the same load point into r.
func (r *loadResult) add(o loadResult) {
	r.Hist.Merge(o.Hist)
	r.Requests += o.Requests
	r.Window += o.Window
	r.Unexpected += o.Unexpected
	r.Errors += o.Errors
	if r.FirstErr == nil {
		r.FirstErr = o.FirstErr
	}
}

// RPS is the throughput over the measured window.
func (r loadResult) RPS() float64 { return float64(r.Requests) / r.Window.Seconds() }

// loadSpec describes one load point.
type loadSpec struct {
	Concurrency int
	Warmup      time.Duration
	Duration    time.Duration
	Valid       int // how many distinct valid keys the caller can send
	Invalid     int // how many distinct invalid keys
}

// runLoad runs spec.Concurrency workers in a closed loop: each sends a
// request, waits for the answer, and sends the next, for Warmup+Duration.
// newCaller gives each worker its own caller.
// Requests started in the measured window (after Warmup) are counted and
// their latencies recorded. 90 % of requests carry a random valid key,
// 10 % a random invalid one.
func runLoad(ctx context.Context, spec loadSpec, newCaller func(worker int) caller) loadResult {
	start := time.Now()
	measureFrom := start.Add(spec.Warmup)
	end := measureFrom.Add(spec.Duration)
	type part struct {
		hist           *Histogram
		n, unexp, nerr uint64
		firstErr       error
	}
	parts := make([]part, spec.Concurrency)
	var wg sync.WaitGroup
	for w := range spec.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &parts[w]
			call := newCaller(w)
			p.hist = NewHistogram()
			rng := rand.New(rand.NewPCG(uint64(w)+1, uint64(start.UnixNano())))
			for ctx.Err() == nil {
				valid := rng.Float64() >= invalidShare
				var idx int
				if valid {
					idx = rng.IntN(spec.Valid)
				} else {
					idx = rng.IntN(spec.Invalid)
				}
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				ok, err := call(ctx, valid, idx)
				lat := time.Since(t0)
				if t0.Before(measureFrom) {
					continue
				}
				p.n++
				p.hist.Record(lat)
				switch {
				case err != nil:
					p.nerr++
					if p.firstErr == nil {
						p.firstErr = err
					}
				case !ok:
					p.unexp++
				}
			}
		}()
	}
	wg.Wait()
	res := loadResult{Hist: NewHistogram(), Window: spec.Duration}
	for _, p := range parts {
		res.Hist.Merge(p.hist)
		res.Requests += p.n
		res.Unexpected += p.unexp
		res.Errors += p.nerr
		if res.FirstErr == nil {
			res.FirstErr = p.firstErr
		}
	}
	return res
}

// grpcLoad holds the client connections and the prebuilt requests of a
// gRPC Check load.
type grpcLoad struct {
	conns   []*grpc.ClientConn
	clients []authv3.AuthorizationClient
	valid   []*authv3.CheckRequest
	invalid []*authv3.CheckRequest
	check   bool // verify the answers (false for the do-nothing server)
}

// checkRequest builds a CheckRequest shaped like Envoy's: the HTTP
// attributes with the pseudo-headers and the usual proxy headers in the
// headers map, source and destination socket addresses.
func checkRequest(key string, n int) *authv3.CheckRequest {
	sock := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	reqID := fmt.Sprintf("bench-%08x-0000-4000-8000-%012x", n, n)
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sock("10.1.2.3", 43210)},
		Destination: &authv3.AttributeContext_Peer{Address: sock("10.1.2.4", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "1234567890",
			Method:   "GET",
			Path:     checkPath,
			Host:     "api.nexgent.example",
			Scheme:   "http",
			Protocol: "HTTP/1.1",
			Headers: map[string]string{
				":authority":        "api.nexgent.example",
				":method":           "GET",
				":path":             checkPath,
				":scheme":           "http",
				"accept":            "application/json",
				"user-agent":        "nexgent-client/1.0",
				"x-forwarded-proto": "http",
				"x-request-id":      reqID,
				"x-api-key":         key,
			},
		}},
	}}
}

// newGRPCLoad dials conns client connections to addr and prebuilds one
// request per key, so the load loop only marshals and sends.
func newGRPCLoad(addr string, conns int, valid, invalid []string, check bool) (*grpcLoad, error) {
	g := &grpcLoad{check: check}
	for range conns {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(newStatusCodec())))
		if err != nil {
			g.Close()
			return nil, err
		}
		cc.Connect()
		g.conns = append(g.conns, cc)
		g.clients = append(g.clients, authv3.NewAuthorizationClient(cc))
	}
	for i, k := range valid {
		g.valid = append(g.valid, checkRequest(k, i))
	}
	for i, k := range invalid {
		g.invalid = append(g.invalid, checkRequest(k, len(valid)+i))
	}
	return g, nil
}

func (g *grpcLoad) Close() {
	for _, cc := range g.conns {
		_ = cc.Close()
	}
}

// caller returns a caller for worker w, which always uses connection
// w % conns: the workers are spread evenly over the connections.
func (g *grpcLoad) caller(w int) caller {
	client := g.clients[w%len(g.clients)]
	return func(ctx context.Context, valid bool, idx int) (bool, error) {
		var req *authv3.CheckRequest
		want := codes.Unauthenticated
		if valid {
			req, want = g.valid[idx], codes.OK
		} else {
			req = g.invalid[idx]
		}
		resp, err := client.Check(ctx, req)
		if err != nil {
			return false, err
		}
		return !g.check || codes.Code(resp.GetStatus().GetCode()) == want, nil
	}
}

// runGRPC runs one load point against a gRPC Check server.
func runGRPC(ctx context.Context, g *grpcLoad, spec loadSpec) loadResult {
	spec.Valid, spec.Invalid = len(g.valid), len(g.invalid)
	return runLoad(ctx, spec, g.caller)
}

// httpLoad sends forwardAuth requests as Traefik does.
type httpLoad struct {
	client  *http.Client
	url     string
	valid   []string
	invalid []string
	check   bool
}

func newHTTPLoad(addr string, concurrency int, valid, invalid []string, check bool) *httpLoad {
	return &httpLoad{client: keepAliveClient(concurrency), url: "http://" + addr + "/auth", valid: valid, invalid: invalid, check: check}
}

// keepAliveClient is an HTTP client that keeps a connection per caller.
func keepAliveClient(concurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        concurrency * 2,
		MaxIdleConnsPerHost: concurrency * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

func (h *httpLoad) Close() { h.client.CloseIdleConnections() }

func (h *httpLoad) call(ctx context.Context, valid bool, idx int) (bool, error) {
	var key string
	want := http.StatusUnauthorized
	if valid {
		key, want = h.valid[idx], http.StatusOK
	} else {
		key = h.invalid[idx]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("X-Forwarded-Method", "GET")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "api.nexgent.example")
	req.Header.Set("X-Forwarded-Uri", checkPath)
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	req.Header.Set("X-Api-Key", key)
	resp, err := h.client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return !h.check || resp.StatusCode == want, nil
}

// runHTTP runs one load point against a forwardAuth endpoint.
func runHTTP(ctx context.Context, h *httpLoad, spec loadSpec) loadResult {
	spec.Valid, spec.Invalid = len(h.valid), len(h.invalid)
	return runLoad(ctx, spec, func(int) caller { return h.call })
}
