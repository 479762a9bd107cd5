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

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/backoff"
)

// httpBodyPrefetch is how much of a request body fasthttp reads before the
// handler runs (probes and metrics; the door's requests are answered
// without their body, see bodyless). The server discards up to 256 KiB of
// an unread body to keep the connection, and closes it past that, as
// net/http does.
const httpBodyPrefetch = 8 << 10

// fastServer is the HTTP port on fasthttp.
type fastServer struct {
	*fasthttp.Server
}

func newFastServer(door *Door, other http.Handler, log zerolog.Logger) *fastServer {
	return &fastServer{&fasthttp.Server{
		Handler:                       recoverPanics(door.fastHandler(other), log),
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

// Serve retries an accept error the listener calls temporary (out of file
// descriptors, for one) after a pause, as net/http does; fasthttp would
// return it and stop serving.
func (s *fastServer) Serve(ln net.Listener) error {
	return s.Server.Serve(retryListener{ln})
}

func (s *fastServer) Shutdown(ctx context.Context) error {
	return s.ShutdownWithContext(ctx)
}

// Close does nothing more: fasthttp cannot cut active connections.
func (s *fastServer) Close() error { return nil }

// fastHandler routes the door's paths to the door and the rest to other.
func (f *Door) fastHandler(other http.Handler) fasthttp.RequestHandler {
	rest := netHTTPHandler(other)
	return func(ctx *fasthttp.RequestCtx) {
		if isDoorPath(ctx.Request.Header.RequestURI()) {
			f.serveFast(ctx)
			return
		}
		rest(ctx)
	}
}

// Header names and values the door writes, as bytes once.
var (
	headerToRemoveName = []byte(headerToRemove)
	publicRemoveBytes  = []byte(publicRemove)
	jsonContentType    = []byte("application/json")
	cacheControlName   = []byte("Cache-Control")
	noStoreBytes       = []byte("no-store")
	wwwAuthenticate    = []byte("Www-Authenticate")
)

// serveFast answers one request to the door.
func (f *Door) serveFast(ctx *fasthttp.RequestCtx) {
	hd := &ctx.Request.Header
	in := incoming[[]byte]{
		method:        hd.Method(),
		target:        hd.RequestURI(),
		host:          hd.Host(),
		requestID:     hd.Peek("X-Request-Id"),
		peer:          ctx.RemoteAddr(),
		apiKey:        fastValues(hd, "X-Api-Key"),
		authorization: fastValues(hd, "Authorization"),
		headers:       hd.All(),
	}
	r := forwardRequest(&in, f)
	d := f.a.Check(ctx, &r)
	h := &ctx.Response.Header
	if d.Kind == authz.Allow {
		if d.Key == nil {
			h.SetCanonical(headerToRemoveName, publicRemoveBytes)
		} else {
			for _, hf := range f.allow.Get(&d).header {
				h.SetCanonical(hf.name, hf.value)
			}
		}
		ctx.SetStatusCode(http.StatusOK)
		return
	}
	h.SetContentTypeBytes(jsonContentType)
	h.SetCanonical(cacheControlName, noStoreBytes)
	if d.WWWAuthenticate != "" {
		h.SetBytesKV(wwwAuthenticate, []byte(d.WWWAuthenticate))
	}
	ctx.SetStatusCode(d.Status)
	ctx.SetBody(d.Body)
}

// fastValues returns every value of a request header, nil when absent.
func fastValues(hd *fasthttp.RequestHeader, name string) []string {
	all := hd.PeekAll(name)
	if len(all) == 0 {
		return nil
	}
	out := make([]string, len(all))
	for i, v := range all {
		out[i] = string(v)
	}
	return out
}

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
// would let the panic end the process), logs it with its stack, and
// closes the connection.
func recoverPanics(h fasthttp.RequestHandler, log zerolog.Logger) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		defer func() {
			if p := recover(); p != nil {
				log.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("panic serving an HTTP request")
				ctx.Response.Reset()
				ctx.Error(panicBody, fasthttp.StatusInternalServerError)
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
			ctx.Error(badTargetBody, fasthttp.StatusBadRequest)
			ctx.SetContentType("application/json")
			return
		}
		serve(ctx)
	}
}
