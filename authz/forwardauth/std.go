package forwardauth

import (
	"fmt"
	"iter"
	"log"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/authz"
)

// stdServer is the HTTP port on net/http.
type stdServer struct {
	*http.Server
}

func newStdServer(door *Door, other http.Handler, logger zerolog.Logger) *stdServer {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	// HTTP/2 without TLS, for a proxy that speaks it with prior knowledge
	// (Envoy's HTTP ext_authz over an http2_protocol_options cluster).
	protocols.SetUnencryptedHTTP2(true)
	return &stdServer{&http.Server{
		Handler:           recoverStd(door.stdHandler(other), logger),
		ReadHeaderTimeout: HTTPReadTimeout,
		ReadTimeout:       HTTPReadTimeout,
		IdleTimeout:       HTTPIdleTimeout,
		// net/http reads 4 KiB past MaxHeaderBytes before it answers 431.
		MaxHeaderBytes: HTTPMaxHeaderBytes - 4<<10,
		Protocols:      &protocols,
		// net/http's own messages (a TLS handshake error, an accept
		// retry) carry no request bytes; they are client connection
		// errors, logged at debug level.
		ErrorLog: log.New(debugWriter{logger}, "", 0),
	}}
}

// Serve serves until Shutdown or Close; that the server was closed is not
// an error.
func (s *stdServer) Serve(ln net.Listener) error {
	if err := s.Server.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// stdHandler routes the door's paths to the door and the rest to other.
func (f *Door) stdHandler(other http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isDoorPath(r.RequestURI) {
			f.ServeHTTP(w, r)
			return
		}
		other.ServeHTTP(w, r)
	})
}

// Values the door writes, allocated once.
var (
	publicRemoveValue = []string{publicRemove}
	jsonContentValue  = []string{"application/json"}
	noStoreValue      = []string{"no-store"}
	closeValue        = []string{"close"}
)

// ServeHTTP answers one request to the door.
func (f *Door) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	in := incoming[string]{
		method:        req.Method,
		target:        req.RequestURI,
		host:          req.Host,
		requestID:     req.Header.Get("X-Request-Id"),
		peer:          remoteAddr(req.RemoteAddr),
		apiKey:        req.Header["X-Api-Key"],
		authorization: req.Header["Authorization"],
		headers:       headerLines(req.Header),
	}
	r := forwardRequest(&in, f)
	d := f.a.Check(req.Context(), &r)
	h := w.Header()
	if req.ContentLength != 0 {
		// A declared body the door never reads: nginx's auth_request
		// subrequest inherits the client's Content-Length and sends no
		// body unless the configuration clears it. Closing after the
		// answer keeps net/http from waiting for that body before it
		// answers, and whatever body does come is never read as a
		// request.
		h["Connection"] = closeValue
	}
	if d.Kind == authz.Allow {
		if d.Key == nil {
			// A public route: remove every identity header, so none can
			// be forged.
			h[headerToRemove] = publicRemoveValue
		} else {
			for _, hf := range f.allow.Get(&d).header {
				h[hf.key] = hf.values
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = jsonContentValue
	h["Cache-Control"] = noStoreValue
	if d.WWWAuthenticate != "" {
		h["Www-Authenticate"] = []string{d.WWWAuthenticate}
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body)
}

// headerLines yields every header line of h: a name given twice comes
// twice.
func headerLines(h http.Header) iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for k, vs := range h {
			for _, v := range vs {
				if !yield(k, v) {
					return
				}
			}
		}
	}
}

// remoteAddr parses net/http's RemoteAddr ("ip:port").
func remoteAddr(s string) net.Addr {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(ap)
}

// recoverStd answers 500 to a request whose handler panicked before it
// answered, logs the panic with its stack, and closes the connection
// (net/http alone would drop the connection without an answer).
func recoverStd(h http.Handler, logger zerolog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			p := recover()
			if p == nil || p == http.ErrAbortHandler {
				if p != nil {
					panic(p)
				}
				return
			}
			logger.Error().Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("panic serving an HTTP request")
			hdr := w.Header()
			clear(hdr)
			hdr.Set("Content-Type", "application/json")
			hdr.Set("Connection", "close")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(panicBody))
		}()
		h.ServeHTTP(w, r)
	})
}

// debugWriter logs each message of net/http's server log at debug level.
type debugWriter struct{ log zerolog.Logger }

func (d debugWriter) Write(p []byte) (int, error) {
	d.log.Debug().Str("detail", strings.TrimSpace(string(p))).Msg("http connection error")
	return len(p), nil
}
