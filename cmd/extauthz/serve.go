package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/extauthz/extauthz/admin"
	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/authz/envoy"
	"github.com/extauthz/extauthz/authz/forwardauth"
	admincluster "github.com/extauthz/extauthz/cluster"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/metrics"
	"github.com/extauthz/extauthz/quota"
	"github.com/extauthz/extauthz/replication"
	"github.com/extauthz/extauthz/tracing"
	keyusage "github.com/extauthz/extauthz/usage"
)

type role string

const (
	roleStandalone role = "standalone"
	roleAdmin      role = "admin"
	roleSidecar    role = "sidecar"
)

func (r role) enforces() bool    { return r != roleAdmin }
func (r role) administers() bool { return r != roleSidecar }

// serveConfig is every flag of the serving commands.
type serveConfig struct {
	principalRate, operatorRate, publicCreateRate admin.Rate
	grpcAddr, httpAddr, adminAddr                 string
	dataDir, policyFile                           string
	logLevel, logFormat                           string
	adminTokenFile                                string
	replicationTokenFile                          string
	jwtSecretFile, jwtJWKSFile                    string
	jwtIssuer, jwtAudience                        string
	publicProjectCreate                           bool
	trustForward                                  string
	forwardHeaders                                string
	shutdownTimeout, drainDelay                   time.Duration
	policyPoll                                    time.Duration
	usageFlush                                    time.Duration
	quotaAllowance                                int64
	releaseEvery                                  time.Duration
	pprofAddr                                     string
	// admin
	heartbeat      time.Duration
	retentionCount int
	retentionAge   time.Duration
	tlsCertFile    string
	tlsKeyFile     string
	// tlsClientCAFile makes replication require a client certificate.
	tlsClientCAFile string
	raft            raftFlags
	// sidecar
	adminURL            string
	adminURLOrder       string
	maxStaleness        time.Duration
	reconnectMaxBackoff time.Duration
	syncInterval        time.Duration
	node                string
	adminCAFile         string
	tlsClientCertFile   string
	tlsClientKeyFile    string
}

// adminStoreFile is the authoritative store's file inside --data-dir.
const adminStoreFile = "extauthz.db"

// loadGCPercent is the GC percentage while a sidecar loads its first
// snapshot (replication.FollowerOptions.LoadGCPercent): a load allocates
// much short-lived garbage over a small live heap and nothing is served
// yet. GOGC, when set, wins.
const loadGCPercent = 400

