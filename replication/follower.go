package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/metrics"
)

// Sentinel errors of the follower. Test with errors.Is.
var (
	// ErrNotReady is returned by Lookup and Healthy while no snapshot or
	// persisted replica is loaded.
	ErrNotReady = errors.New("replication: no replica loaded")
	// ErrStale is returned by Healthy when the replica was last known
	// current longer ago than FollowerOptions.MaxStaleness.
	ErrStale = errors.New("replication: replica is stale")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("replication: follower closed")
	// ErrBadSnapshot wraps every reason a snapshot is rejected.
	ErrBadSnapshot = errors.New("replication: bad snapshot")
)

// Follower defaults.
const (
	DefaultMaxBackoff  = 5 * time.Second
	DefaultIdleTimeout = 15 * time.Second

	// ReplicaFile is the replica's file name inside FollowerOptions.Dir.
	ReplicaFile = "replica.db"
	// WALFile is the name of the replica's write-ahead log inside
	// FollowerOptions.Dir.
	WALFile = ReplicaFile + keystore.WALSuffix

	minBackoff    = 100 * time.Millisecond
	snapshotChunk = 10_000 // records per ApplyChanges while loading a snapshot
	watchBatchMax = 10_000 // changes per Stage on the watch
	usageChunk    = 4096   // entries per usage POST, far below MaxUsageBody
	usageTimeout  = 10 * time.Second
)

// FollowerOptions configures NewFollower.
type FollowerOptions struct {
	// AdminURL is the admin's base URL, e.g. http://extauthz-admin:8181,
	// or a comma-separated list of the members of an admin cluster. A
	// URL whose host name resolves to several addresses (a headless
	// Service) stands for each of them, resolved again at every
	// connection. The follower follows one member and moves to the next
	// when it is lost, resuming from the replica's revision (admins.go).
	AdminURL string
	// ListedOrder makes the first connection go to the first member
	// listed, not to a random one (which spreads a fleet over the
	// members).
	ListedOrder bool
	// Resolver looks up the host names of AdminURL; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// Token is the replication bearer token.
	Token string
	// Dir holds the replica at Dir/replica.db (and a temporary
	// Dir/replica.db.tmp while a snapshot loads).
	Dir string
	// MaxBackoff caps the jittered reconnect backoff; zero means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration
	// MaxStaleness makes Healthy fail when the replica was last known
	// current longer ago than this; zero means unlimited.
	MaxStaleness time.Duration
	// Node names this sidecar in usage reports; empty means the host name.
	Node string
	// IdleTimeout drops a snapshot or watch stream on which no line
	// arrived for this long (a dead admin or network); zero means
	// DefaultIdleTimeout, three default heartbeats.
	IdleTimeout time.Duration
	// SyncInterval is how long after a change is received, and put in
	// force in memory, the replica file gets it, together with whatever
	// else arrived meanwhile; zero means keystore.DefaultSyncInterval,
	// negative means at once (still after the change is in force).
	SyncInterval time.Duration
	// LoadGCPercent, when above zero, is the GC percentage while the first
	// snapshot loads, restored afterwards (unless GOGC is set, which then
	// wins). A first load allocates a lot of short-lived garbage over a
	// small live heap, so the collector would run very often; nothing is
	// served yet, so the extra heap cannot hurt checks. It changes the
	// whole process's collector, which is the program's decision, so zero
	// (the default) leaves it alone; cmd/extauthz sets 400.
	LoadGCPercent int
	// ReleaseMemory is keystore.ReplicaOptions.ReleaseMemory: whether
	// ReleaseMemory advises the kernel to drop the replica's mapped pages.
	ReleaseMemory bool
	// HTTPClient talks to the admin. Nil means a client with dial,
	// TLS-handshake and response-header timeouts but no overall timeout,
	// which would cut the watch stream. A custom client must not set
	// Timeout either, and its transport must dial with NewTransport's
	// DialContext to reach each address of a name separately.
	HTTPClient *http.Client
	// Logger receives state changes and failures; never a secret. The
	// caller names the component (zerolog would repeat a second one).
	Logger zerolog.Logger
	// Registerer, when not nil, gets extauthz_replica_revision,
	// extauthz_replica_persisted_revision, extauthz_replica_staleness_seconds
	// and extauthz_replica_resyncs_total.
	Registerer prometheus.Registerer
	// Now is the clock for staleness; nil means time.Now.
	Now func() time.Time
	// UsageAcked, when set, is told of every chunk of usage the admin
	// acknowledged with its revision (HeaderRevision): a replica at that
	// revision reflects it (package quota). A chunk acknowledged without
	// one (an older admin) is not passed on.
	UsageAcked func(acked []keystore.Usage, revision uint64)
	// NewHistory, when set, is called after a snapshot of another store
	// id, or of a revision below the replica's, replaced the replica: the
	// revisions UsageAcked was told of before are of another history.
	NewHistory func()
}

