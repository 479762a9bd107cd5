package forwardauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/rs/zerolog"
)

// Limits of the HTTP port (forwardAuth door, probes, metrics).
const (
	// HTTPReadTimeout bounds reading one request, headers and body, from
	// its first byte (or from the connection's opening): a slow client is
	// cut off after it.
	HTTPReadTimeout = 10 * time.Second
	// HTTPIdleTimeout closes a keep-alive connection idle this long.
	HTTPIdleTimeout = 120 * time.Second
	// HTTPMaxHeaderBytes bounds the request line and headers together; a
	// request over it gets 431. 64 KiB is above what Envoy forwards by
	// default (max_request_headers_kb 60) and twice nginx's default header
	// buffers (4 x 8k); Traefik forwards every client header, big cookies
	// included.
	HTTPMaxHeaderBytes = 64 << 10
)

// Server is the HTTP port's server.
type Server interface {
	// Serve accepts connections on ln until Shutdown or Close.
	Serve(ln net.Listener) error
	// Shutdown stops accepting, closes idle connections, and waits for
	// in-flight requests until ctx ends.
	Shutdown(ctx context.Context) error
	// Close closes every connection at once.
	Close() error
}

// HTTP stacks the port can run on (the measurement behind the choice is in
// docs/design.md).
const (
	StackNetHTTP  = "net/http"
	StackFastHTTP = "fasthttp"
)

// NewHTTPServer returns the server for the HTTP port on stack: requests
// for /auth and every path below it go straight to door, every other
// request (probes, metrics) to other. The door is routed on the path as
// received, not through a ServeMux: a mux would answer a path it cleans
// (such as /auth//x, which Envoy's HTTP mode sends for //x) with a
// redirect, which Envoy takes as a denial, instead of letting the policy
// refuse the empty segment as the gRPC door does. The server's own
// messages (a client's connection errors) go to log at debug level; a
// panic while serving a request is logged at error level and answered
// 500, and the server goes on.
func NewHTTPServer(stack string, door *Door, other http.Handler, log zerolog.Logger) (Server, error) {
	switch stack {
	case StackNetHTTP, "":
		return newStdServer(door, other, log), nil
	case StackFastHTTP:
		return newFastServer(door, other, log), nil
	}
	return nil, fmt.Errorf("HTTP stack %q: must be %s or %s", stack, StackNetHTTP, StackFastHTTP)
}

// panicBody is the answer to a request whose handler panicked.
const panicBody = `{"error":"internal error"}`

// badTargetBody is the answer to a target the probes cannot parse.
const badTargetBody = `{"error":"bad request target"}`