// syncInterval maps --replica-sync-interval to FollowerOptions, whose zero
// means the default: the flag's 0 means at once.
func syncInterval(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func parseServeFlags(r role, args []string, getenv func(string) string, out io.Writer) (*serveConfig, error) {
	c := &serveConfig{}
	f := newFlagSet(string(r), "", out)
	defaultDir := "/var/lib/extauthz"
	if r == roleStandalone {
		defaultDir = "./data"
	}
	if r.enforces() {
		f.StringVar(&c.grpcAddr, "grpc-addr", envoy.DefaultGRPCAddr, "listen address of the ext_authz gRPC Check and grpc.health.v1")
		f.StringVar(&c.httpAddr, "http-addr", forwardauth.DefaultHTTPAddr, "listen address of forwardAuth /auth, /healthz, /readyz, /metrics")
		f.StringVar(&c.trustForward, "trust-forward-headers", strings.Join(forwardauth.DefaultTrustedProxies, ","), "comma-separated CIDRs whose X-Forwarded-*/X-Original-* headers are believed, or none")
		f.StringVar(&c.forwardHeaders, "forward-headers", forwardauth.FamilyAuto, "which proxy calls /auth: traefik (X-Forwarded-*), nginx (X-Original-*), envoy (path after /auth), or auto (the one family a request carries; a mix is refused)")
		f.DurationVar(&c.usageFlush, "usage-flush", 10*time.Second, "how often usage (last-used times, quota uses) is reported")
		f.Int64Var(&c.quotaAllowance, "quota-allowance", quota.DefaultAllowance, "uses of one quota'd key this process may allow between two acknowledged usage reports")
	}
	if r.administers() {
		f.StringVar(&c.adminAddr, "admin-addr", admin.DefaultAddr, "listen address of the admin API and replication feed")
		f.StringVar(&c.adminTokenFile, "admin-token-file", "", "file holding the operator token (standalone: generated into <data-dir>/admin-token when empty)")
		f.StringVar(&c.jwtSecretFile, "jwt-hs256-secret-file", "", "file holding the HS256 secret for user JWTs")
		f.StringVar(&c.jwtJWKSFile, "jwt-jwks-file", "", "JWKS file with the RS256/ES256 keys for user JWTs")
		f.StringVar(&c.jwtIssuer, "jwt-issuer", "", "required JWT iss (empty: not checked)")
		f.StringVar(&c.jwtAudience, "jwt-audience", "", "required JWT aud (empty: not checked)")
		f.BoolVar(&c.publicProjectCreate, "public-project-create", false, "allow unauthenticated POST /api/v1/projects")
		c.principalRate, c.publicCreateRate = admin.DefaultPrincipalRate, admin.DefaultPublicCreateRate
		f.Var(rateFlag{&c.principalRate}, "admin-rate-limit", "admin API calls allowed to each JWT user and each project key, `N/DURATION` with bursts of N (0: no limit)")
		f.Var(rateFlag{&c.operatorRate}, "operator-rate-limit", "admin API calls allowed with the operator token, `N/DURATION` (0: no limit)")
		f.Var(rateFlag{&c.publicCreateRate}, "public-project-create-rate-limit", "project creations allowed per source address (IPv4, or IPv6 /64) to anyone but the operator, `N/DURATION` (0: no limit)")
		f.DurationVar(&c.heartbeat, "heartbeat", 5*time.Second, "replication watch heartbeat interval")
		f.IntVar(&c.retentionCount, "changelog-retention", 100000, "change-log entries kept for watchers (older ones need a snapshot)")
		f.DurationVar(&c.retentionAge, "changelog-retention-age", 7*24*time.Hour, "maximum age of change-log entries (0: no age bound)")
		f.StringVar(&c.tlsCertFile, "tls-cert-file", "", "PEM certificate (chain) the admin port serves TLS with, re-read when it changes (empty: plain HTTP)")
		f.StringVar(&c.tlsKeyFile, "tls-key-file", "", "PEM private key of --tls-cert-file")
		f.StringVar(&c.tlsClientCAFile, "tls-client-ca-file", "", "PEM CAs whose client certificates the replication feed requires, besides the replication token (empty: no client certificate needed)")
	}
	if r == roleAdmin {
		c.raft.register(f)
	}
	if r == roleSidecar {
		f.StringVar(&c.adminURL, "admin-url", "", "base URL of the admin service to replicate from, or a comma-separated list of an admin cluster's members; a name that resolves to several addresses (a headless Service) stands for each (required)")
		f.StringVar(&c.adminURLOrder, "admin-url-order", "random", "which admin member is followed first: random (spreads a fleet over the members) or listed (the first of --admin-url); after a loss, the next")
		f.DurationVar(&c.maxStaleness, "max-staleness", 0, "answer 503 and turn not-ready when the replica is staler than this (0: unlimited)")
		f.DurationVar(&c.reconnectMaxBackoff, "reconnect-max-backoff", 5*time.Second, "cap of the jittered reconnect backoff")
		f.DurationVar(&c.syncInterval, "replica-sync-interval", keystore.DefaultSyncInterval, "how long a received change is in force from memory before the replica file gets it (0: at once)")
		host, _ := os.Hostname()
		f.StringVar(&c.node, "node", host, "node name reported with usage")
		f.StringVar(&c.adminCAFile, "admin-ca-file", "", "PEM CAs that sign the admin's certificate, for an https:// --admin-url (empty: the system roots)")
		f.StringVar(&c.tlsClientCertFile, "tls-client-cert-file", "", "PEM client certificate presented to the admin (for an admin with --tls-client-ca-file)")
		f.StringVar(&c.tlsClientKeyFile, "tls-client-key-file", "", "PEM private key of --tls-client-cert-file")
	}
	f.StringVar(&c.dataDir, "data-dir", defaultDir, "directory of the bbolt store")
	f.StringVar(&c.policyFile, "policy", "", "policy file (YAML); reloaded on change and on SIGHUP (required)")
	f.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&c.logFormat, "log-format", "json", "json or console")
	f.StringVar(&c.replicationTokenFile, "replication-token-file", "", "file holding the replication token")
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", 15*time.Second, "bound on draining in-flight requests at shutdown")
	f.DurationVar(&c.drainDelay, "drain-delay", 0, "time between turning not-ready and closing listeners at shutdown")
	f.DurationVar(&c.policyPoll, "policy-poll", 2*time.Second, "how often the policy file is checked for changes")
	f.StringVar(&c.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this address (e.g. 127.0.0.1:6060); empty: off")
	f.DurationVar(&c.releaseEvery, "release-memory-interval", time.Minute, "how often the store's mapped file pages are given back to the page cache (0: never)")
	if err := parseFlags(f, args, getenv); err != nil {
		return nil, err
	}
	if f.NArg() > 0 {
		fmt.Fprintf(out, "extauthz %s: unexpected arguments %q\n", r, f.Args())
		return nil, errUsage
	}
	var problems []error
	if c.policyFile == "" {
		problems = append(problems, errors.New("--policy is required"))
	}
	if r == roleSidecar && c.adminURL == "" {
		problems = append(problems, errors.New("--admin-url is required"))
	}
	if r == roleSidecar && c.replicationTokenFile == "" {
		problems = append(problems, errors.New("--replication-token-file is required"))
	}
	if r == roleAdmin && c.adminTokenFile == "" {
		problems = append(problems, errors.New("--admin-token-file is required"))
	}
	if r == roleAdmin && c.replicationTokenFile == "" {
		problems = append(problems, errors.New("--replication-token-file is required"))
	}
	if (c.tlsCertFile == "") != (c.tlsKeyFile == "") {
		problems = append(problems, errors.New("--tls-cert-file and --tls-key-file go together"))
	}
	if c.tlsClientCAFile != "" && c.tlsCertFile == "" {
		problems = append(problems, errors.New("--tls-client-ca-file needs --tls-cert-file and --tls-key-file: client certificates are checked in the TLS handshake"))
	}
	if (c.tlsClientCertFile == "") != (c.tlsClientKeyFile == "") {
		problems = append(problems, errors.New("--tls-client-cert-file and --tls-client-key-file go together"))
	}
	if r == roleSidecar && c.adminURL != "" {
		for _, u := range splitList(c.adminURL) {
			if err := checkAdminURLTLS(u, c.adminCAFile, c.tlsClientCertFile); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if r == roleSidecar && c.adminURLOrder != "random" && c.adminURLOrder != "listed" {
		problems = append(problems, fmt.Errorf("--admin-url-order %q: want random or listed", c.adminURLOrder))
	}
	if c.jwtJWKSFile != "" && c.jwtAudience == "" {
		problems = append(problems, errors.New("--jwt-jwks-file needs --jwt-audience: an identity provider signs tokens for many applications, and one issued for another would be accepted here"))
	}
	problems = append(problems, c.raft.problems()...)
	if c.logFormat != "json" && c.logFormat != "console" {
		problems = append(problems, fmt.Errorf("--log-format %q: want json or console", c.logFormat))
	}
	if _, err := zerolog.ParseLevel(c.logLevel); err != nil || c.logLevel == "" {
		problems = append(problems, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel))
	}
	return c, errors.Join(problems...)
}

func newLogger(c *serveConfig, r role, out io.Writer) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(c.logLevel)
	var w io.Writer = out
	if c.logFormat == "console" {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.RFC3339}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Str("service", "extauthz").Str("role", string(r)).Str("version", version).Logger()
}

// runServe runs standalone, admin or sidecar until ctx ends, then drains. It
// returns flag.ErrHelp after --help printed the usage.
func runServe(ctx context.Context, r role, args []string, getenv func(string) string, stderr io.Writer) error {
	c, err := parseServeFlags(r, args, getenv, stderr)
	if err != nil {
		return err
	}
	log := newLogger(c, r, stderr)
	n := &node{cfg: c, role: r, log: log, reg: prometheus.NewRegistry()}
	if err := metrics.Register(n.reg, "process", collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return err
	}
	defer n.closeAll()
	if err := n.build(); err != nil {
		log.Error().Err(err).Msg("startup failed")
		return err
	}
	return n.serve(ctx)
}

// node is one running process: its stores, handlers and servers.
type node struct {
	cfg  *serveConfig
	role role
	log  zerolog.Logger
	reg  *prometheus.Registry

	policy   *policyWatcher
	store    *keystore.Store
	cluster  *admincluster.Node // an admin cluster member's raft node; nil otherwise
	follower *replication.Follower
	authz    *authz.Authorizer
	usage    *keyusage.Buffer
	quota    *quota.Ledger
	repl     *replication.Server
	health   *healthServer
	grpc     *grpc.Server
	servers  []namedServer
	draining atomic.Bool
	closers  []func() error
	bg       sync.WaitGroup
}

func (n *node) closeAll() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			n.log.Warn().Err(err).Msg("close")
		}
	}
}