// Follower keeps a local replica of the admin's store and answers lookups
// from it. See the package documentation for its state machine; the
// replica's durability (write-ahead log, staged changes, commits) is
// keystore.Replica's.
//
// Lookup, Ready, Healthy, Revision, StoreID, Staleness and SendUsage are
// safe for concurrent use with each other and with Run. Run may be called
// once at a time. Call Close after Run has returned.
type Follower struct {
	opts    FollowerOptions
	log     zerolog.Logger
	client  *http.Client
	admins  *admins
	path    string
	tmpPath string
	created time.Time // staleness counts from here until a replica is current

	// mu guards rep: Lookup holds it shared; swapping in a new snapshot
	// and Close hold it exclusively, so a replica is closed only once no
	// lookup uses it. rep is nil after Close; only Run's goroutine swaps
	// it, so Run reads it without the lock.
	mu  sync.RWMutex
	rep *keystore.Replica

	// healthMu guards healthCh, closed and replaced when Healthy's answer
	// may have changed other than by time passing (see HealthChanged).
	healthMu sync.Mutex
	healthCh chan struct{}

	resyncs *prometheus.CounterVec
}

// NewFollower opens Dir/replica.db, creating it when absent. A replica
// that holds a snapshot is served at once (Ready is true) and the watch
// will resume from its revision. A replica file that cannot be opened is
// moved aside to replica.db.bad and replaced by an empty one; a file
// locked by another process is an error (keystore.ErrLocked).
func NewFollower(opts FollowerOptions) (*Follower, error) {
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	admins, err := parseAdmins(opts.AdminURL, opts.Resolver, opts.ListedOrder)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("replication: a replica directory is required")
	}
	if opts.Token == "" {
		return nil, errors.New("replication: a replication token is required")
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = defaultClient()
	}
	f := &Follower{
		opts:     opts,
		log:      opts.Logger,
		client:   opts.HTTPClient,
		admins:   admins,
		path:     filepath.Join(opts.Dir, ReplicaFile),
		tmpPath:  filepath.Join(opts.Dir, ReplicaFile+".tmp"),
		created:  opts.Now(),
		healthCh: make(chan struct{}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_replica_resyncs_total",
			Help: "Snapshot loads by result: ok, or failed (admin unreachable or refusing, or a corrupt or truncated snapshot rejected).",
		}, []string{"result"}),
	}
	f.resyncs.WithLabelValues("ok")
	f.resyncs.WithLabelValues("failed")

	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("replication: create replica dir: %w", err)
	}
	_ = os.Remove(f.tmpPath) // a load interrupted by a crash
	_, statErr := os.Stat(f.path)
	rep, err := f.openReplica(f.path)
	if err != nil && !errors.Is(err, keystore.ErrLocked) && statErr == nil {
		f.log.Error().Err(err).Msg("replica file unreadable: moved aside, waiting for a snapshot")
		if rerr := os.Rename(f.path, f.path+".bad"); rerr != nil {
			return nil, fmt.Errorf("replication: move unreadable replica aside: %w", rerr)
		}
		rep, err = f.openReplica(f.path)
	}
	if err != nil {
		return nil, fmt.Errorf("replication: open replica: %w", err)
	}
	f.rep = rep
	if rep.StoreID() != "" {
		r := rep.Replayed()
		if r.Problem != nil {
			f.log.Warn().Err(r.Problem).Int("changes", r.Changes).Msg("write-ahead log ends early: replaying what precedes, the watch fetches the rest")
		}
		if r.Changes > 0 {
			f.log.Info().Int("changes", r.Changes).Uint64("revision", rep.Revision()).Msg("write-ahead log replayed")
		}
		f.logCommit(r.CommitErr)
		f.log.Info().Str("store_id", rep.StoreID()).Uint64("revision", rep.Revision()).Msg("serving persisted replica")
	}
	if err := f.register(opts.Registerer); err != nil {
		rep.Close()
		return nil, err
	}
	return f, nil
}

