package authz

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// FrontendForwardAuth labels checks that came through the HTTP front door.
const FrontendForwardAuth = "forwardauth"

// ForwardAuthPath is the path prefix the HTTP front door answers on.
const ForwardAuthPath = "/auth"

// DefaultTrustedProxies are the peers whose X-Forwarded-* and X-Original-*
// headers are believed by default: loopback and private ranges.
var DefaultTrustedProxies = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// ParseTrustedProxies parses a list of CIDRs or addresses. "none" (alone)
// trusts no peer.
func ParseTrustedProxies(list []string) ([]netip.Prefix, error) {
	if len(list) == 1 && strings.TrimSpace(list[0]) == "none" {
		return []netip.Prefix{}, nil
	}
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// ForwardAuth is the HTTP front door. It answers on /auth and every path
// below it, for every method:
//
//   - Traefik forwardAuth: original request in X-Forwarded-Method,
//     X-Forwarded-Uri and X-Forwarded-Host;
//   - nginx auth_request: X-Original-URI and X-Original-Method;
//   - Envoy HTTP ext_authz: the original method, and the original path
//     after the /auth path_prefix.
//
// The forwarded headers are believed only from trusted peers; from any
// other peer the request's own method and path (below /auth) are used.
// It answers exactly 200 to allow, with the identity headers.
//
// The door is a fasthttp handler, served by the server NewHTTPServer
// builds: the net/http server cost more CPU per request than everything
// the door decides (see docs/design.md).
type ForwardAuth struct {
	a       *Authorizer
	trusted []netip.Prefix
	allow   *allowCache[*httpAllow]
}

// NewForwardAuth returns the HTTP front door over a, believing forwarded
// headers from the trusted prefixes.
func NewForwardAuth(a *Authorizer, trusted []netip.Prefix) *ForwardAuth {
	return &ForwardAuth{a: a, trusted: trusted, allow: newAllowCache(a, func(d *Decision) (*httpAllow, bool) {
		return newHTTPAllow(d), true
	})}
}

// Handler returns the HTTP port's handler: requests for /auth and every
// path below it go straight to the door, and every other request (probes,
// metrics) to other, a net/http handler. The door is routed on the path as
// received, not through a ServeMux: a mux would answer a path it cleans
// (such as /auth//x, which Envoy's HTTP mode sends for //x) with a
// redirect, which Envoy takes as a denial, instead of letting the policy
// merge the slashes as the gRPC door does.
func (f *ForwardAuth) Handler(other http.Handler) fasthttp.RequestHandler {
	rest := netHTTPHandler(other)
	return func(ctx *fasthttp.RequestCtx) {
		if isDoorPath(ctx.Request.Header.RequestURI()) {
			f.Serve(ctx)
			return
		}
		rest(ctx)
	}
}

// isDoorPath reports whether a request target is /auth or below it.
func isDoorPath(uri []byte) bool {
	p := uri
	for i, c := range uri {
		if c == '?' {
			p = uri[:i]
			break
		}
	}
	const prefix = ForwardAuthPath
	if len(p) < len(prefix) || string(p[:len(prefix)]) != prefix {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// httpAllow is the response header of an allowed check with a key, built
// once per key and revision: canonical names with their values, in a slice
// (cheaper to walk than a map, and fewer pointers for the collector to
// follow in a cache of many keys). Its slices are shared by every response
// that uses it and never modified.
type httpAllow struct {
	header []headerField
}

type headerField struct {
	name, value []byte
}

// headerToRemove names the headers Envoy's HTTP mode must drop upstream.
const headerToRemove = "X-Envoy-Auth-Headers-To-Remove"

// newHTTPAllow builds the identity headers for d.Key and the headers to
// remove upstream: the credential and any identity header not set, so a
// client-sent copy never survives. Traefik does the same for the names
// its authResponseHeaders lists.
func newHTTPAllow(d *Decision) *httpAllow {
	a := &httpAllow{header: make([]headerField, 0, len(identityHeaderNames)+1)}
	var remove []string
	for _, kv := range identity(d.Key) {
		if kv[1] != "" {
			a.header = append(a.header, headerField{[]byte(http.CanonicalHeaderKey(kv[0])), []byte(kv[1])})
		} else {
			remove = append(remove, kv[0])
		}
	}
	if d.Strip {
		remove = append(remove, credentialHeaders(d.Sources)...)
	}
	if len(remove) > 0 {
		a.header = append(a.header, headerField{[]byte(headerToRemove), []byte(strings.Join(remove, ","))})
	}
	return a
}

// trust returns the peer's address and whether its forwarded headers are
// believed.
func (f *ForwardAuth) trust(peer net.Addr) (string, bool) {
	var addr netip.Addr
	if tcp, ok := peer.(*net.TCPAddr); ok {
		addr = tcp.AddrPort().Addr()
	} else if peer != nil {
		host, _, err := net.SplitHostPort(peer.String())
		if err != nil {
			host = peer.String()
		}
		if addr, err = netip.ParseAddr(host); err != nil {
			return host, false
		}
	}
	if !addr.IsValid() {
		return "", false
	}
	addr = addr.Unmap()
	for _, p := range f.trusted {
		if p.Contains(addr) {
			return addr.String(), true
		}
	}
	return addr.String(), false
}

// Header names and values the door writes, as bytes once.
var (
	headerToRemoveName = []byte(headerToRemove)
	publicRemove       = []byte(strings.Join(identityHeaderNames[:], ","))
	jsonContentType    = []byte("application/json")
	cacheControl       = []byte("Cache-Control")
	noStore            = []byte("no-store")
	wwwAuthenticate    = []byte("Www-Authenticate")
)

// Serve answers one request to the door.
func (f *ForwardAuth) Serve(ctx *fasthttp.RequestCtx) {
	r := forwardRequest(ctx, f)
	d := f.a.Check(ctx, &r)
	h := &ctx.Response.Header
	if d.Kind == Allow {
		if d.Key == nil {
			// A public route: remove every identity header, so none can
			// be forged.
			h.SetCanonical(headerToRemoveName, publicRemove)
		} else {
			for _, hf := range f.allow.get(&d).header {
				h.SetCanonical(hf.name, hf.value)
			}
		}
		ctx.SetStatusCode(http.StatusOK)
		return
	}
	h.SetContentTypeBytes(jsonContentType)
	h.SetCanonical(cacheControl, noStore)
	if d.WWWAuthenticate != "" {
		h.SetBytesKV(wwwAuthenticate, []byte(d.WWWAuthenticate))
	}
	ctx.SetStatusCode(d.Status)
	ctx.SetBody(d.Body)
}

// forwardRequest reads what the decision needs. Every string is copied
// out of the request, whose buffers the server reuses.
func forwardRequest(ctx *fasthttp.RequestCtx, f *ForwardAuth) Request {
	ip, trusted := f.trust(ctx.RemoteAddr())
	hd := &ctx.Request.Header
	r := Request{
		Frontend:      FrontendForwardAuth,
		Method:        method(hd.Method()),
		Host:          string(hd.Host()),
		SourceIP:      ip,
		RequestID:     string(hd.Peek("X-Request-Id")),
		APIKey:        values(hd, "X-Api-Key"),
		Authorization: values(hd, "Authorization"),
	}
	// Envoy HTTP mode (and direct calls): the original target follows /auth.
	r.Path = strings.TrimPrefix(string(hd.RequestURI()), ForwardAuthPath)
	if r.Path == "" || r.Path[0] == '?' {
		r.Path = "/" + r.Path
	}
	if !trusted {
		return r
	}
	// Traefik's pair, else nginx's.
	m, u := hd.Peek("X-Forwarded-Method"), hd.Peek("X-Forwarded-Uri")
	if len(m) == 0 && len(u) == 0 {
		m, u = hd.Peek("X-Original-Method"), hd.Peek("X-Original-Uri")
	}
	if len(m) > 0 {
		r.Method = method(m)
	}
	if len(u) > 0 {
		r.Path = string(u)
	}
	if v := hd.Peek("X-Forwarded-Host"); len(v) > 0 {
		r.Host = string(v)
	}
	if v := hd.Peek("X-Forwarded-For"); len(v) > 0 {
		// The client is the first address the proxy saw.
		client, _, _ := strings.Cut(string(v), ",")
		r.SourceIP = strings.TrimSpace(client)
	} else if v := hd.Peek("X-Real-Ip"); len(v) > 0 {
		r.SourceIP = string(v)
	}
	return r
}

// values returns every value of a request header, nil when absent.
func values(hd *fasthttp.RequestHeader, name string) []string {
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

// knownMethods are the methods method returns without allocating.
var knownMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions}

// method returns m as a string, without allocating for the usual methods.
func method(m []byte) string {
	for _, k := range knownMethods {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}
