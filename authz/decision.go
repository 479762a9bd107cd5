package authz

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/bearer"
	"github.com/extauthz/extauthz/keycheck"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/quota"
	"github.com/extauthz/extauthz/ratelimit"
)

// KeyLookup finds a key record by the SHA-256 of the raw key. Lookup
// returns an error wrapping keystore.ErrNotFound for an unknown hash; any
// other error means the store is unusable. Revision is the store revision
// the lookups answer from: the front doors rebuild what they cache for
// allowed keys when it moves. *keystore.Store and the replication follower
// implement it.
type KeyLookup interface {
	Lookup(keystore.Hash) (keystore.LookupResult, error)
	Revision() uint64
}

// UsageRecorder is told about every allowed request's key, for last-used
// times and quotas (quota: the key has one, so the use must reach the
// admin). It must not block.
type UsageRecorder interface {
	Record(keyID string, at time.Time, quota bool)
}

// Kind classifies a decision; it picks the HTTP status and the gRPC code.
type Kind uint8

// Decision kinds, one per row of the decision table (docs/policy.md).
const (
	Allow           Kind = iota
	Unauthenticated      // 401: no key, bad format, unknown, revoked, expired, inactive owner
	Forbidden            // 403: missing scope or other project's resource
	RateLimited          // 429: the key's rate limit or quota is exceeded
	AmbiguousPath        // 400 (HTTP), 403 through Envoy
	Unavailable          // 503 (HTTP), RPC error UNAVAILABLE (gRPC)
)

// The HTTP statuses of the decision table. The package speaks no HTTP
// itself: the front doors send these.
const (
	statusOK           = 200
	statusBadRequest   = 400
	statusUnauthorized = 401
	statusForbidden    = 403
	statusUnavailable  = 503
)

// Reasons, used in logs and the reason label of extauthz_checks_total.
const (
	ReasonOK            = "ok"
	ReasonPublic        = "public"
	ReasonMissingKey    = "missing_key"
	ReasonMultipleKeys  = "multiple_keys"
	ReasonBadFormat     = "bad_format"
	ReasonUnknown       = "unknown_key"
	ReasonRevoked       = "revoked"
	ReasonExpired       = "expired"
	ReasonInactiveOwner = "inactive_owner"
	ReasonMissingScope  = "missing_scope"
	ReasonWrongProject  = "wrong_project"
	ReasonRateLimited   = "rate_limited"
	ReasonUnmatched     = "unmatched_denied"
	ReasonAmbiguousPath = "ambiguous_path"
	ReasonConflict      = "ambiguous_forwarding"
	ReasonOverride      = "method_override"
	ReasonMethodCase    = "ambiguous_method"
	ReasonPathOverride  = "path_override"
	ReasonIdentityTwin  = "identity_twin"
	ReasonStoreError    = "store_error"
	ReasonStale         = "replica_unavailable"
)

// Credential header sources a key was found in.
const (
	FromAPIKey uint8 = 1 << iota
	FromBearer
)

// Request is one request to authorize, as a front door read it.
type Request struct {
	Frontend  string // the front door: "envoy" or "forwardauth"
	Method    string
	Host      string
	Path      string // request target as received: not decoded, may hold a query
	RequestID string
	SourceIP  string
	// APIKey holds the X-API-Key header values; Authorization the
	// Authorization header values. A proxy may have joined repeated
	// headers with commas.
	APIKey        []string
	Authorization []string
	// Conflict, when not empty, says why the front door could not tell
	// which request it is asked about (forwarded headers of two proxies,
	// a repeated one, none at all): Check refuses it with 400.
	Conflict string
	// MethodOverride, PathOverride and IdentityTwin report that the
	// request carries one of MethodOverrideHeaders, PathOverrideHeaders or
	// an identity header spelt with '_' or '.' (see NoteHeader).
	// ContentType holds the Content-Type header values.
	MethodOverride, PathOverride, IdentityTwin bool
	ContentType                                []string
	// TraceParent and TraceState are the request's W3C trace-context
	// headers, read only when tracing is on (Authorizer.Tracing).
	TraceParent, TraceState string
}

