package forwardauth

import (
	"fmt"
	"github.com/extauthz/extauthz/authz"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// Frontend labels checks that came through the HTTP front door.
const Frontend = "forwardauth"

// Path is the path prefix the HTTP front door answers on.
const Path = "/auth"

// DefaultHTTPAddr is the default listen address of the HTTP port: the door
// on /auth, /healthz, /readyz and /metrics. The manifests are tested
// against it.
const DefaultHTTPAddr = ":9192"

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

// Door is the HTTP front door. It answers on /auth and every path
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
type Door struct {
	a       *authz.Authorizer
	trusted []netip.Prefix
	family  string
	allow   *authz.AllowCache[*httpAllow]
}

// New returns the HTTP front door over a, believing forwarded
// headers of family (one of Families; "" is FamilyAuto) from the trusted
// prefixes.
func New(a *authz.Authorizer, trusted []netip.Prefix, family string) *Door {
	if family == "" {
		family = FamilyAuto
	}
	return &Door{a: a, trusted: trusted, family: family, allow: authz.NewAllowCache(a, func(d *authz.Decision) (*httpAllow, bool) {
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
func (f *Door) Handler(other http.Handler) fasthttp.RequestHandler {
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
	const prefix = Path
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
func newHTTPAllow(d *authz.Decision) *httpAllow {
	a := &httpAllow{header: make([]headerField, 0, len(authz.IdentityHeaderNames)+1)}
	var remove []string
	for _, kv := range authz.Identity(d.Key) {
		if kv[1] != "" {
			a.header = append(a.header, headerField{[]byte(http.CanonicalHeaderKey(kv[0])), []byte(kv[1])})
		} else {
			remove = append(remove, kv[0])
		}
	}
	if d.Strip {
		remove = append(remove, authz.CredentialHeaders(d.Sources)...)
	}
	if len(remove) > 0 {
		a.header = append(a.header, headerField{[]byte(headerToRemove), []byte(strings.Join(remove, ","))})
	}
	return a
}

// trust returns the peer's address and whether its forwarded headers are
// believed.
func (f *Door) trust(peer net.Addr) (string, bool) {
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
	publicRemove       = []byte(strings.Join(authz.IdentityHeaderNames[:], ","))
	jsonContentType    = []byte("application/json")
	cacheControl       = []byte("Cache-Control")
	noStore            = []byte("no-store")
	wwwAuthenticate    = []byte("Www-Authenticate")
	retryAfter         = []byte(http.CanonicalHeaderKey(authz.HeaderRetryAfter))
	rateLimitPolicy    = []byte(http.CanonicalHeaderKey(authz.HeaderRateLimitPolicy))
	rateLimit          = []byte(http.CanonicalHeaderKey(authz.HeaderRateLimit))
)

// setLimitHeaders sets d's RateLimit-Policy and RateLimit fields.
func setLimitHeaders(h *fasthttp.ResponseHeader, d *authz.Decision) {
	h.SetCanonical(rateLimitPolicy, []byte(d.RateLimitPolicyValue()))
	h.SetCanonical(rateLimit, []byte(d.RateLimitValue()))
}

// Serve answers one request to the door.
func (f *Door) Serve(ctx *fasthttp.RequestCtx) {
	r := forwardRequest(ctx, f)
	d := f.a.Check(ctx, &r)
	h := &ctx.Response.Header
	if d.Kind == authz.Allow {
		if d.Key == nil {
			// A public route: remove every identity header, so none can
			// be forged.
			h.SetCanonical(headerToRemoveName, publicRemove)
		} else {
			for _, hf := range f.allow.Get(&d).header {
				h.SetCanonical(hf.name, hf.value)
			}
			if d.ShowLimitFields() {
				setLimitHeaders(h, &d)
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
	if d.Kind == authz.RateLimited {
		if v := d.RetryAfterValue(); v != "" {
			h.SetCanonical(retryAfter, []byte(v))
		}
		if d.ShowLimitFields() {
			setLimitHeaders(h, &d)
		}
	}
	ctx.SetStatusCode(d.Status)
	ctx.SetBody(d.Body)
}

// Forwarded-header families: which proxy's headers carry the original
// request to the HTTP door.
const (
	// FamilyAuto takes the one family a request carries, and refuses a
	// request that carries none or more than one.
	FamilyAuto = "auto"
	// FamilyTraefik reads X-Forwarded-Method and X-Forwarded-Uri on /auth.
	FamilyTraefik = "traefik"
	// FamilyNginx reads X-Original-Method and X-Original-URI on /auth.
	FamilyNginx = "nginx"
	// FamilyEnvoy reads the request's own method and the path after /auth
	// (Envoy's HTTP ext_authz with path_prefix /auth).
	FamilyEnvoy = "envoy"
)

// Families lists the values ParseFamily accepts.
var Families = []string{FamilyAuto, FamilyTraefik, FamilyNginx, FamilyEnvoy}

// ParseFamily checks a --forward-headers value.
func ParseFamily(s string) (string, error) {
	for _, f := range Families {
		if s == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("forwarded-header family %q: must be one of %s", s, strings.Join(Families, ", "))
}

// Why a forwarded request is refused (authz.Request.Conflict).
const (
	conflictMixed      = "headers of more than one proxy family"
	conflictNone       = "no forwarded request"
	conflictRepeated   = "a forwarded header repeated"
	conflictIncomplete = "forwarded method or URI missing"
	conflictUntrusted  = "forwarded headers from an untrusted peer"
	conflictFamily     = "forwarded headers of another family than --forward-headers"
)

// forwarded is what the family headers of one request hold: each value
// and how many times its header appeared.
type forwarded struct {
	fwdMethod, fwdURI, fwdHost, fwdFor []byte
	origMethod, origURI, realIP        []byte
	repeated                           bool
	traefik, nginx                     bool
}

// readFamilies collects the family headers in one pass over the request,
// and hands every other header starting with "x" to r.NoteHeader.
func readFamilies(hd *fasthttp.RequestHeader, r *authz.Request) forwarded {
	var fw forwarded
	var seen [7]bool
	set := func(i int, dst *[]byte, v []byte) {
		if seen[i] {
			fw.repeated = true
		}
		seen[i] = true
		*dst = v
	}
	for k, v := range hd.All() {
		if len(k) < 9 || (k[0]|0x20) != 'x' {
			continue
		}
		switch {
		case equalHeaderName(k, "X-Forwarded-Method"):
			set(0, &fw.fwdMethod, v)
			fw.traefik = true
		case equalHeaderName(k, "X-Forwarded-Uri"):
			set(1, &fw.fwdURI, v)
			fw.traefik = true
		case equalHeaderName(k, "X-Forwarded-Host"):
			set(2, &fw.fwdHost, v)
		case equalHeaderName(k, "X-Forwarded-For"):
			set(3, &fw.fwdFor, v)
		case equalHeaderName(k, "X-Original-Method"):
			set(4, &fw.origMethod, v)
			fw.nginx = true
		case equalHeaderName(k, "X-Original-Uri"):
			set(5, &fw.origURI, v)
			fw.nginx = true
		case equalHeaderName(k, "X-Real-Ip"):
			set(6, &fw.realIP, v)
		default:
			r.NoteHeader(string(k))
		}
	}
	return fw
}

// forwardRequest reads what the decision needs. Every string is copied
// out of the request, whose buffers the server reuses.
//
// The original request comes from exactly one family: Traefik's
// X-Forwarded-Method and X-Forwarded-Uri, nginx's X-Original-Method and
// X-Original-URI (both on /auth itself), or Envoy's HTTP mode (the request's
// own method and the path after /auth). The door serves the family
// --forward-headers names, or with auto the one family the request
// carries. Headers of another family, a forwarded header given twice, a
// method without a URI, or forwarded headers from an untrusted peer make
// the request a Conflict, refused with 400 rather than guessed. The
// client address is taken from the same family only: the last address of
// X-Forwarded-For (Traefik, Envoy), X-Real-IP (nginx), else the peer.
func forwardRequest(ctx *fasthttp.RequestCtx, f *Door) authz.Request {
	ip, trusted := f.trust(ctx.RemoteAddr())
	hd := &ctx.Request.Header
	r := authz.Request{
		Frontend:      Frontend,
		Method:        method(hd.Method()),
		Host:          string(hd.Host()),
		SourceIP:      ip,
		RequestID:     string(hd.Peek("X-Request-Id")),
		APIKey:        values(hd, "X-Api-Key"),
		Authorization: values(hd, "Authorization"),
	}
	if f.a.Tracing() {
		r.TraceParent, r.TraceState = string(hd.Peek("Traceparent")), string(hd.Peek("Tracestate"))
	}
	sub := strings.TrimPrefix(string(hd.RequestURI()), Path)
	if sub != "" && sub[0] == '?' {
		sub = "" // /auth with a query of its own
	}
	fw := readFamilies(hd, &r)
	envoy := sub != ""

	family := f.family
	if family == FamilyAuto {
		switch {
		case fw.traefik && !fw.nginx && !envoy:
			family = FamilyTraefik
		case fw.nginx && !fw.traefik && !envoy:
			family = FamilyNginx
		case envoy && !fw.traefik && !fw.nginx:
			family = FamilyEnvoy
		case !fw.traefik && !fw.nginx && !envoy:
			r.Conflict = conflictNone
			return r
		default:
			r.Conflict = conflictMixed
			return r
		}
	}
	switch {
	case (fw.traefik || fw.nginx) && !trusted:
		r.Conflict = conflictUntrusted
	case fw.repeated:
		r.Conflict = conflictRepeated
	case family == FamilyTraefik && (fw.nginx || envoy),
		family == FamilyNginx && (fw.traefik || envoy),
		family == FamilyEnvoy && (fw.traefik || fw.nginx):
		r.Conflict = conflictFamily
	}
	if r.Conflict != "" {
		return r
	}
	switch family {
	case FamilyTraefik:
		r.Conflict = fw.original(&r, fw.fwdMethod, fw.fwdURI)
		r.SourceIP = lastAddress(fw.fwdFor, ip)
	case FamilyNginx:
		r.Conflict = fw.original(&r, fw.origMethod, fw.origURI)
		r.SourceIP = lastAddress(fw.realIP, ip)
	default: // envoy
		if !envoy {
			r.Conflict = conflictNone
			return r
		}
		r.Path = sub
		if trusted {
			r.SourceIP = lastAddress(fw.fwdFor, ip)
		}
	}
	if r.Method == http.MethodPost {
		r.ContentType = contentTypes(hd)
	}
	return r
}

// contentTypes returns every Content-Type value of the request, in the
// order received, also of the header spelt with '_' (which Rack and CGI
// read as the same): fasthttp keeps only the last one, and a repeated
// header is read differently by different servers.
func contentTypes(hd *fasthttp.RequestHeader) []string {
	var out []string
	for k, v := range hd.AllInOrder() {
		if authz.EqualHeaderFold(string(k), "content-type") {
			out = append(out, string(v))
		}
	}
	if out == nil && len(hd.ContentType()) > 0 {
		// A request not read from the wire has no raw headers to walk.
		out = []string{string(hd.ContentType())}
	}
	return out
}

// original sets r's method, path and host from one family's headers, which
// must both be present. It returns the conflict, or "".
func (fw *forwarded) original(r *authz.Request, m, u []byte) string {
	if m == nil || u == nil {
		return conflictIncomplete
	}
	r.Method = method(m)
	r.Path = string(u)
	if fw.fwdHost != nil {
		r.Host = string(fw.fwdHost)
	}
	return ""
}

// equalHeaderName compares a header name with name without ASCII case.
func equalHeaderName(k []byte, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := range k {
		x, y := k[i], name[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// lastAddress returns the last address in a header value (the one the
// trusted proxy itself saw or appended), or fallback when the header is
// absent or its last entry is not an IP address.
func lastAddress(v []byte, fallback string) string {
	if v == nil {
		return fallback
	}
	s := string(v)
	if i := strings.LastIndexByte(s, ','); i >= 0 {
		s = s[i+1:]
	}
	a, err := netip.ParseAddr(strings.Trim(s, " \t"))
	if err != nil {
		return fallback
	}
	return a.Unmap().String()
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