// openReplica opens the replica file at path with the follower's options.
func (f *Follower) openReplica(path string) (*keystore.Replica, error) {
	return keystore.OpenReplica(path, keystore.ReplicaOptions{
		SyncInterval:  f.opts.SyncInterval,
		CommitFailed:  f.logCommit,
		Now:           f.opts.Now,
		ReleaseMemory: f.opts.ReleaseMemory,
	})
}

// register registers the follower's metrics with reg, when not nil.
func (f *Follower) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "extauthz_replica_revision",
			Help: "Revision in force in the local replica, changes not yet written to its file included.",
		}, func() float64 { return float64(f.Revision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "extauthz_replica_persisted_revision",
			Help: "Revision of the replica file; below extauthz_replica_revision while received changes, already in force, wait to be written.",
		}, func() float64 { return float64(f.PersistedRevision()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "extauthz_replica_staleness_seconds",
			Help: "Seconds since the replica was last known current (heartbeat or change on a live watch).",
		}, func() float64 { return f.Staleness().Seconds() }),
		f.resyncs,
	}
	return metrics.Register(reg, "replication", cs...)
}

// logCommit logs a failed commit; a closed replica is not a failure.
func (f *Follower) logCommit(err error) {
	if err != nil && !errors.Is(err, keystore.ErrClosed) {
		f.log.Error().Err(err).Msg("replica file not written: the changes in force stay in memory and following pauses until it is")
	}
}

func defaultClient() *http.Client {
	return &http.Client{Transport: NewTransport()}
}

// NewTransport returns the transport of the default HTTPClient: dial,
// TLS-handshake and response-header timeouts, no overall timeout. A caller
// that sets its own TLS configuration starts from it (Clone keeps its
// dialer). Its dialer connects a request for one address of a name that
// resolves to several to that address.
func NewTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, pinnedAddr(ctx, addr))
		},
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
}

// replica returns the current replica, nil after Close.
func (f *Follower) replica() *keystore.Replica {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.rep
}

// Lookup finds a key in the current replica. It returns ErrNotReady before
// a replica is loaded and ErrClosed after Close; otherwise it is exactly
// keystore.Replica.Lookup.
func (f *Follower) Lookup(h keystore.Hash) (keystore.LookupResult, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	switch {
	case f.rep == nil:
		return keystore.LookupResult{}, ErrClosed
	case f.rep.StoreID() == "":
		return keystore.LookupResult{}, ErrNotReady
	}
	return f.rep.Lookup(h)
}

// Ready reports whether a snapshot or persisted replica is loaded.
func (f *Follower) Ready() bool {
	rep := f.replica()
	return rep != nil && rep.StoreID() != ""
}

// ReleaseMemory gives the replica's mapped file pages back (see
// keystore.Replica.ReleaseMemory and FollowerOptions.ReleaseMemory).
func (f *Follower) ReleaseMemory() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.rep == nil {
		return nil
	}
	return f.rep.ReleaseMemory()
}

