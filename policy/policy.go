package policy

import (
	"fmt"
	"os"
	"strings"

	"github.com/extauthz/extauthz/keystore"
)

// Source names where a request's API key is read from.
type Source string

// The credential sources, tried in the order the policy lists them.
const (
	// SourceAPIKey is the X-API-Key request header.
	SourceAPIKey Source = "x-api-key"
	// SourceBearer is an "Authorization: Bearer <key>" request header.
	SourceBearer Source = "bearer"
)

// Unmatched is what happens to a request that no route matches.
type Unmatched string

// The values of the policy's "unmatched" field.
const (
	// UnmatchedDeny rejects the request (the default).
	UnmatchedDeny Unmatched = "deny"
	// UnmatchedAuthenticate admits any request carrying a valid key.
	UnmatchedAuthenticate Unmatched = "authenticate"
	// UnmatchedRequireSuper admits a valid key holding the super scope.
	UnmatchedRequireSuper Unmatched = "require-super"
	// UnmatchedAllow admits the request without a key.
	UnmatchedAllow Unmatched = "allow"
)

// FormBodies says whether a POST with a form body may be judged
// (docs/security.md, "Method overrides"): the front doors never see the
// body, and Rails, Laravel, Symfony, Express's method-override and
// ASP.NET Core can run such a POST as the method a _method form field
// names.
type FormBodies string

// The values of the policy's "formBodies" field.
const (
	// FormBodiesRefuse refuses a POST whose Content-Type is a form or
	// cannot be read (the default).
	FormBodiesRefuse FormBodies = "refuse"
	// FormBodiesAllow judges such a POST by its method: the upstream
	// never takes the method from a body.
	FormBodiesAllow FormBodies = "allow"
)

const defaultRealm = "api"

// Default messages, used for each message the policy leaves empty.
const (
	defaultMissingKey   = "API key required"
	defaultInvalidKey   = "Invalid API key"
	defaultMissingScope = "API key missing required scope: {scope}"
	defaultWrongProject = "Forbidden: API key does not belong to this project"
	defaultRateLimited  = "Rate limit exceeded"
)

// scopePlaceholder is replaced by the missing scope in Messages.MissingScope.
const scopePlaceholder = "{scope}"

// Route is one entry of the policy's ordered route list.
type Route struct {
	// Methods lists the upper-case HTTP methods the route applies to; empty
	// means every method.
	Methods []string `json:"methods,omitempty"`
	// Path is the path pattern (see the package documentation).
	Path string `json:"path"`
	// Require is the scope a key needs; empty with Public false means any
	// valid key.
	Require string `json:"require,omitempty"`
	// Public admits requests without a key.
	Public bool `json:"public,omitempty"`
	// Project names a capture of Path whose value must be the key's project.
	Project string `json:"project,omitempty"`
	// Cost is the number of tokens a request takes from its key's rate
	// limit; nil means 1. Use RequestCost to read it.
	Cost *int64 `json:"cost,omitempty"`

	pattern pattern
}

// RequestCost is the number of tokens a request matching r takes from its
// key's rate limit (cost, default 1).
func (r *Route) RequestCost() int64 {
	if r == nil || r.Cost == nil {
		return 1
	}
	return *r.Cost
}

// MaxCost bounds a route's cost.
const MaxCost = 1_000_000

// RateLimits configures the per-key rate limits.
type RateLimits struct {
	// Default is the limit of a key that has none of its own; nil leaves
	// such keys unlimited.
	Default *RateLimit `json:"default,omitempty"`
	// Headers sends the RateLimit-Policy and RateLimit header fields to
	// clients (on allowed responses where the proxy can, and on 429s);
	// nil means true. Use Policy.RateLimitHeaders to read it. Retry-After
	// is always sent on a 429.
	Headers *bool `json:"headers,omitempty"`

	limit *keystore.RateLimit // Default, parsed
}

// RateLimit is a limit as the policy file writes it: {limit: 100,
// duration: 1m}.
type RateLimit struct {
	Limit    int64  `json:"limit"`
	Duration string `json:"duration"`
}

// Messages are the texts returned to clients on denial.
type Messages struct {
	MissingKey   string `json:"missingKey,omitempty"`
	InvalidKey   string `json:"invalidKey,omitempty"`
	MissingScope string `json:"missingScope,omitempty"`
	WrongProject string `json:"wrongProject,omitempty"`
	RateLimited  string `json:"rateLimited,omitempty"`
}

// MissingScopeFor returns MissingScope with every "{scope}" replaced by scope.
func (m Messages) MissingScopeFor(scope string) string {
	return strings.ReplaceAll(m.MissingScope, scopePlaceholder, scope)
}

// Keys describes the accepted API keys and where requests carry them.
type Keys struct {
	// Formats are the accepted key formats; the first one mints new keys.
	Formats []Format `json:"formats"`
	// Sources are tried in order to extract the key from a request.
	Sources []Source `json:"sources,omitempty"`
	// StripCredential removes the credential header before the request is
	// forwarded upstream; nil means true. Use Policy.Strip to read it.
	StripCredential *bool `json:"stripCredential,omitempty"`
}

