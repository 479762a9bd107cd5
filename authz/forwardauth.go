package authz

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
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

// Handler returns the HTTP door's handler: requests for /auth and every
// path below it go straight to f, and every other request (probes,
// metrics) to other. The door is not routed through a ServeMux: a mux with
// method patterns walks and allocates for every request, and it would
// answer a path it cleans (such as /auth//x, which Envoy's HTTP mode sends
// for //x) with a redirect, which Envoy takes as a denial, instead of
// letting the policy merge the slashes as the gRPC door does.
func (f *ForwardAuth) Handler(other http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if p := req.URL.Path; p == ForwardAuthPath || strings.HasPrefix(p, ForwardAuthPath+"/") {
			f.ServeHTTP(w, req)
			return
		}
		other.ServeHTTP(w, req)
	})
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
	name  string
	value []string
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
			a.header = append(a.header, headerField{http.CanonicalHeaderKey(kv[0]), []string{kv[1]}})
		} else {
			remove = append(remove, kv[0])
		}
	}
	if d.Strip {
		remove = append(remove, credentialHeaders(d.Sources)...)
	}
	if len(remove) > 0 {
		a.header = append(a.header, headerField{headerToRemove, []string{strings.Join(remove, ",")}})
	}
	return a
}

// publicRemove is the header to remove on a public route: every identity
// header, so none can be forged.
var publicRemove = []string{strings.Join(identityHeaderNames[:], ",")}

func (f *ForwardAuth) trust(remoteAddr string) (string, bool) {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host, false
	}
	addr = addr.Unmap()
	for _, p := range f.trusted {
		if p.Contains(addr) {
			return host, true
		}
	}
	return host, false
}

// Header values shared by every denial; net/http copies them out before
// writing, and nothing appends to them.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// ServeHTTP implements http.Handler.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r := forwardRequest(req, f)
	d := f.a.Check(req.Context(), &r)
	h := w.Header()
	if d.Kind == Allow {
		if d.Key == nil {
			h[headerToRemove] = publicRemove
		} else {
			for _, hf := range f.allow.get(&d).header {
				h[hf.name] = hf.value
			}
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	if d.WWWAuthenticate != "" {
		h["Www-Authenticate"] = []string{d.WWWAuthenticate}
	}
	w.WriteHeader(d.Status)
	_, _ = w.Write(d.Body)
}

func forwardRequest(req *http.Request, f *ForwardAuth) Request {
	ip, trusted := f.trust(req.RemoteAddr)
	hd := req.Header
	// Canonical names index the map directly: Header.Get would canonicalise
	// each constant again on every request.
	r := Request{
		Frontend:      FrontendForwardAuth,
		Method:        req.Method,
		Host:          req.Host,
		SourceIP:      ip,
		RequestID:     first(hd, "X-Request-Id"),
		APIKey:        hd["X-Api-Key"],
		Authorization: hd["Authorization"],
	}
	// Envoy HTTP mode (and direct calls): the original target follows /auth.
	r.Path = strings.TrimPrefix(req.RequestURI, ForwardAuthPath)
	if r.Path == "" || r.Path[0] == '?' {
		r.Path = "/" + r.Path
	}
	if !trusted {
		return r
	}
	// Traefik's pair, else nginx's.
	m, u := first(hd, "X-Forwarded-Method"), first(hd, "X-Forwarded-Uri")
	if m == "" && u == "" {
		m, u = first(hd, "X-Original-Method"), first(hd, "X-Original-Uri")
	}
	if m != "" {
		r.Method = m
	}
	if u != "" {
		r.Path = u
	}
	if v := first(hd, "X-Forwarded-Host"); v != "" {
		r.Host = v
	}
	if v := first(hd, "X-Forwarded-For"); v != "" {
		// The client is the first address the proxy saw.
		client, _, _ := strings.Cut(v, ",")
		r.SourceIP = strings.TrimSpace(client)
	} else if v := first(hd, "X-Real-Ip"); v != "" {
		r.SourceIP = v
	}
	return r
}

// first returns the first value of the header with the canonical name
// name, as Header.Get does.
func first(h http.Header, name string) string {
	if v := h[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}