// Decision is the outcome of Check.
type Decision struct {
	Kind   Kind
	Reason string
	Status int    // HTTP status for the HTTP front door
	Body   []byte // JSON error body; nil on allow
	// Key is the matched record on allow (and on denials after lookup).
	Key *keystore.Key
	// Sources tells which credential headers carried the key (FromAPIKey,
	// FromBearer), so the front doors can strip them upstream.
	Sources uint8
	// WWWAuthenticate is set on 401s.
	WWWAuthenticate string
	// Strip reports whether the credential headers should be removed upstream.
	Strip bool
	// Limit is the key's rate limit and its bucket after the check, when
	// the key has one (Limited); ShowLimit reports whether the policy
	// shows the RateLimit header fields to clients.
	Limit     Limit
	ShowLimit bool
	// Quota is the key's quota after the check, when it has one
	// (Quotaed).
	Quota Quota
}

// Options configures an Authorizer.
type Options struct {
	Keys   KeyLookup
	Policy *policy.Policy
	// Available, when set, is asked before every check; a non-nil error
	// makes the check answer 503 / UNAVAILABLE (stale or unloaded replica).
	Available func() error
	Usage     UsageRecorder
	Now       func() time.Time
	Logger    zerolog.Logger
	Metrics   *Metrics
	// TracerProvider, when set, gives every check a span (SpanName);
	// nil means no tracing and no cost. Propagator reads trace context
	// (default: W3C trace context).
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// MaxBuckets bounds the rate-limit buckets (0: ratelimit.DefaultMaxBuckets).
	MaxBuckets int
	// Quota counts this process's uses of quota'd keys against its
	// allowance; nil means a ledger with the default allowance that is
	// never given back (nothing acknowledges usage reports to it).
	Quota *quota.Ledger
	// QuotaRetryAfter is the Retry-After of a 429 by the local quota
	// allowance: the usage report interval. Zero sends none.
	QuotaRetryAfter time.Duration
}

// Authorizer makes decisions. It is safe for concurrent use; SetPolicy
// swaps the policy atomically.
type Authorizer struct {
	keys      KeyLookup
	available func() error
	usage     UsageRecorder
	now       func() time.Time // nil: the check's start time is now
	log       zerolog.Logger
	metrics   *Metrics
	trace     *tracing // nil: checks are not traced
	buckets   *ratelimit.Buckets
	state     atomic.Pointer[state]

	quota      *quota.Ledger
	quotaRetry time.Duration
}

// state is a policy with its response bodies rendered once.
type state struct {
	pol          *policy.Policy
	missingKey   []byte
	invalidKey   []byte
	wrongProject []byte
	rateLimited  []byte
	scopeBodies  map[string][]byte // missingScope per scope, including superScope
	wwwAuth      string
	strip        bool
}

var (
	bodyAmbiguous    = errorBody("ambiguous request path")
	bodyConflict     = errorBody("ambiguous forwarded request")
	bodyOverride     = errorBody("ambiguous request method")
	bodyIdentityTwin = errorBody("ambiguous identity header")
	bodyUnavailable  = errorBody("authorization unavailable")
)

// New returns an Authorizer. Keys and Policy are required.
func New(opts Options) *Authorizer {
	a := &Authorizer{keys: opts.Keys, available: opts.Available, usage: opts.Usage, now: opts.Now, log: opts.Logger, metrics: opts.Metrics,
		buckets: ratelimit.New(opts.MaxBuckets), quota: opts.Quota, quotaRetry: opts.QuotaRetryAfter}
	if a.quota == nil {
		a.quota = quota.New(quota.Options{})
	}
	if opts.TracerProvider != nil {
		a.trace = &tracing{tracer: opts.TracerProvider.Tracer("github.com/extauthz/extauthz/authz"), propagator: opts.Propagator}
		if a.trace.propagator == nil {
			a.trace.propagator = propagation.TraceContext{}
		}
	}
	a.SetPolicy(opts.Policy)
	return a
}