// Healthy returns nil when lookups may be trusted: a replica is loaded and,
// with MaxStaleness set, it was known current within that bound. Front
// doors answer 503 otherwise.
func (f *Follower) Healthy() error {
	rep := f.replica()
	switch {
	case rep == nil:
		return ErrClosed
	case rep.StoreID() == "":
		return ErrNotReady
	}
	if max := f.opts.MaxStaleness; max > 0 {
		if s := f.staleness(rep); s > max {
			return fmt.Errorf("%w: last known current %s ago (max %s)", ErrStale, s.Round(time.Millisecond), max)
		}
	}
	return nil
}

// Staleness is the time since the replica was last known current: the
// last heartbeat or change received on a live watch, or the snapshot it
// loaded. A replica found on disk at start counts from the file's
// modification time; with nothing loaded, from NewFollower.
func (f *Follower) Staleness() time.Duration { return f.staleness(f.replica()) }

func (f *Follower) staleness(rep *keystore.Replica) time.Duration {
	last, ok := f.created, false
	if rep != nil {
		if at, current := rep.LastCurrent(); current {
			last, ok = at, true
		}
	}
	now := f.opts.Now()
	if d := now.Sub(last); d >= 0 {
		return d
	}
	// The clock went back: count staleness from now rather than waiting
	// for the clock to pass the old reading.
	if ok {
		f.markCurrent(rep, now)
	}
	return 0
}

// Revision returns the revision in force in the replica (0 when nothing
// is loaded).
func (f *Follower) Revision() uint64 {
	if rep := f.replica(); rep != nil {
		return rep.Revision()
	}
	return 0
}

// PersistedRevision returns the revision of the replica file: Revision
// minus the changes in force that wait to be written (see SyncInterval).
func (f *Follower) PersistedRevision() uint64 {
	if rep := f.replica(); rep != nil {
		return rep.DurableRevision()
	}
	return 0
}

// StoreID returns the id of the admin store the replica came from.
func (f *Follower) StoreID() string {
	if rep := f.replica(); rep != nil {
		return rep.StoreID()
	}
	return ""
}

// Close commits the changes in force to the replica file and closes it;
// lookups then fail with ErrClosed. It waits for in-flight lookups. Call
// it after Run has returned.
func (f *Follower) Close() error {
	f.mu.Lock()
	rep := f.rep
	f.rep = nil
	f.mu.Unlock()
	if rep == nil {
		return nil
	}
	f.healthChanged()
	return rep.Close()
}

// markCurrent records that rep was known current at at.
func (f *Follower) markCurrent(rep *keystore.Replica, at time.Time) {
	prev, ok := rep.LastCurrent()
	rep.MarkCurrent(at)
	if max := f.opts.MaxStaleness; max > 0 && (!ok || at.Before(prev) || at.Sub(prev) > max) {
		f.healthChanged() // it was (or may have been) stale until now, or the clock went back
	}
}

// HealthChanged returns a channel that is closed when Healthy's answer may
// have changed other than by time passing: a replica was loaded, the
// follower was closed, or a stale replica became current. A current
// replica turns stale by time alone; UntilStale says when. Take the
// channel before calling Healthy, so that no change is missed in between.
func (f *Follower) HealthChanged() <-chan struct{} {
	f.healthMu.Lock()
	defer f.healthMu.Unlock()
	return f.healthCh
}

func (f *Follower) healthChanged() {
	f.healthMu.Lock()
	close(f.healthCh)
	f.healthCh = make(chan struct{})
	f.healthMu.Unlock()
}

// UntilStale returns how long the replica stays current if nothing more
// arrives from the admin (at most 0 once it is stale); ok is false
// without MaxStaleness, when it never turns stale.
func (f *Follower) UntilStale() (d time.Duration, ok bool) {
	if f.opts.MaxStaleness <= 0 {
		return 0, false
	}
	return f.opts.MaxStaleness - f.Staleness(), true
}
