package forwardauth

import (
	"fmt"
	"iter"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/extauthz/extauthz/authz"
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
// NewHTTPServer serves it.
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

// isDoorPath reports whether a request target is /auth or below it.
func isDoorPath[S text](uri S) bool {
	p := uri
	for i := 0; i < len(uri); i++ {
		if uri[i] == '?' {
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
	name, value []byte   // for fasthttp
	key         string   // the canonical name, for net/http
	values      []string // {value}, for net/http
}

func newHeaderField(name, value string) headerField {
	return headerField{[]byte(name), []byte(value), name, []string{value}}
}

// headerToRemove names the headers Envoy's HTTP mode must drop upstream.
const headerToRemove = "X-Envoy-Auth-Headers-To-Remove"

// publicRemove is headerToRemove's value on a public route: every identity
// header, so none can be forged.
var publicRemove = strings.Join(authz.IdentityHeaderNames[:], ",")

// newHTTPAllow builds the identity headers for d.Key and the headers to
// remove upstream: the credential and any identity header not set, so a
// client-sent copy never survives. Traefik does the same for the names
// its authResponseHeaders lists.
func newHTTPAllow(d *authz.Decision) *httpAllow {
	a := &httpAllow{header: make([]headerField, 0, len(authz.IdentityHeaderNames)+1)}
	var remove []string
	for _, kv := range authz.Identity(d.Key) {
		if kv[1] != "" {
			a.header = append(a.header, newHeaderField(http.CanonicalHeaderKey(kv[0]), kv[1]))
		} else {
			remove = append(remove, kv[0])
		}
	}
	if d.Strip {
		remove = append(remove, authz.CredentialHeaders(d.Sources)...)
	}
	if len(remove) > 0 {
		a.header = append(a.header, newHeaderField(headerToRemove, strings.Join(remove, ",")))
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

// text is a header name or value as the HTTP stack holds it.
type text interface{ ~string | ~[]byte }

// forwarded is what the family headers of one request hold: each value
// and whether its header appeared.
type forwarded[S text] struct {
	fwdMethod, fwdURI, fwdHost, fwdFor S
	origMethod, origURI, realIP        S
	seen                               [7]bool // one per field above, in order
	repeated                           bool
	override                           bool // a method-override header
	traefik, nginx                     bool
}

// Indexes into forwarded.seen.
const (
	seenFwdMethod = iota
	seenFwdURI
	seenFwdHost
	seenFwdFor
	seenOrigMethod
	seenOrigURI
	seenRealIP
)

// readFamilies collects the family headers in one pass over every header
// line of the request (a name given twice comes twice).
func readFamilies[S text](all iter.Seq2[S, S]) forwarded[S] {
	var fw forwarded[S]
	set := func(i int, dst *S, v S) {
		if fw.seen[i] {
			fw.repeated = true
		}
		fw.seen[i] = true
		*dst = v
	}
	for k, v := range all {
		if len(k) < 9 || (k[0]|0x20) != 'x' || k[1] != '-' {
			continue
		}
		switch {
		case equalHeaderName(k, "X-Forwarded-Method"):
			set(seenFwdMethod, &fw.fwdMethod, v)
			fw.traefik = true
		case equalHeaderName(k, "X-Forwarded-Uri"):
			set(seenFwdURI, &fw.fwdURI, v)
			fw.traefik = true
		case equalHeaderName(k, "X-Forwarded-Host"):
			set(seenFwdHost, &fw.fwdHost, v)
		case equalHeaderName(k, "X-Forwarded-For"):
			set(seenFwdFor, &fw.fwdFor, v)
		case equalHeaderName(k, "X-Original-Method"):
			set(seenOrigMethod, &fw.origMethod, v)
			fw.nginx = true
		case equalHeaderName(k, "X-Original-Uri"):
			set(seenOrigURI, &fw.origURI, v)
			fw.nginx = true
		case equalHeaderName(k, "X-Real-Ip"):
			set(seenRealIP, &fw.realIP, v)
		case equalHeaderName(k, authz.MethodOverrideHeaders[0]), equalHeaderName(k, authz.MethodOverrideHeaders[1]), equalHeaderName(k, authz.MethodOverrideHeaders[2]):
			fw.override = true
		}
	}
	return fw
}

// incoming is the request to the door as the HTTP stack read it.
type incoming[S text] struct {
	method, target, host, requestID S
	peer                            net.Addr
	apiKey, authorization           []string // every value, nil when absent
	headers                         iter.Seq2[S, S]
}

// forwardRequest reads what the decision needs. Every string is copied
// out of the request, whose buffers the server may reuse.
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
func forwardRequest[S text](in *incoming[S], f *Door) authz.Request {
	ip, trusted := f.trust(in.peer)
	r := authz.Request{
		Frontend:      Frontend,
		Method:        method(in.method),
		Host:          string(in.host),
		SourceIP:      ip,
		RequestID:     string(in.requestID),
		APIKey:        in.apiKey,
		Authorization: in.authorization,
	}
	sub := strings.TrimPrefix(string(in.target), Path)
	if sub != "" && sub[0] == '?' {
		sub = "" // /auth with a query of its own
	}
	fw := readFamilies(in.headers)
	r.MethodOverride = fw.override
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
		r.Conflict = fw.original(&r, fw.fwdMethod, fw.fwdURI, fw.seen[seenFwdMethod] && fw.seen[seenFwdURI])
		r.SourceIP = lastAddress(fw.fwdFor, fw.seen[seenFwdFor], ip)
	case FamilyNginx:
		r.Conflict = fw.original(&r, fw.origMethod, fw.origURI, fw.seen[seenOrigMethod] && fw.seen[seenOrigURI])
		r.SourceIP = lastAddress(fw.realIP, fw.seen[seenRealIP], ip)
	default: // envoy
		if !envoy {
			r.Conflict = conflictNone
			return r
		}
		r.Path = sub
		if trusted {
			r.SourceIP = lastAddress(fw.fwdFor, fw.seen[seenFwdFor], ip)
		}
	}
	return r
}

// original sets r's method, path and host from one family's headers, which
// must both be present. It returns the conflict, or "".
func (fw *forwarded[S]) original(r *authz.Request, m, u S, present bool) string {
	if !present {
		return conflictIncomplete
	}
	r.Method = method(m)
	r.Path = string(u)
	if fw.seen[seenFwdHost] {
		r.Host = string(fw.fwdHost)
	}
	return ""
}

// equalHeaderName compares a header name with name without ASCII case.
func equalHeaderName[S text](k S, name string) bool {
	if len(k) != len(name) {
		return false
	}
	for i := 0; i < len(k); i++ {
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
func lastAddress[S text](v S, present bool, fallback string) string {
	if !present {
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

// knownMethods are the methods method returns without allocating.
var knownMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions}

// method returns m as a string, without allocating for the usual methods.
func method[S text](m S) string {
	for _, k := range knownMethods {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}
