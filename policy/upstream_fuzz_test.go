package policy

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// upstreamReading models how one family of upstream servers turns a raw
// request target into the path it routes on.
type upstreamReading struct {
	name string
	// fold: the upstream compares route literals without ASCII case. The
	// path keeps its case, as route parameters do in those frameworks.
	fold bool
	read func(raw string) string
}

// upstreamReadings are the modelled upstreams. Each read function takes the
// raw target, query included, and returns the path the upstream routes on,
// which may hold anything.
var upstreamReadings = []upstreamReading{
	// Decode once and keep everything: the canonical reading, that of
	// servers that route on the decoded path as it is (Go's net/http
	// ServeMux on r.URL.Path without cleaning, Flask and Django,
	// Express's parameters).
	{name: "exact", read: readExact},
	// Routing without ASCII case: Express (caseSensitive off, its
	// default) and ASP.NET Core routing.
	{name: "ascii-case-insensitive", fold: true, read: readExact},
	// Routing without case, Unicode simple case mapping and folding
	// included: ASP.NET's OrdinalIgnoreCase (upper-invariant, so "ı" is
	// "I" and "ſ" is "S"), Java's equalsIgnoreCase, JavaScript regular
	// expressions with the i and u flags and Go's strings.EqualFold
	// (simple folding, so the Kelvin sign is "k").
	{name: "unicode-case-insensitive", fold: true, read: readUnicodeFold},
	// Servlet containers (Tomcat, Jetty, Undertow): ";parameters" are cut
	// from every raw segment, the rest is decoded, repeated slashes are
	// merged and dot segments resolved, so "/a/..;/b" is "/b".
	{name: "servlet", read: readServlet},
	// Spring's lookup path in its decoded variant: decoded first, then
	// ";parameters" cut, so "%3B" counts as a ';'.
	{name: "spring-decoded", read: readSpringDecoded},
	// A servlet container behind a case-insensitive matcher (Spring's
	// PathPatternParser or AntPathMatcher with caseSensitive false).
	{name: "servlet-case-insensitive", fold: true, read: readServlet},
	// Applications that decode the already decoded path a second time
	// (a filter calling URLDecoder or decodeURIComponent again).
	{name: "double-decode", read: readDoubleDecode},
	// The same, followed by a normalising router or file lookup.
	{name: "double-decode-normalise", read: readDoubleDecodeNormalise},
	// A second decoding that also understands "%uXXXX", as IIS and
	// HTTP.sys (PercentUAllowed, on by default), System.Web's
	// HttpUtility.UrlDecode and JavaScript's unescape do, followed by
	// dot-segment resolution.
	{name: "double-decode-percent-u", read: readDoubleDecodePercentU},
	// Normalising servers: decode once, merge slashes, resolve "." and
	// "..": nginx's $uri, Envoy with normalize_path and merge_slashes,
	// Kestrel, Go's path.Clean in http.ServeMux redirects.
	{name: "normalise", read: readNormalise},
	// Kestrel's normalisation under ASP.NET Core's case-insensitive
	// routing.
	{name: "normalise-case-insensitive", fold: true, read: readNormalise},
	// Upstreams that apply Unicode compatibility normalisation (NFKC) to
	// the decoded path, so that full-width "．" is ".", before resolving
	// dot segments: Python frameworks normalising identifiers or file
	// names, NFKC-normalising path canonicalisers.
	{name: "nfkc", read: readNFKC},
	// The same under a case-insensitive router.
	{name: "nfkc-case-insensitive", fold: true, read: readNFKC},
	// Windows-ish servers treating '\' as '/' (IIS, ASP.NET on Windows,
	// Tomcat with ALLOW_BACKSLASH, Node's path.win32), after decoding,
	// then normalising; case-insensitive, as they are.
	{name: "backslash", read: readBackslash},
	{name: "backslash-case-insensitive", fold: true, read: readBackslash},
}

// pathOf returns the raw target without its query.
func pathOf(raw string) string {
	p, _, _ := strings.Cut(raw, "?")
	return p
}

