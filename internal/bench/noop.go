package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"

	"github.com/extauthz/extauthz/authz/forwardauth"
)

// The do-nothing servers are the baselines: the same grpc-go and
// go-control-plane as extauthz, and a do-nothing handler on the HTTP port's
// own fasthttp server (forwardauth.NewHTTPServer), the ceiling of the
// door's HTTP stack. Each runs as a separate process (the bench binary re-executed
// with a hidden flag) so that it competes for the CPU exactly as a sidecar
// does. They log the same "listening" and "started" lines as extauthz, so
// childproc.Start handles both alike.
const (
	flagNoopGRPC = "-serve-noop-grpc"
	flagNoopHTTP = "-serve-noop-http"
)

// noopAuthz answers every Check with a fixed OK, allocated once.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
	ok *authv3.CheckResponse
}

func (s *noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return s.ok, nil
}

// serveNoop runs a do-nothing server until SIGTERM/SIGINT. kind is
// flagNoopGRPC or flagNoopHTTP; addr is where to listen.
func serveNoop(kind, addr string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// For comparing profiles with a sidecar's (see profile_test.go).
	if pa := os.Getenv("BENCH_PPROF_ADDR"); pa != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.ListenAndServe(pa, mux) }()
	}
	logLine := func(fields map[string]string) {
		b, _ := json.Marshal(fields)
		fmt.Fprintln(os.Stderr, string(b))
	}
	switch kind {
	case flagNoopGRPC:
		// Same server options as extauthz's gRPC front door.
		srv := grpc.NewServer(
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
			grpc.MaxRecvMsgSize(4<<20),
		)
		authv3.RegisterAuthorizationServer(srv, &noopAuthz{ok: &authv3.CheckResponse{
			Status:       &rpcstatus.Status{Code: 0},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
		}})
		logLine(map[string]string{"message": "listening", "server": "grpc", "addr": ln.Addr().String()})
		go func() { <-ctx.Done(); srv.Stop() }()
		logLine(map[string]string{"message": "started"})
		return srv.Serve(ln)
	case flagNoopHTTP:
		// The door's own server, with its limits, answering 200 to all.
		srv := forwardauth.NewHTTPServer(func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(http.StatusOK) }, zerolog.Nop())
		logLine(map[string]string{"message": "listening", "server": "http", "addr": ln.Addr().String()})
		go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
		logLine(map[string]string{"message": "started"})
		return srv.Serve(ln)
	}
	return fmt.Errorf("unknown server kind %q", kind)
}