// SetPolicy replaces the policy for every later check.
func (a *Authorizer) SetPolicy(p *policy.Policy) {
	m := p.Messages
	st := &state{
		pol:          p,
		missingKey:   errorBody(m.MissingKey),
		invalidKey:   errorBody(m.InvalidKey),
		wrongProject: errorBody(m.WrongProject),
		rateLimited:  errorBody(m.RateLimited),
		scopeBodies:  make(map[string][]byte, len(p.Scopes)),
		wwwAuth:      `Bearer realm="` + strings.ReplaceAll(p.Realm, `"`, `'`) + `"`,
		strip:        p.Strip(),
	}
	for _, s := range p.Scopes {
		st.scopeBodies[s] = errorBody(m.MissingScopeFor(s))
	}
	a.state.Store(st)
}

// Check decides r. It never returns an error: an unusable store is the
// Unavailable decision.
func (a *Authorizer) Check(ctx context.Context, r *Request) Decision {
	start := time.Now()
	now := start // one clock read serves the timing and the decision
	if a.now != nil {
		now = a.now()
	}
	var span trace.Span
	if a.trace != nil {
		ctx, span = a.startSpan(ctx, r)
	}
	st := a.state.Load()
	d, path := a.decide(st, r, now)
	if d.Reason == reasonQuotaReread {
		if d, path = a.decide(st, r, now); d.Reason == reasonQuotaReread {
			d.Reason = ReasonQuotaAllowance // stale twice: where it cannot count, it denies
		}
	}
	a.observe(ctx, r, &d, path, time.Since(start))
	if span != nil {
		endSpan(span, r, &d)
	}
	return d
}

func (a *Authorizer) decide(st *state, r *Request, now time.Time) (Decision, string) {
	if a.available != nil {
		if err := a.available(); err != nil {
			return Decision{Kind: Unavailable, Reason: ReasonStale, Status: statusUnavailable, Body: bodyUnavailable}, ""
		}
	}
	if r.Conflict != "" {
		return Decision{Kind: AmbiguousPath, Reason: ReasonConflict, Status: statusBadRequest, Body: bodyConflict}, ""
	}
	pol := st.pol
	if reason := overridden(pol, r); reason != "" {
		body := bodyOverride
		switch reason {
		case ReasonPathOverride:
			body = bodyAmbiguous
		case ReasonIdentityTwin:
			body = bodyIdentityTwin
		}
		return Decision{Kind: AmbiguousPath, Reason: reason, Status: statusBadRequest, Body: body}, ""
	}
	path, err := policy.NormalizePath(r.Path)
	if err != nil {
		return Decision{Kind: AmbiguousPath, Reason: ReasonAmbiguousPath, Status: statusBadRequest, Body: bodyAmbiguous}, ""
	}
	match := pol.Match(r.Method, path)
	if match.Ambiguous {
		return Decision{Kind: AmbiguousPath, Reason: ReasonAmbiguousPath, Status: statusBadRequest, Body: bodyAmbiguous}, path
	}
	if (match.Route != nil && match.Route.Public) || (match.Route == nil && pol.Unmatched == policy.UnmatchedAllow) {
		return Decision{Kind: Allow, Reason: ReasonPublic, Status: statusOK}, path
	}

	raw, sources, multiple := extractKey(pol.Keys.Sources, r)
	if multiple {
		return st.unauthenticated(ReasonMultipleKeys, st.invalidKey, sources), path
	}
	if raw == "" {
		return st.unauthenticated(ReasonMissingKey, st.missingKey, 0), path
	}
	rev := a.keys.Revision() // before the lookup: the record is at least this recent (package quota)
	k, verdict, err := keycheck.Check(pol, a.keys, raw, now)
	if err != nil {
		a.log.Error().Err(err).Str("frontend", r.Frontend).Msg("key store lookup failed")
		return Decision{Kind: Unavailable, Reason: ReasonStoreError, Status: statusUnavailable, Body: bodyUnavailable}, path
	}
	var reason string
	switch verdict {
	case keycheck.BadFormat:
		reason = ReasonBadFormat
	case keycheck.Unknown:
		reason = ReasonUnknown
	case keycheck.Revoked:
		reason = ReasonRevoked
	case keycheck.Expired:
		reason = ReasonExpired
	case keycheck.InactiveOwner:
		reason = ReasonInactiveOwner
	}
	if reason != "" {
		d := st.unauthenticated(reason, st.invalidKey, sources)
		d.Key = k
		return d, path
	}

	if match.Isolated && k.ProjectID != match.Project {
		return Decision{Kind: Forbidden, Reason: ReasonWrongProject, Status: statusForbidden, Body: st.wrongProject, Key: k, Sources: sources}, path
	}
	if route := match.Route; route != nil {
		if route.Require != "" && !pol.Grants(k.Scopes, route.Require) {
			return st.forbiddenScope(route.Require, k, sources), path
		}
	} else {
		switch pol.Unmatched {
		case policy.UnmatchedAuthenticate:
		case policy.UnmatchedRequireSuper:
			if !pol.Grants(k.Scopes, pol.SuperScope) {
				return st.forbiddenScope(pol.SuperScope, k, sources), path
			}
		default: // deny
			d := st.forbiddenScope(pol.SuperScope, k, sources)
			d.Reason = ReasonUnmatched
			return d, path
		}
	}
	d := Decision{Kind: Allow, Reason: ReasonOK, Status: statusOK, Key: k, Sources: sources, Strip: st.strip}
	if k.Quota != nil && !a.takeQuota(&d, st, k, rev) {
		return d, path
	}
	if !a.limit(&d, pol, match.Route, k, now) {
		if k.Quota != nil {
			a.quota.Refund(k.ID)
			d.Quota.Remaining++
		}
		d.Kind, d.Reason, d.Status, d.Body, d.Strip = RateLimited, ReasonRateLimited, statusTooManyRequests, st.rateLimited, false
		return d, path
	}
	if a.usage != nil {
		a.usage.Record(k.ID, now, k.Quota != nil)
	}
	return d, path
}