// Policy is a parsed, validated and compiled policy file.
type Policy struct {
	Keys       Keys       `json:"keys"`
	Realm      string     `json:"realm,omitempty"`
	Scopes     []string   `json:"scopes,omitempty"`
	SuperScope string     `json:"superScope,omitempty"`
	Routes     []Route    `json:"routes,omitempty"`
	Unmatched  Unmatched  `json:"unmatched,omitempty"`
	Messages   Messages   `json:"messages,omitempty"`
	RateLimits RateLimits `json:"rateLimits,omitempty"`
	FormBodies FormBodies `json:"formBodies,omitempty"`

	// isolations are the path sets that project routes isolate, each
	// once: every request under one must carry a key of the project it
	// names, whichever route matches it.
	isolations []pattern
	// foldSensitive is set when a route literal holds an upper-case
	// letter, so that even a lower-case path can match differently with
	// case folded.
	foldSensitive bool
}

// Match is the result of matching a request against the routes.
type Match struct {
	// Route is the first matching route, nil when none matched.
	Route *Route
	// Isolated reports that the path lies under a project route's
	// isolated prefix (see Isolations), whichever route matched: only a
	// key of Project may be admitted.
	Isolated bool
	// Project is the project the path names when Isolated, "" otherwise.
	Project string
	// Ambiguous reports that the path matches differently when its ASCII
	// case is folded, as case-insensitive routers (Express, ASP.NET Core)
	// read it; such a request must be refused, not judged.
	Ambiguous bool
}

// Parse strictly decodes a policy file, applies defaults, validates it and
// compiles its routes. Any problem yields a *ValidationError listing all of
// them.
func Parse(data []byte) (*Policy, error) {
	p, err := decode(data)
	if err != nil {
		return nil, err
	}
	p.applyDefaults()
	if problems := p.validate(); len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return p, nil
}

// Load reads and parses the policy file at path.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: load: %w", err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", path, err)
	}
	return p, nil
}

// Strip reports whether the credential is removed before forwarding
// (keys.stripCredential, default true).
func (p *Policy) Strip() bool {
	return p.Keys.StripCredential == nil || *p.Keys.StripCredential
}

// DefaultRateLimit returns rateLimits.default, or nil when keys without a
// limit of their own are unlimited.
func (p *Policy) DefaultRateLimit() *keystore.RateLimit { return p.RateLimits.limit }

// RateLimitHeaders reports whether the RateLimit header fields are sent to
// clients (rateLimits.headers, default true).
func (p *Policy) RateLimitHeaders() bool {
	return p.RateLimits.Headers == nil || *p.RateLimits.Headers
}

// MintFormat returns the format new keys are minted in: the first one. It is
// the zero Format for a policy without formats, which Parse never returns.
func (p *Policy) MintFormat() Format {
	if len(p.Keys.Formats) == 0 {
		return Format{}
	}
	return p.Keys.Formats[0]
}

// ValidKey reports whether raw matches any of the policy's key formats.
func (p *Policy) ValidKey(raw string) bool {
	for i := range p.Keys.Formats {
		if p.Keys.Formats[i].Match(raw) {
			return true
		}
	}
	return false
}

// KnownScope reports whether s is one of the policy's scopes.
func (p *Policy) KnownScope(s string) bool {
	for _, scope := range p.Scopes {
		if scope == s {
			return true
		}
	}
	return false
}

// Grants reports whether a key holding keyScopes may use a route requiring
// the scope required: keyScopes contains required or the super scope. It
// fails closed: an empty required scope is never granted, and empty entries
// of keyScopes grant nothing.
func (p *Policy) Grants(keyScopes []string, required string) bool {
	if required == "" {
		return false
	}
	for _, s := range keyScopes {
		if s == "" {
			continue
		}
		if s == required || s == p.SuperScope {
			return true
		}
	}
	return false
}

// Match returns the first route whose methods and pattern match the request,
// and the project isolation the path falls under. path must already be
// normalised by NormalizePath. Methods are compared exactly: "get" is not
// GET. The path is matched twice when its case could matter, once exactly
// and once with ASCII case folded; when the two disagree the result is
// Ambiguous. Match does not allocate.
func (p *Policy) Match(method, path string) Match {
	m := p.match(method, path, false)
	if p.foldSensitive || hasUpperASCII(path) {
		if p.match(method, path, true) != m {
			return Match{Ambiguous: true}
		}
	}
	return m
}

func (p *Policy) match(method, path string, fold bool) Match {
	var m Match
	for i := range p.isolations {
		if ok, project := p.isolations[i].match(path, fold); ok {
			m.Isolated, m.Project = true, project
			break
		}
	}
	for i := range p.Routes {
		r := &p.Routes[i]
		if !r.allowsMethod(method) {
			continue
		}
		if ok, _ := r.pattern.match(path, fold); ok {
			m.Route = r
			return m
		}
	}
	return m
}

// Isolations returns the patterns of the paths that project routes isolate,
// as written in a policy file ("/api/v1/projects/{project}/**").
func (p *Policy) Isolations() []string {
	out := make([]string, len(p.isolations))
	for i := range p.isolations {
		out[i] = p.isolations[i].String()
	}
	return out
}

// allowsMethod reports whether the route applies to method.
func (r *Route) allowsMethod(method string) bool {
	if len(r.Methods) == 0 {
		return true
	}
	for _, m := range r.Methods {
		if m == method {
			return true
		}
	}
	return false
}

// ValidationError lists every problem found in a policy file, each naming its
// field.
type ValidationError struct {
	Problems []string

	// err is the underlying decoding error, if any.
	err error
}

// Error joins the problems with "; ".
func (e *ValidationError) Error() string {
	if len(e.Problems) == 0 {
		return "invalid policy"
	}
	return strings.Join(e.Problems, "; ")
}

// Unwrap returns the underlying YAML or JSON decoding error, if any.
func (e *ValidationError) Unwrap() error {
	return e.err
}
