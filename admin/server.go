package admin

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/secret"
)

// Limits and defaults of the admin API. docs/admin-api.md lists them too.
const (
	// MaxBodyBytes bounds every JSON request body; a larger body is a 413.
	// The NDJSON import streams and is bounded per line instead.
	MaxBodyBytes = 1 << 20
	// MaxImportLineBytes bounds one NDJSON import line (without its newline);
	// a longer line is reported as an error for that line and skipped.
	MaxImportLineBytes = 64 << 10
	// ImportChunkSize is how many imported keys go into one transaction.
	ImportChunkSize = 250
	// ImportIdleTimeout is how long an import may wait for the client's
	// next chunk: after each committed chunk the connection's read deadline
	// moves this far ahead, so a long import outlives the server's
	// ReadTimeout while a stalled client is still cut off.
	ImportIdleTimeout = time.Minute
	// MaxImportErrors is how many per-line errors an import response lists;
	// the rest are only counted in "errorsOmitted".
	MaxImportErrors = 1000
	// DefaultGracePeriod is how long the old key of a rotation stays valid
	// when the request gives no gracePeriod.
	DefaultGracePeriod = 24 * time.Hour
	// MaxGracePeriod is the longest accepted rotation grace period.
	MaxGracePeriod = 365 * 24 * time.Hour
	// DefaultAuditLimit and MaxAuditLimit bound GET /api/v1/audit.
	DefaultAuditLimit = 1000
	MaxAuditLimit     = 10000
	// MaxNameLength bounds names, labels, user ids and project ids (in
	// characters, i.e. runes).
	MaxNameLength = 200
	// MaxImportPrefixLength bounds the display prefix of an imported key.
	MaxImportPrefixLength = 16
)

// Options configures New. Store and Policy are required; every other field
// has a usable zero value.
type Options struct {
	// Store is the authoritative key store (keystore.Open).
	Store *keystore.Store
	// Policy returns the current policy; it is called on every request so a
	// reloaded policy takes effect at once. It must not return nil.
	Policy func() *policy.Policy
	// AdminToken is the operator token that may call every route. Empty
	// disables operator access (only JWT users and project keys remain).
	// Presented tokens are compared in constant time on SHA-256 digests.
	AdminToken string
	// JWT configures user access tokens for the Nexgent routes. With
	// neither an HS256 secret nor a JWKS file, JWTs are not accepted.
	JWT JWTOptions
	// PublicProjectCreate lets POST /api/v1/projects be called without any
	// credential (NexGraph's documented behaviour). False requires the
	// operator token.
	PublicProjectCreate bool
	// PrincipalRate limits the calls of each JWT user and each project key
	// (one bucket per user or key, answered 429 with Retry-After beyond
	// it). The zero Rate is no limit; DefaultPrincipalRate is the
	// command's default.
	PrincipalRate Rate
	// OperatorRate limits the calls made with the operator token. The zero
	// Rate (the command's default) is no limit: the operator token can do
	// anything, so a limit on it protects nothing from its holder, and
	// bulk imports and provisioning scripts use it.
	OperatorRate Rate
	// PublicCreateRate limits project creations by anyone but the operator
	// (possible with PublicProjectCreate, with or without a credential) per
	// source address. The zero Rate is no limit; DefaultPublicCreateRate is
	// the command's default.
	PublicCreateRate Rate
	// Logger receives one line per change and per server error (the caller
	// adds component=admin). Nothing secret is ever logged. The zero Logger
	// discards everything.
	Logger zerolog.Logger
	// Registerer receives extauthz_admin_requests_total{route,code}. Nil
	// means the metric is kept but not registered anywhere.
	Registerer prometheus.Registerer
	// Now is the clock for expiry checks and validation ("expiresAt must
	// be in the future"). Nil means time.Now. Record times come from the
	// store's own clock, so tests give both the same fake clock.
	Now func() time.Time
}

// JWTOptions configures the verification of user access tokens.
type JWTOptions struct {
	// HS256Secret enables HS256 tokens signed with this secret. It must be
	// at least 32 bytes (RFC 7518, section 3.2). Empty disables HS256.
	HS256Secret []byte
	// JWKSFile is a JSON Web Key Set file whose RSA (RS256, at least 2048
	// bits) and EC P-256 (ES256) public keys verify tokens. Keys of other
	// types or with "use" other than "sig" are ignored. Empty disables
	// RS256 and ES256. It is read when the server starts.
	JWKSFile string
	// Issuer, when not empty, must equal the token's "iss".
	Issuer string
	// Audience, when not empty, must be one of the token's "aud".
	Audience string
	// Leeway is the clock skew tolerated on exp and nbf. Zero means none.
	Leeway time.Duration
}

// Server serves the admin API. Create it with New.
type Server struct {
	store        *keystore.Store
	policy       func() *policy.Policy
	now          func() time.Time
	log          zerolog.Logger
	operator     secret.Token // the zero Token when there is no operator
	publicCreate bool
	jwt          *jwtVerifier
	mux          *http.ServeMux
	requests     *prometheus.CounterVec

	principalLimit, operatorLimit, publicCreateLimit *limiters // nil: no limit
}

