package authz

import (
	"net/http"
	"time"

	"github.com/rs/zerolog"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
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
	// handler runs. The door never reads a body; the server discards up to
	// 256 KiB of it to keep the connection, and closes it past that, as
	// net/http does.
	httpBodyPrefetch = 8 << 10
)

// NewHTTPServer returns the server for the HTTP port, serving h (see
// ForwardAuth.Handler) with the port's limits. Serve it with Serve(ln) and
// drain it with ShutdownWithContext. Its own messages (a client's
// connection errors) go to log at debug level.
func NewHTTPServer(h fasthttp.RequestHandler, log zerolog.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       h,
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
		serve(ctx)
	}
}