// Limits of the gRPC port (docs/security.md): 256 concurrent streams of at
// most 64 KiB of headers bound what one connection can make the sidecar
// hold to 16 MiB, well above what Envoy sends.
const (
	grpcMaxHeaderListSize    = 64 << 10
	grpcMaxConcurrentStreams = 256
)

func (n *node) build() error {
	c := n.cfg
	var err error
	n.policy, err = newPolicyWatcher(c.policyFile, n.log)
	if err != nil {
		return err
	}
	var replToken string
	if c.replicationTokenFile != "" {
		if replToken, err = readServerSecret(c.replicationTokenFile); err != nil {
			return fmt.Errorf("--replication-token-file: %w", err)
		}
	}
	if n.role.administers() {
		n.store, err = keystore.Open(filepath.Join(c.dataDir, adminStoreFile), keystore.Options{ReleaseMemory: c.releaseEvery > 0})
		if err != nil {
			return err
		}
		n.closers = append(n.closers, n.store.Close)
		if err := registerStoreGauges(n.reg, n.store); err != nil {
			return err
		}
	}
	// The admin's writes: its own store, or in a cluster raft entries.
	var writer admin.Writer
	var recordUsage func([]keystore.Usage) error
	var behindWait time.Duration
	var feedCurrent func() error
	if n.role == roleAdmin && c.raft.enabled() {
		w, err := n.startCluster()
		if err != nil {
			return err
		}
		writer, recordUsage = w, w.RecordUsage
		// A sidecar that moved from a member ahead of this one waits for
		// it (or retries) rather than taking a new snapshot.
		behindWait = clusterBehindWait
		// A member that knows no leader cannot vouch for its store:
		// sidecars go to another member, or turn stale.
		feedCurrent = n.leaderKnown
	}
	tp, err := tracing.New(context.Background(), version, os.Getenv)
	if err != nil {
		return err
	}
	if tp != nil {
		n.closers = append(n.closers, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return tp.Shutdown(ctx) // export what is left
		})
		n.log.Info().Msg("tracing on (OTEL_* environment)")
		// The SDK's own errors (an export that failed) as log lines, not
		// plain text on stderr.
		otellog := n.log.With().Str("component", "tracing").Logger()
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { otellog.Warn().Err(err).Msg("tracing error") }))
	}
	if n.role.enforces() {
		checks, err := authz.NewMetrics(n.reg)
		if err != nil {
			return err
		}
		opts := authz.Options{
			Policy:  n.policy.Current(),
			Logger:  n.log.With().Str("component", "authz").Logger(),
			Metrics: checks,
			// nil with tracing off: no span, no cost.
			TracerProvider: tp.TracerProvider(),
		}
		// The quota ledger gives a key's local allowance back when the
		// admin acknowledged a report at a revision the lookups have.
		var revision func() uint64
		opts.QuotaRetryAfter = c.usageFlush
		send := n.recordUsage
		if n.role == roleSidecar {
			for _, u := range splitList(c.adminURL) {
				warnPlainAdminURL(n.log, u)
			}
			client, err := n.replicationClient()
			if err != nil {
				return err
			}
			n.follower, err = replication.NewFollower(replication.FollowerOptions{
				AdminURL:     c.adminURL,
				ListedOrder:  c.adminURLOrder == "listed",
				HTTPClient:   client,
				Token:        replToken,
				Dir:          c.dataDir,
				MaxBackoff:   c.reconnectMaxBackoff,
				MaxStaleness: c.maxStaleness,
				SyncInterval: syncInterval(c.syncInterval),
				Node:         c.node,
				// The process-wide settings the library leaves to its
				// program: see FollowerOptions and docs/design.md.
				LoadGCPercent: loadGCPercent,
				ReleaseMemory: c.releaseEvery > 0,
				Logger:        n.log.With().Str("component", "replica").Logger(),
				Registerer:    n.reg,
				UsageAcked:    func(u []keystore.Usage, rev uint64) { n.quota.Acked(u, rev) },
				NewHistory:    func() { n.quota.Reset() },
			})
			if err != nil {
				return err
			}
			revision = n.follower.Revision
			n.closers = append(n.closers, n.follower.Close)
			opts.Keys = n.follower
			opts.Available = n.follower.Healthy
			send = n.follower.SendUsage
		} else {
			opts.Keys = n.store
			revision = n.store.Revision
		}
		if c.quotaAllowance < 1 {
			return fmt.Errorf("--quota-allowance must be at least 1, got %d", c.quotaAllowance)
		}
		n.quota = quota.New(quota.Options{Allowance: c.quotaAllowance, Revision: revision})
		opts.Quota = n.quota
		n.usage, err = keyusage.New(keyusage.Options{
			Send:       send,
			Every:      c.usageFlush,
			Logger:     n.log.With().Str("component", "usage").Logger(),
			Registerer: n.reg,
		})
		if err != nil {
			return err
		}
		opts.Usage = n.usage
		n.authz = authz.New(opts)
		n.policy.OnChange(n.authz.SetPolicy)
	}
	if n.role.administers() {
		adminToken, err := n.adminToken()
		if err != nil {
			return err
		}
		jwt, err := jwtConfig(c)
		if err != nil {
			return err
		}
		n.warnJWT(jwt)
		serverTLS, err := n.adminServerTLS()
		if err != nil {
			return err
		}
		if serverTLS == nil && n.role == roleAdmin {
			n.log.Warn().Str("addr", c.adminAddr).Msg("the admin port serves plain HTTP: tokens, keys and the replication feed cross the network in clear; set --tls-cert-file and --tls-key-file")
		}
		adm, err := admin.New(admin.Options{
			Store:               n.store,
			Writer:              writer,
			Policy:              n.policy.Current,
			AdminToken:          adminToken,
			JWT:                 jwt,
			PublicProjectCreate: c.publicProjectCreate,
			PrincipalRate:       c.principalRate,
			OperatorRate:        c.operatorRate,
			PublicCreateRate:    c.publicCreateRate,
			Logger:              n.log.With().Str("component", "admin").Logger(),
			Registerer:          n.reg,
		})
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		if replToken != "" {
			n.repl, err = replication.NewServer(replication.ServerOptions{
				Store:       n.store,
				Token:       replToken,
				Heartbeat:   c.heartbeat,
				Logger:      n.log.With().Str("component", "replication").Logger(),
				Registerer:  n.reg,
				RecordUsage: recordUsage,
				BehindWait:  behindWait,
				Current:     feedCurrent,
			})
			if err != nil {
				return err
			}
			var feed http.Handler = n.repl
			if c.tlsClientCAFile != "" {
				feed = requireClientCert(feed)
			}
			mux.Handle("/replication/", feed)
		}
		n.probes(mux)
		if n.cluster != nil {
			n.clusterRoutes(mux, adm)
			mux.Handle("/", n.cluster.ReadIndexed(adm))
		} else {
			mux.Handle("/", adm)
		}
		var h http.Handler = mux
		if tp != nil {
			// A span per admin API and replication request, child of the
			// caller's traceparent.
			// The port is reachable by anyone who can reach the API: the
			// caller's trace context is a link, not the parent (a client
			// cannot make its requests sampled), and span names come from a
			// fixed set.
			h = otelhttp.NewHandler(mux, "admin", otelhttp.WithTracerProvider(tp.TracerProvider()), otelhttp.WithPropagators(propagation.TraceContext{}),
				otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }),
				otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return spanMethod(r.Method) + " " + spanRoute(r.URL.Path) }))
		}
		n.addHTTP("admin", c.adminAddr, h)
		n.servers[len(n.servers)-1].tls = serverTLS
	}
	if c.pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		n.addHTTP("pprof", c.pprofAddr, mux)
	}
	if n.role.enforces() {
		trusted, err := forwardauth.ParseTrustedProxies(strings.Split(c.trustForward, ","))
		if err != nil {
			return fmt.Errorf("--trust-forward-headers: %w", err)
		}
		family, err := forwardauth.ParseFamily(c.forwardHeaders)
		if err != nil {
			return fmt.Errorf("--forward-headers: %w", err)
		}
		fa := forwardauth.New(n.authz, trusted, family)
		mux := http.NewServeMux()
		n.probes(mux)
		srv := forwardauth.NewHTTPServer(fa.Handler(mux), n.log.With().Str("server", "http").Logger())
		n.servers = append(n.servers, namedServer{name: "http", addr: c.httpAddr, httpServer: srv})

		n.health = newHealthServer()
		door := envoy.NewServer(n.authz)
		n.grpc = grpc.NewServer(
			grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
			grpc.MaxRecvMsgSize(4<<20),
			grpc.ConnectionTimeout(10*time.Second), // like the HTTP ports' 10s header timeouts
			// Bounded memory per connection: Envoy's ext_authz calls carry a few
			// KiB of metadata (the request's headers travel in the message), and
			// it opens more connections when a server's stream limit is reached.
			// Without these, one connection opening streams with megabytes of
			// headers and no data made the heap grow without bound.
			grpc.MaxHeaderListSize(grpcMaxHeaderListSize),
			grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
			grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 5 * time.Minute}),
			grpc.ForceServerCodecV2(door.Codec()),
			grpc.NumStreamWorkers(streamWorkers()),
		)
		authv3.RegisterAuthorizationServer(n.grpc, door)
		healthgrpc.RegisterHealthServer(n.grpc, n.health)
		n.setServing(false)
	}
	return nil
}

