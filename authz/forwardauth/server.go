package forwardauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/extauthz/extauthz/backoff"
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
	// request over it gets 431. It is also the read buffer every open
	// connection holds, idle ones included, so it is not larger: 64 KiB is
	// above what Envoy forwards by default (max_request_headers_kb 60) and
	// twice nginx's default header buffers (4 x 8k), and Traefik forwards
	// every client header, big cookies included.
	HTTPMaxHeaderBytes = 64 << 10
	// httpBodyPrefetch is how much of a request body is read before the
	// handler runs (probes and metrics; the door's requests are answered
	// without their body, see bodyless). The server discards up to 256 KiB
	// of an unread body to keep the connection, and closes it past that,
	// as net/http does.
	httpBodyPrefetch = 8 << 10
)

// HTTPServer is the HTTP port's server: fasthttp, with the port's limits.
type HTTPServer struct {
	*fasthttp.Server
}

// NewHTTPServer returns the server for the HTTP port, serving h (see
// Door.Handler). Its own messages (a client's connection errors)
// go to log at debug level; a panic while serving a request is logged at
// error level and answered 500, and the server goes on.
func NewHTTPServer(h fasthttp.RequestHandler, log zerolog.Logger) *HTTPServer {
	return &HTTPServer{&fasthttp.Server{
		Handler:                       recoverPanics(h, log),
		HeaderReceived:                bodyless,
		Logger:                        serverLog{log},
		ReadTimeout:                   HTTPReadTimeout,
		IdleTimeout:                   HTTPIdleTimeout,
		ReadBufferSize:                HTTPMaxHeaderBytes,
		StreamRequestBody:             true,
		MaxRequestBodySize:            httpBodyPrefetch,
		DisablePreParseMultipartForm:  true,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true,
	}}
}

// Serve accepts connections on ln until Shutdown. An accept error the
// listener calls temporary (out of file descriptors, for one) is retried
// after a pause, as net/http does; fasthttp would return it and stop
// serving.
func (s *HTTPServer) Serve(ln net.Listener) error {
	return s.Server.Serve(retryListener{ln})
}

// Shutdown closes the listeners, answers in-flight requests with
// Connection: close, closes idle connections, and waits for the rest
// until ctx ends.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	return s.ShutdownWithContext(ctx)
}

// Close does nothing more: fasthttp cannot cut active connections, and
// the process exits right after a drain that timed out.
func (s *HTTPServer) Close() error { return nil }

// bodyless lets the door answer a request without waiting for its body,
// which it never reads. fasthttp reads the first bytes of a declared body
// before it calls the handler, and nginx's auth_request subrequest
// inherits the client's Content-Length but sends no body unless the
// configuration clears it: the door would wait for ReadTimeout and answer
// 408. So a door request that declares a body is treated as bodyless and
// its connection is closed after the answer, so whatever body does come
// is never read as a request. (Chunked bodies are not read ahead; the
// server discards them after the answer.)
func bodyless(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if h.ContentLength() > 0 && isDoorPath(h.RequestURI()) {
		h.SetContentLength(0)
		h.SetConnectionClose()
	}
	return fasthttp.RequestConfig{}
}

// recoverPanics answers 500 to a request whose handler panicked (fasthttp
// would let the panic end the process; net/http recovers per request),
// logs it with its stack, and closes the connection.
func recoverPanics(h fasthttp.RequestHandler, log zerolog.Logger) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if p := recover(); p != nil {
				log.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("panic serving an HTTP request")
				ctx.Response.Reset()
				ctx.Error(`{"error":"internal error"}`, fasthttp.StatusInternalServerError)
				ctx.SetContentType("application/json")
				ctx.SetConnectionClose()
			}
		}()
		h(ctx)
	}
}

// Pauses between retries of a temporary accept error: from 5 ms, doubling
// up to 1 s, as net/http's Server.Serve does (jittered, package backoff).
const (
	acceptRetryBase = 5 * time.Millisecond
	acceptRetryMax  = time.Second
)

// retryListener retries temporary accept errors after a pause.
type retryListener struct{ net.Listener }

func (l retryListener) Accept() (net.Conn, error) {
	pause := backoff.Backoff{Base: acceptRetryBase, Max: acceptRetryMax}
	for {
		c, err := l.Listener.Accept()
		var ne interface{ Temporary() bool }
		if err == nil || !errors.As(err, &ne) || !ne.Temporary() {
			return c, err
		}
		time.Sleep(pause.Next())
	}
}

// serverLog logs the HTTP server's messages without their arguments:
// fasthttp quotes the offending request bytes in some of them (a header
// line without a colon, for one), and those may hold a key. Every one is a
// client's connection error, which the client was answered (400, 408,
// 431) or cut off for.
type serverLog struct{ log zerolog.Logger }

func (l serverLog) Printf(format string, _ ...any) {
	l.log.Debug().Str("detail", format).Msg("http connection error")
}

// netHTTPHandler serves a net/http handler (probes, metrics) on the
// fasthttp server; those are not on the hot path. They take no body: the
// handler sees at most the prefetched part, and the server discards the
// rest (the adaptor would otherwise read a streamed body whole).
func netHTTPHandler(h http.Handler) fasthttp.RequestHandler {
	serve := fasthttpadaptor.NewFastHTTPHandler(h)
	return func(ctx *fasthttp.RequestCtx) {
		_ = ctx.Request.CloseBodyStream()
		// The adaptor answers 500 to a target net/http cannot parse; it is
		// the client's error.
		if _, err := url.ParseRequestURI(string(ctx.RequestURI())); err != nil {
			ctx.Error(`{"error":"bad request target"}`, fasthttp.StatusBadRequest)
			ctx.SetContentType("application/json")
			return
		}
		serve(ctx)
	}
}