// New validates opts and returns a Server. It reads the JWKS file, if any.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("admin: Options.Store is required")
	}
	if opts.Policy == nil {
		return nil, errors.New("admin: Options.Policy is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	for _, r := range []struct {
		name string
		r    Rate
	}{{"PrincipalRate", opts.PrincipalRate}, {"OperatorRate", opts.OperatorRate}, {"PublicCreateRate", opts.PublicCreateRate}} {
		if r.r.N < 0 || (r.r.N > 0 && r.r.Per <= 0) {
			return nil, fmt.Errorf("admin: Options.%s %v: want a positive count per positive period", r.name, r.r)
		}
	}
	s := &Server{
		store:        opts.Store,
		policy:       opts.Policy,
		now:          opts.Now,
		log:          opts.Logger,
		publicCreate: opts.PublicProjectCreate,
		operator:     secret.NewToken(opts.AdminToken),
		mux:          http.NewServeMux(),

		principalLimit:    newLimiters(opts.PrincipalRate, MaxRateKeys),
		operatorLimit:     newLimiters(opts.OperatorRate, 1),
		publicCreateLimit: newLimiters(opts.PublicCreateRate, MaxRateKeys),
	}
	v, err := newJWTVerifier(opts.JWT, opts.Now)
	if err != nil {
		return nil, err
	}
	s.jwt = v
	requests, err := newRequestMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s.requests = requests
	for _, rt := range routes {
		s.mux.Handle(rt.pattern, s.guard(rt))
	}
	return s, nil
}

// access says which callers may use a route.
type access int

const (
	// accessUser: a JWT user (own keys) or the operator: the Nexgent routes.
	accessUser access = iota
	// accessProject: a key of the project in the path, or the operator: the
	// NexGraph routes.
	accessProject
	// accessOperator: the operator only: the operator routes.
	accessOperator
	// accessProjectCreate: anyone with PublicProjectCreate, else the operator.
	accessProjectCreate
)

// handler serves one route for an authorized caller p. It writes the
// response itself on success; an error is answered by respond: a
// *requestError with its status and message, anything else as a logged
// 500.
type handler func(s *Server, w http.ResponseWriter, r *http.Request, p principal) error

type route struct {
	pattern string
	access  access
	handle  handler
}

// routes is the whole route table; tests walk it.
var routes = []route{
	{"POST /api/v1/api-keys", accessUser, (*Server).createKey},
	{"GET /api/v1/api-keys", accessUser, (*Server).listKeys},
	{"GET /api/v1/api-keys/{id}", accessUser, (*Server).getKey},
	{"DELETE /api/v1/api-keys/{id}", accessUser, (*Server).deleteKey},
	{"PATCH /api/v1/api-keys/{id}", accessUser, (*Server).updateKey},
	{"POST /api/v1/api-keys/{id}/rotate", accessUser, (*Server).rotateKey},
	{"POST /api/v1/api-keys/import", accessOperator, (*Server).importKeys},
	{"POST /api/v1/projects", accessProjectCreate, (*Server).createProject},
	{"GET /api/v1/projects/{pid}/api-keys", accessProject, (*Server).listProjectKeys},
	{"POST /api/v1/projects/{pid}/api-keys", accessProject, (*Server).createProjectKey},
	{"PATCH /api/v1/projects/{pid}/api-keys/{kid}", accessProject, (*Server).updateProjectKey},
	{"DELETE /api/v1/projects/{pid}/api-keys/{kid}", accessProject, (*Server).revokeProjectKey},
	{"PUT /api/v1/users/{id}", accessOperator, (*Server).setUser},
	{"GET /api/v1/audit", accessOperator, (*Server).audit},
	{"GET /api/v1/backup", accessOperator, (*Server).backup},
}

// unmatchedRoute is the metric label of requests no route matched.
const unmatchedRoute = "unmatched"

// ServeHTTP dispatches to the route table and counts the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		pattern = unmatchedRoute
		jsonresp.Unmatched(sw, r, h)
	} else {
		s.mux.ServeHTTP(sw, r)
	}
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	s.requests.WithLabelValues(pattern, strconv.Itoa(sw.status)).Inc()
}

// guard authenticates the caller, enforces the route's access rule and
// calls the handler; every error of either ends in respond.
func (s *Server) guard(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authorize(r, rt.access)
		if err == nil {
			err = s.rateLimit(r, p, rt.access)
		}
		if err == nil {
			err = rt.handle(s, w, r, p)
		}
		if err != nil {
			s.respond(w, r, p, err)
		}
	})
}

// respond is the one place an error becomes a response: a *requestError
// is answered with its status, message and challenge; anything else is an
// unexpected failure, logged and answered 500 without details.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, p principal, err error) {
	var re *requestError
	if errors.As(err, &re) {
		if re.challenge != "" {
			w.Header().Set("WWW-Authenticate", re.challenge)
		}
		if re.retryAfter > 0 {
			w.Header().Set("Retry-After", retryAfterSeconds(re.retryAfter))
		}
		jsonresp.Error(w, re.status, re.msg)
		return
	}
	s.log.Error().Err(err).Str("actor", p.actor()).Str("route", r.Pattern).Msg("admin request failed")
	jsonresp.Error(w, http.StatusInternalServerError, "internal error")
}

// statusWriter remembers the status code written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logChange writes the one log line of a change. It never sees a raw key.
func (s *Server) logChange(r *http.Request, p principal, action string, status int, k *keystore.Key) {
	ev := s.log.Info().
		Str("actor", p.actor()).
		Str("action", action).
		Str("route", r.Pattern).
		Int("status", status)
	if k != nil {
		ev = ev.Str("key_id", k.ID).Str("key_prefix", k.Prefix)
		if k.UserID != "" {
			ev = ev.Str("user_id", k.UserID)
		}
		if k.ProjectID != "" {
			ev = ev.Str("project_id", k.ProjectID)
		}
	}
	ev.Msg("admin change")
}
