package main

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc-go's health service whose Watch streams end when
// the process drains, so GracefulStop is not held up by watchers (grpc-go's
// own Watch only ends when the client leaves).
type healthServer struct {
	*health.Server
	done chan struct{}
}

func newHealthServer() *healthServer {
	return &healthServer{Server: health.NewServer(), done: make(chan struct{})}
}

// Watch streams status changes until the client leaves or endWatches.
func (h *healthServer) Watch(req *healthgrpc.HealthCheckRequest, stream healthgrpc.Health_WatchServer) error {
	errc := make(chan error, 1)
	go func() { errc <- h.Server.Watch(req, stream) }()
	select {
	case err := <-errc:
		return err
	case <-h.done:
		return status.Error(codes.Unavailable, "server shutting down")
	}
}

// endWatches ends every Watch stream; call after Shutdown has sent
// NOT_SERVING to them.
func (h *healthServer) endWatches() { close(h.done) }