func (st *state) unauthenticated(reason string, body []byte, sources uint8) Decision {
	return Decision{Kind: Unauthenticated, Reason: reason, Status: statusUnauthorized, Body: body, Sources: sources, WWWAuthenticate: st.wwwAuth}
}

func (st *state) forbiddenScope(scope string, k *keystore.Key, sources uint8) Decision {
	body, ok := st.scopeBodies[scope]
	if !ok {
		body = errorBody(st.pol.Messages.MissingScopeFor(scope))
	}
	return Decision{Kind: Forbidden, Reason: ReasonMissingScope, Status: statusForbidden, Body: body, Key: k, Sources: sources}
}

// extractKey collects the key candidates from the policy's sources in
// order. It returns the key, the sources that carried it, and whether the
// request carried more than one different key.
func extractKey(sources []policy.Source, r *Request) (key string, from uint8, multiple bool) {
	add := func(c string, src uint8) {
		c = trimOWS(c)
		if c == "" {
			return
		}
		switch {
		case key == "":
			key, from = c, src
		case c == key:
			from |= src
		default:
			multiple = true
			from |= src
		}
	}
	for _, s := range sources {
		switch s {
		case policy.SourceAPIKey:
			for _, v := range r.APIKey {
				for part := range strings.SplitSeq(v, ",") {
					add(part, FromAPIKey)
				}
			}
		case policy.SourceBearer:
			for _, v := range r.Authorization {
				for part := range strings.SplitSeq(v, ",") {
					if tok, ok := bearerToken(part); ok {
						add(tok, FromBearer)
					}
				}
			}
		}
	}
	return key, from, multiple
}

// bearerToken returns the credential of an "Authorization: Bearer <token>"
// value; the scheme is case-insensitive (package bearer has the rule).
func bearerToken(v string) (string, bool) { return bearer.Token(v) }

// trimOWS removes HTTP's optional white space (spaces and tabs) around a
// field value and nothing else (package bearer has the rule).
func trimOWS(s string) string { return bearer.TrimOWS(s) }

// errorBody renders {"error":"<msg>"} without HTML escaping, byte for byte
// as the Nexgent and NexGraph API documentation prints it.
func errorBody(msg string) []byte {
	b := make([]byte, 0, len(msg)+12)
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