// percentDecode decodes every "%XX" escape once. An invalid escape is kept
// as it is, as lenient decoders do.
func percentDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// percentUDecode decodes "%uXXXX" escapes (a UTF-16 code unit, written as
// UTF-8) as well as "%XX" ones, once.
func percentUDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+5 < len(s) && (s[i+1] == 'u' || s[i+1] == 'U') {
			var r rune
			ok := true
			for _, c := range []byte(s[i+2 : i+6]) {
				v, isHex := unhex(c)
				ok = ok && isHex
				r = r<<4 | rune(v)
			}
			if ok {
				b.WriteRune(r)
				i += 5
				continue
			}
		}
		if s[i] == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b.WriteByte(hi<<4 | lo)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mergeSlashes collapses every run of '/' into one.
func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// resolveDots removes "." and ".." segments as RFC 3986 (5.2.4) does for an
// absolute path: ".." above the root stays at the root, and a path ending in
// a dot segment keeps a trailing slash.
func resolveDots(p string) string {
	if !strings.HasPrefix(p, "/") {
		return p
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

// normalise merges slashes and resolves dot segments.
func normalise(p string) string {
	return resolveDots(mergeSlashes(p))
}

// stripParameters cuts ";..." from every segment of p.
func stripParameters(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

func readExact(raw string) string {
	return percentDecode(pathOf(raw))
}

// readUnicodeFold decodes once and replaces each non-ASCII character that
// simple case mapping or folding relates to an ASCII letter with that
// letter; route literals are then compared without ASCII case. ASCII is
// left alone, so that captures keep their case.
func readUnicodeFold(raw string) string {
	return strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf {
			return r
		}
		if l := unicode.ToLower(r); l < utf8.RuneSelf {
			return l
		}
		if u := unicode.ToUpper(r); u < utf8.RuneSelf {
			return u
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < utf8.RuneSelf {
				return f
			}
		}
		return r
	}, readExact(raw))
}

func readServlet(raw string) string {
	return normalise(percentDecode(stripParameters(pathOf(raw))))
}

func readSpringDecoded(raw string) string {
	return normalise(stripParameters(percentDecode(pathOf(raw))))
}

func readDoubleDecode(raw string) string {
	return percentDecode(percentDecode(pathOf(raw)))
}

func readDoubleDecodeNormalise(raw string) string {
	return normalise(readDoubleDecode(raw))
}

func readDoubleDecodePercentU(raw string) string {
	return normalise(percentUDecode(percentDecode(pathOf(raw))))
}

func readNormalise(raw string) string {
	return normalise(readExact(raw))
}

func readNFKC(raw string) string {
	return normalise(norm.NFKC.String(readExact(raw)))
}

func readBackslash(raw string) string {
	return normalise(strings.ReplaceAll(readExact(raw), `\`, "/"))
}

// testKey is a key the fuzz target tries; nil stands for no key.
type testKey struct {
	name    string
	scopes  []string
	project string
}

// upstreamPolicy is a policy under test, the keys tried against it and its
// reference model.
type upstreamPolicy struct {
	name  string
	p     *Policy
	keys  []*testKey
	model *modelPolicy
}

// upstreamTestPolicy has a mixed-case literal (so matching is
// fold-sensitive), a project route with the project in second place,
// public routes, a star, and a method-restricted catch-all, so that other
// methods reach "unmatched: authenticate".
const upstreamTestPolicy = `
keys:
  formats: [{prefix: k_, charset: hex, length: 8}]
scopes: [read, write, admin]
superScope: admin
routes:
  - {methods: [GET], path: /healthz, public: true}
  - {path: /Admin/Settings/**, require: admin}
  - {methods: [GET, HEAD], path: "/org/{org}/p/{project}/**", require: read, project: project}
  - {path: "/org/{org}/p/{project}/**", require: write, project: project}
  - {methods: [GET], path: /files/*/raw, require: read}
  - {path: /public/**, public: true}
  - {methods: [GET, HEAD], path: "/**", require: read}
unmatched: authenticate
`

func upstreamPolicies(tb testing.TB) []upstreamPolicy {
	tb.Helper()
	load := func(name string) *Policy {
		p, err := Load(filepath.Join(examplesDir, name))
		if err != nil {
			tb.Fatalf("Load(%s) error = %v", name, err)
		}
		return p
	}
	test, err := Parse([]byte(upstreamTestPolicy))
	if err != nil {
		tb.Fatalf("Parse(upstreamTestPolicy) error = %v", err)
	}
	nexgent := load("nexgent.yaml")
	nexgentKeys := []*testKey{nil}
	for _, s := range nexgent.Scopes {
		nexgentKeys = append(nexgentKeys, &testKey{name: s, scopes: []string{s}})
	}
	pols := []upstreamPolicy{
		{name: "nexgent", p: nexgent, keys: nexgentKeys},
		{name: "nexgraph", p: load("nexgraph.yaml"), keys: []*testKey{
			nil,
			{name: "pa read", scopes: []string{"read"}, project: "pa"},
			{name: "pa read+write", scopes: []string{"read", "write"}, project: "pa"},
			{name: "pb read+write", scopes: []string{"read", "write"}, project: "pb"},
		}},
		{name: "test", p: test, keys: []*testKey{
			nil,
			{name: "pa read", scopes: []string{"read"}, project: "pa"},
			{name: "pa read+write", scopes: []string{"read", "write"}, project: "pa"},
			{name: "pb read+write", scopes: []string{"read", "write"}, project: "pb"},
			{name: "admin", scopes: []string{"admin"}},
			{name: "pa admin", scopes: []string{"admin"}, project: "pa"},
		}},
	}
	for i := range pols {
		pols[i].model = newModelPolicy(pols[i].p)
	}
	return pols
}

// sidecarAllows mirrors the decision of the authz package for a valid,
// active key k (nil: no key): it reports whether the request is admitted,
// or refused as ambiguous.
func sidecarAllows(p *Policy, method, raw string, k *testKey) (allow, refused bool) {
	path, err := NormalizePath(raw)
	if err != nil {
		return false, true
	}
	m := p.Match(method, path)
	if m.Ambiguous {
		return false, true
	}
	if (m.Route != nil && m.Route.Public) || (m.Route == nil && p.Unmatched == UnmatchedAllow) {
		return true, false
	}
	if k == nil {
		return false, false
	}
	if m.Isolated && k.project != m.Project {
		return false, false
	}
	if m.Route != nil {
		return m.Route.Require == "" || p.Grants(k.scopes, m.Route.Require), false
	}
	switch p.Unmatched {
	case UnmatchedAuthenticate:
		return true, false
	case UnmatchedRequireSuper:
		return p.Grants(k.scopes, p.SuperScope), false
	default:
		return false, false
	}
}

// modelPolicy is a reference judge, written from the policy's file format
// alone: it matches any path (decoded, possibly unnormalised) against the
// route patterns as written, without NormalizePath or Policy.Match.
type modelPolicy struct {
	p          *Policy
	routes     [][]string // the pattern segments of each route
	isolations []modelIsolation
}

// modelIsolation is the path set a project route isolates: its pattern up
// to and including the project capture, then anything.
type modelIsolation struct {
	segs    []string // pattern segments, ending with "**"
	capture int      // index of the project capture
}

func patternSegments(pattern string) []string {
	if pattern == "/" {
		return nil
	}
	return strings.Split(strings.TrimPrefix(pattern, "/"), "/")
}

func newModelPolicy(p *Policy) *modelPolicy {
	m := &modelPolicy{p: p}
	for _, r := range p.Routes {
		segs := patternSegments(r.Path)
		m.routes = append(m.routes, segs)
		if r.Project == "" || r.Public {
			continue
		}
		for i, s := range segs {
			if s == "{"+r.Project+"}" {
				iso := append(append([]string(nil), segs[:i+1]...), "**")
				m.isolations = append(m.isolations, modelIsolation{segs: iso, capture: i})
				break
			}
		}
	}
	return m
}

// pathSegments splits a path for matching: one trailing slash is ignored,
// and the root has no segment.
func pathSegments(path string) []string {
	rest := strings.TrimSuffix(path[1:], "/")
	if rest == "" {
		return nil
	}
	return strings.Split(rest, "/")
}

func lowerASCIIString(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// modelMatch matches path segments against pattern segments: a literal is
// compared exactly (or without ASCII case with fold), "{name}" and "*" take
// one non-empty segment, "**" the rest, possibly empty.
func modelMatch(pattern, segs []string, fold bool) bool {
	for i, ps := range pattern {
		if ps == "**" {
			return true
		}
		if i >= len(segs) || segs[i] == "" {
			return false
		}
		switch {
		case ps == "*" || strings.HasPrefix(ps, "{") && strings.HasSuffix(ps, "}"):
		case fold:
			if lowerASCIIString(ps) != lowerASCIIString(segs[i]) {
				return false
			}
		default:
			if ps != segs[i] {
				return false
			}
		}
	}
	return len(segs) == len(pattern)
}

// allows reports whether the policy admits key k (nil: no key) for method
// on path, read the way an upstream routes it.
func (m *modelPolicy) allows(method, path string, fold bool, k *testKey) bool {
	p := m.p
	segs := pathSegments(path)
	isolated, project := false, ""
	for _, iso := range m.isolations {
		if modelMatch(iso.segs, segs, fold) {
			isolated, project = true, segs[iso.capture]
			break
		}
	}
	var route *Route
	for i := range p.Routes {
		r := &p.Routes[i]
		methodOK := len(r.Methods) == 0
		for _, rm := range r.Methods {
			methodOK = methodOK || rm == method
		}
		if methodOK && modelMatch(m.routes[i], segs, fold) {
			route = r
			break
		}
	}
	switch {
	case route != nil && route.Public:
		return true
	case route == nil && p.Unmatched == UnmatchedAllow:
		return true
	case k == nil:
		return false
	case isolated && k.project != project:
		return false
	case route != nil:
		return route.Require == "" || p.Grants(k.scopes, route.Require)
	case p.Unmatched == UnmatchedAuthenticate:
		return true
	case p.Unmatched == UnmatchedRequireSuper:
		return p.Grants(k.scopes, p.SuperScope)
	default:
		return false
	}
}

// upstreamMethods are the methods the fuzzer picks from by index.
var upstreamMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"}

// upstreamSeeds are spellings that some upstream reads as another
// resource, and the legitimate requests they imitate.
var upstreamSeeds = []string{
	// Legitimate requests.
	"/api/v1/trading-signals",
	"/api/v1/trading-signals/s1?limit=10",
	"/api/v1/agents/abc",
	"/api/v1/api-keys",
	"/api/v1/api-keys/k1",
	"/healthz",
	"/api/v1/projects",
	"/api/v1/projects/pa/graph",
	"/api/v1/projects/pb",
	"/api/v1/repositories",
	"/Admin/Settings/x",
	"/org/o1/p/pa/files",
	"/files/f1/raw",
	"/public/x",
	"/",
	// Servlet path parameters, raw and encoded.
	"/api/v1/trading-signals/..;/agents",
	"/api/v1/projects;/pb/graph",
	"/api/v1;x/projects/pb/graph",
	"/api/v1/projects%3b/pb/graph",
	"/api/v1/projects/pa/..;/pb/graph",
	"/public/..;/Admin/Settings/x",
	// Case.
	"/api/v1/PROJECTS/pb/graph",
	"/HEALTHZ",
	"/admin/settings/x",
	"/ORG/o1/p/pb/x",
	"/API/V1/API-KEYS",
	// Dot segments and slashes, raw, encoded and double-encoded.
	"/api/v1/projects/",
	"//",
	"/x/..",
	"/api/v1/trading-signals/../agents",
	"/api/v1/trading-signals/%2e%2e/agents",
	"/api/v1/trading-signals/%252e%252e/agents",
	"/api/v1/projects/pa/%252e%252e/pb/graph",
	"/api/v1//projects/pb/graph",
	"/api/v1/%2570rojects/pb/graph",
	"/public/%252e%252e/org/o1/p/pb",
	// A decoded "%uXXXX" is a UTF-16 escape to a second, %u-aware decoding.
	"/api/v1/trading-signals/%25u002e%25u002e/agents",
	"/api/v1/%25u0070rojects/pb/graph",
	"/api/v1/projects/pa/%25u002e%25u002e/pb/graph",
	// Unicode that folds or normalises to ASCII.
	"/api/v1/trading-signals/\uff0e\uff0e/agents",
	"/api/v1/trading-signals/%EF%BC%8E%EF%BC%8E/agents",
	"/api/v1/\u212aeys",
	"/api/v1/project\u017f/pb/graph",
	"/api/v1/pro\ufb01le",
	"/\u0131d",
	"/org/o1/\u1d3e/pb/x",
	// Backslashes.
	`/api/v1/trading-signals/x\..\..\agents`,
	"/api/v1/trading-signals/x%5c..%5c..%5cagents",
	"/api/v1/projects/pa/x%5c..%5c..%5cpb/graph",
	`/public/x\..\..\Admin\Settings`,
}

// FuzzUpstreamReading is a differential test of the rule the sidecar stands
// on: a request is judged only when every mainstream upstream would act on
// the same resource. For a raw request target it computes the sidecar's
// decision (NormalizePath, Policy.Match and the decision rules of the authz
// package) and, independently, the path each modelled upstream would route
// on. Whenever the sidecar admits a key, a reference judge must admit that
// key for every upstream's reading too: no spelling may earn a broader
// decision from the sidecar than the request the upstream acts on deserves.
// For the exact reading (decode once, keep everything), which is the
// canonical path itself, the reference judge must agree with the sidecar
// both ways; that keeps the judge honest.
func FuzzUpstreamReading(f *testing.F) {
	pols := upstreamPolicies(f)
	for _, s := range upstreamSeeds {
		for i := range upstreamMethods {
			f.Add(s, uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, raw string, methodIndex uint8) {
		method := upstreamMethods[int(methodIndex)%len(upstreamMethods)]
		canonical, err := NormalizePath(raw)
		if err != nil {
			if !errors.Is(err, ErrAmbiguousPath) {
				t.Fatalf("NormalizePath(%q) error = %v, want ErrAmbiguousPath", raw, err)
			}
			return
		}
		if !strings.HasPrefix(canonical, "/") {
			t.Fatalf("NormalizePath(%q) = %q, does not start with /", raw, canonical)
		}
		type reading struct {
			name string
			path string
			fold bool
		}
		readings := make([]reading, 0, len(upstreamReadings))
		for _, r := range upstreamReadings {
			readings = append(readings, reading{r.name, r.read(raw), r.fold})
		}
		for _, pol := range pols {
			for _, k := range pol.keys {
				allow, refused := sidecarAllows(pol.p, method, raw, k)
				if refused {
					break // refused for every key
				}
				for _, rd := range readings {
					if !strings.HasPrefix(rd.path, "/") {
						continue
					}
					model := pol.model.allows(method, rd.path, rd.fold, k)
					if rd.name == "exact" && model != allow {
						t.Fatalf("%s: %s %q (canonical %q): sidecar allow=%v but the reference judge on the exact reading %q says %v for key %s",
							pol.name, method, raw, canonical, allow, rd.path, model, keyName(k))
					}
					if allow && !model {
						t.Fatalf("%s: %s %q (canonical %q): sidecar allows key %s, but the %s upstream reads %q, where the key is denied",
							pol.name, method, raw, canonical, keyName(k), rd.name, rd.path)
					}
				}
			}
		}
	})
}

func keyName(k *testKey) string {
	if k == nil {
		return "(none)"
	}
	return "{" + k.name + "}"
}