// namedServer is an HTTP server with the name its log lines carry and
// the address it listens on.
type namedServer struct {
	name, addr string
	httpServer
	tls *tls.Config // nil: plain HTTP
}

// httpServer is what serve and shutdown need of an HTTP server: Serve
// returns nil or http.ErrServerClosed once Shutdown has begun.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// addHTTP adds a net/http server (admin, pprof) with timeouts that bound
// slow clients.
func (n *node) addHTTP(name, addr string, h http.Handler) {
	n.servers = append(n.servers, namedServer{name: name, addr: addr, httpServer: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    256 << 10,
		// net/http's own messages (refused TLS handshakes, mostly) at
		// debug: a scanner must not flood the log.
		ErrorLog: stdlog.New(debugWriter{n.log.With().Str("server", name).Logger()}, "", 0),
	}})
}

// debugWriter writes each line of a standard library logger as a debug
// line of a zerolog logger.
type debugWriter struct{ log zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.log.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// probes mounts /healthz, /readyz and /metrics.
func (n *node) probes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := n.notReady(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"not ready","reason":%q}`, err.Error())
			return
		}
		_, _ = io.WriteString(w, `{"status":"ready"}`)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
}

// notReady returns why the process should not receive traffic, or nil.
func (n *node) notReady() error {
	if n.draining.Load() {
		return errors.New("shutting down")
	}
	if n.cluster != nil {
		if err := n.clusterNotReady(); err != nil {
			return err
		}
	}
	if n.follower != nil {
		if !n.follower.Ready() {
			return errors.New("no replica loaded yet")
		}
		if err := n.follower.Healthy(); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) setServing(ok bool) {
	if n.health == nil {
		return
	}
	st := healthgrpc.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthgrpc.HealthCheckResponse_SERVING
	}
	n.health.SetServingStatus("", st)
	n.health.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
}

func (n *node) adminToken() (string, error) {
	c := n.cfg
	if c.adminTokenFile != "" {
		t, err := readServerSecret(c.adminTokenFile)
		if err != nil {
			return "", fmt.Errorf("--admin-token-file: %w", err)
		}
		return t, nil
	}
	path := filepath.Join(c.dataDir, "admin-token")
	if t, err := readServerSecret(path); err == nil {
		n.log.Info().Str("path", path).Msg("using the admin token from the data dir")
		return t, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate admin token: %w", err)
	}
	t := hex.EncodeToString(b)
	if err := os.WriteFile(path, []byte(t+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	n.log.Info().Str("path", path).Msg("generated an admin token (mode 0600); pass it as Authorization: Bearer")
	return t, nil
}

// serve listens on every address, then blocks until ctx ends or a server
// fails, and drains in order: not-ready first, then servers, then stores.
func (n *node) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(n.servers)+1)
	var listeners []net.Listener
	for _, s := range n.servers {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", s.addr, err)
		}
		if s.tls != nil {
			ln = tls.NewListener(ln, s.tls)
		}
		listeners = append(listeners, ln)
		n.log.Info().Str("server", s.name).Str("addr", ln.Addr().String()).Bool("tls", s.tls != nil).Msg("listening")
	}
	var grpcLn net.Listener
	if n.grpc != nil {
		ln, err := net.Listen("tcp", n.cfg.grpcAddr)
		if err != nil {
			return fmt.Errorf("listen %s: %w", n.cfg.grpcAddr, err)
		}
		grpcLn = ln
		n.log.Info().Str("server", "grpc").Str("addr", ln.Addr().String()).Msg("listening")
	}
	for i, s := range n.servers {
		go func() {
			if err := s.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http %s: %w", s.addr, err)
			}
		}()
	}
	if n.grpc != nil {
		go func() {
			if err := n.grpc.Serve(grpcLn); err != nil {
				errc <- fmt.Errorf("grpc: %w", err)
			}
		}()
	}
	n.background(ctx)
	n.log.Info().Msg("started")

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info().Msg("shutting down")
	case runErr = <-errc:
		n.log.Error().Err(runErr).Msg("server failed; shutting down")
	}
	n.shutdown()
	cancel()
	n.bg.Wait()
	return runErr
}

// background starts the loops that run beside the servers.
func (n *node) background(ctx context.Context) {
	run := func(f func()) {
		n.bg.Add(1)
		go func() { defer n.bg.Done(); f() }()
	}
	run(func() { n.policy.Run(ctx, n.cfg.policyPoll) })
	if n.follower != nil {
		run(func() {
			if err := n.follower.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				n.log.Error().Err(err).Msg("replication stopped")
			}
		})
	}
	if n.repl != nil {
		run(func() {
			replication.RunCompactor(ctx, n.store, replication.RetentionOptions{Keep: n.cfg.retentionCount, MaxAge: n.cfg.retentionAge, Every: time.Minute}, n.log.With().Str("component", "compactor").Logger())
		})
	}
	if n.cfg.releaseEvery > 0 {
		// bbolt reads through a shared file map; random lookups and inserts
		// (and the kernel's fault-around) leave most of the file resident.
		// Those are clean page-cache pages: hand them back periodically so
		// RSS tracks what the process really holds.
		var release func() error
		switch {
		case n.follower != nil:
			release = n.follower.ReleaseMemory
		case n.store != nil:
			release = n.store.ReleaseMemory
		}
		run(func() {
			every(ctx, n.cfg.releaseEvery, func() {
				if err := release(); err != nil {
					n.log.Warn().Err(err).Msg("release mapped pages")
				}
			})
		})
	}
	if n.usage != nil {
		// Flushes every --usage-flush, and once more when ctx ends: after
		// shutdown drained the doors, so no recorded use is left behind.
		run(func() { n.usage.Run(ctx) })
	}
	if n.health != nil {
		run(func() { n.followReadiness(ctx) })
	}
}

// followReadiness keeps the gRPC health status equal to readiness (replica
// loaded, not stale) until ctx ends. It re-evaluates when the follower
// reports a change and when a current replica would turn stale, and never
// polls: idle sidecars, many to a node, do not wake.
func (n *node) followReadiness(ctx context.Context) {
	last := -1
	for {
		var changed <-chan struct{}
		if n.follower != nil {
			changed = n.follower.HealthChanged() // before notReady: no change is lost in between
		}
		ready := 0
		var stale *time.Timer
		if n.notReady() == nil {
			ready = 1
			if n.follower != nil {
				if d, ok := n.follower.UntilStale(); ok {
					stale = time.NewTimer(max(d, 0) + time.Millisecond)
				}
			}
		}
		if ready != last && !n.draining.Load() {
			n.setServing(ready == 1)
			last = ready
		}
		var staleC <-chan time.Time
		if stale != nil {
			staleC = stale.C
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-staleC:
		}
		if stale != nil {
			stale.Stop()
		}
	}
}

// recordUsage is the usage buffer's Send of a standalone process: its own
// store keeps the usage. A batch the store could not write is kept for the
// next flush.
func (n *node) recordUsage(_ context.Context, batch []keystore.Usage) ([]keystore.Usage, error) {
	if err := n.store.RecordUsage(batch); err != nil {
		return batch, fmt.Errorf("record usage: %w", err)
	}
	n.quota.Acked(batch, n.store.Revision())
	return nil, nil
}

// shutdown turns not-ready, waits drain-delay, then drains every server
// within shutdown-timeout.
func (n *node) shutdown() {
	n.draining.Store(true)
	if n.health != nil {
		n.health.Shutdown() // NOT_SERVING for every service, for good
	}
	if n.cfg.drainDelay > 0 {
		time.Sleep(n.cfg.drainDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.shutdownTimeout)
	defer cancel()
	if n.repl != nil {
		n.repl.Close() // end watch streams so the admin server can drain
	}
	var wg sync.WaitGroup
	for _, s := range n.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Shutdown(ctx); err != nil {
				n.log.Warn().Err(err).Str("addr", s.addr).Msg("http drain incomplete")
				_ = s.Close()
			}
		}()
	}
	if n.grpc != nil {
		n.health.endWatches()
		wg.Add(1)
		go func() {
			defer wg.Done()
			done := make(chan struct{})
			go func() { n.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				n.log.Warn().Msg("grpc drain timed out; closing remaining streams")
				n.grpc.Stop()
			}
		}()
	}
	wg.Wait()
	n.log.Info().Msg("drained")
}

// spanMethod is r's method for a span name: one of the methods the admin
// routes, else OTHER.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return m
	}
	return "OTHER"
}

// spanRoute names an admin port path for a span without its ids: the API
// and the replication feed, not each key.
func spanRoute(p string) string {
	switch {
	case strings.HasPrefix(p, "/replication/"):
		return "/replication"
	case strings.HasPrefix(p, "/api/"):
		return "/api"
	}
	return "other"
}

// every calls fn every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// jwtConfig reads the JWT settings of the admin API.
func jwtConfig(c *serveConfig) (admin.JWTOptions, error) {
	j := admin.JWTOptions{JWKSFile: c.jwtJWKSFile, Issuer: c.jwtIssuer, Audience: c.jwtAudience}
	if c.jwtSecretFile != "" {
		s, err := readServerSecret(c.jwtSecretFile)
		if err != nil {
			return j, fmt.Errorf("--jwt-hs256-secret-file: %w", err)
		}
		j.HS256Secret = []byte(s)
	}
	return j, nil
}

// warnJWT warns when user JWTs are accepted whatever their audience or
// issuer: any token signed with the same secret, for another application
// or by another issuer, is then accepted. (A JWKS without an audience is
// refused with the flags.)
func (n *node) warnJWT(j admin.JWTOptions) {
	if len(j.HS256Secret) == 0 && j.JWKSFile == "" {
		return
	}
	var missing []string
	if j.Audience == "" {
		missing = append(missing, "--jwt-audience")
	}
	if j.Issuer == "" {
		missing = append(missing, "--jwt-issuer")
	}
	if len(missing) > 0 {
		n.log.Warn().Strs("unset", missing).Msg("user JWTs are accepted without an audience or issuer check: any token signed with the same key is accepted, whoever it was issued for; set --jwt-audience and --jwt-issuer")
	}
}

// streamWorkers is the number of long-lived goroutines grpc serves streams
// on (grpc.NumStreamWorkers, marked experimental by grpc-go; streams beyond
// them get a goroutine of their own, as without the option). A Check on a
// new goroutine grew its stack on every call (13 % of a sidecar's CPU
// under load); a worker keeps its grown stack. Measured at c=64 on 2
// cores: 8 workers saved 4 % of the sidecar's CPU per request, 32 saved
// 17 %. Sixteen per core, at most 256 (a few MiB of stacks).
func streamWorkers() uint32 {
	return uint32(min(16*runtime.GOMAXPROCS(0), 256))
}
