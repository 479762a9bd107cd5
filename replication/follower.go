package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/backoff"
	"github.com/extauthz/extauthz/keystore"
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
	DefaultUsageFlush  = 10 * time.Second
	DefaultIdleTimeout = 15 * time.Second
	// DefaultSyncInterval is how long a change received on the watch may
	// be in force before it is in the replica file (see Stage).
	DefaultSyncInterval = time.Second

	// ReplicaFile is the replica's file name inside FollowerOptions.Dir.
	ReplicaFile = "replica.db"

	minBackoff      = 100 * time.Millisecond
	snapshotChunk   = 10_000 // records per ApplyChanges while loading a snapshot
	loadGCPercent   = 400    // GOGC while a snapshot loads (see loadSnapshot)
	watchBatchMax   = 10_000 // changes per ApplyChanges on the watch
	maxUsageKeys    = 100_000
	usageChunk      = 4096 // entries per usage POST, far below MaxUsageBody
	usageTimeout    = 10 * time.Second
	finalFlushLimit = 2 * time.Second
	touchEvery      = time.Second
)

// FollowerOptions configures NewFollower.
type FollowerOptions struct {
	// AdminURL is the admin's base URL, e.g. http://extauthz-admin:8181.
	AdminURL string
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
	// UsageFlush is the interval between usage reports; zero means
	// DefaultUsageFlush.
	UsageFlush time.Duration
	// Node names this sidecar in usage reports; empty means the host name.
	Node string
	// IdleTimeout drops a snapshot or watch stream on which no line
	// arrived for this long (a dead admin or network); zero means
	// DefaultIdleTimeout, three default heartbeats.
	IdleTimeout time.Duration
	// SyncInterval is how long after a change is received, and put in
	// force in memory, the replica file gets it, together with whatever
	// else arrived meanwhile; zero means DefaultSyncInterval, negative
	// means at once (still after the change is in force).
	SyncInterval time.Duration
	// HTTPClient talks to the admin. Nil means a client with dial,
	// TLS-handshake and response-header timeouts but no overall timeout,
	// which would cut the watch stream. A custom client must not set
	// Timeout either.
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
}

// Follower keeps a local replica of the admin's store and answers lookups
// from it. See the package documentation for its state machine.
//
// Lookup, Ready, Healthy, Revision, StoreID, Staleness, ReportUsage and
// RecordUse are safe for concurrent use with each other and with Run.
// Run may be called once at a time. Call Close after Run has returned.
type Follower struct {
	opts    FollowerOptions
	log     zerolog.Logger
	client  *http.Client
	base    string
	path    string
	tmpPath string
	now     func() time.Time
	created time.Time

	// mu guards store: Lookup holds it shared; swapping in a new snapshot
	// and Close hold it exclusively, so a store is closed only once no
	// lookup uses it.
	mu    sync.RWMutex
	store *keystore.Store
	ready atomic.Bool

	lastCurrent atomic.Int64 // Now() in Unix nanoseconds; 0 = never
	running     atomic.Bool

	touchMu   sync.Mutex
	lastTouch time.Time // the file's mtime as last set

	// persistDue is set while a commit of staged changes is scheduled;
	// commitFailed stops the watch until the replica file takes writes
	// again.
	persistDue   atomic.Bool
	persistTimer atomic.Pointer[time.Timer]
	commitMu     sync.Mutex // one commit, and its commitFailed verdict, at a time
	commitFailed atomic.Bool

	// walMu orders appends to the write-ahead log with the staging of
	// their changes, and with emptying the log after a commit. Taken
	// before mu.
	walMu   sync.Mutex
	wal     *wal // nil until the first change after a start or a snapshot
	walPath string
	walKeep int64 // walKeep; tests lower it

	usageMu  sync.Mutex
	usage    map[string]keystore.Usage
	dropped  uint64
	flushing atomic.Bool // a usage flush is in progress

	// healthCh is closed and replaced when Healthy's answer may have
	// changed other than by time passing (see HealthChanged).
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
	u, err := url.Parse(opts.AdminURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("replication: admin URL %q must be an absolute http(s) URL", opts.AdminURL)
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
	if opts.UsageFlush <= 0 {
		opts.UsageFlush = DefaultUsageFlush
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
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
		base:     strings.TrimRight(opts.AdminURL, "/"),
		path:     filepath.Join(opts.Dir, ReplicaFile),
		tmpPath:  filepath.Join(opts.Dir, ReplicaFile+".tmp"),
		walPath:  filepath.Join(opts.Dir, WALFile),
		walKeep:  walKeep,
		now:      opts.Now,
		created:  opts.Now(),
		usage:    make(map[string]keystore.Usage),
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
	// The file's modification time is the last time the replica was known
	// current (see markCurrent); read it before Open writes to the file.
	fi, statErr := os.Stat(f.path)
	st, err := keystore.Open(f.path, keystore.Options{Replica: true})
	if err != nil && !errors.Is(err, keystore.ErrLocked) && statErr == nil {
		f.log.Error().Err(err).Msg("replica file unreadable: moved aside, waiting for a snapshot")
		if rerr := os.Rename(f.path, f.path+".bad"); rerr != nil {
			return nil, fmt.Errorf("replication: move unreadable replica aside: %w", rerr)
		}
		statErr = os.ErrNotExist
		st, err = keystore.Open(f.path, keystore.Options{Replica: true})
	}
	if err != nil {
		return nil, fmt.Errorf("replication: open replica: %w", err)
	}
	f.store = st
	fail := func(err error) (*Follower, error) {
		if f.wal != nil {
			f.wal.close()
		}
		st.Close()
		return nil, err
	}
	if st.StoreID() != "" {
		if err := f.replayWAL(st); err != nil {
			return fail(err)
		}
		f.ready.Store(true)
		last := f.now()
		if statErr == nil && fi.ModTime().Before(last) {
			last = fi.ModTime()
		}
		f.lastCurrent.Store(last.UnixNano())
		// Opening (and a replay) wrote the file: put back the moment it
		// was last known current.
		f.touch(last, true)
		f.log.Info().Str("store_id", st.StoreID()).Uint64("revision", st.Revision()).Msg("serving persisted replica")
	}

	if reg := opts.Registerer; reg != nil {
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
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return fail(fmt.Errorf("replication: register metrics: %w", err))
			}
		}
	}
	return f, nil
}

// replayWAL puts the changes of a write-ahead log left by a process that
// died back in force and commits them (see wal).
func (f *Follower) replayWAL(st *keystore.Store) error {
	r, err := readWAL(f.walPath, st.StoreID(), st.FileID(), st.Revision())
	if err != nil {
		return err
	}
	if r.problem != nil {
		f.log.Warn().Err(r.problem).Int("changes", len(r.changes)).Msg("write-ahead log ends early: replaying what precedes, the watch fetches the rest")
	}
	if len(r.changes) == 0 {
		if err := os.Remove(f.walPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replication: remove write-ahead log: %w", err)
		}
		return nil
	}
	if f.wal, err = resumeWAL(f.walPath, r.head, r.valid); err != nil {
		return err
	}
	if err := st.Stage(r.changes); err != nil {
		return err
	}
	f.log.Info().Int("changes", len(r.changes)).Uint64("revision", st.Revision()).Msg("write-ahead log replayed")
	// On failure the changes stay in force from memory, and the watch
	// retries the commit before it follows (see commit).
	f.logCommit(f.commit())
	return nil
}

func defaultClient() *http.Client {
	return &http.Client{Transport: NewTransport()}
}

// NewTransport returns the transport of the default HTTPClient: dial,
// TLS-handshake and response-header timeouts, no overall timeout. A caller
// that sets its own TLS configuration starts from it.
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		ForceAttemptHTTP2:     true,
	}
}

// Lookup finds a key in the current replica. It returns ErrNotReady before
// a replica is loaded and ErrClosed after Close; otherwise it is exactly
// keystore.Store.Lookup.
func (f *Follower) Lookup(h keystore.Hash) (keystore.LookupResult, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return keystore.LookupResult{}, ErrClosed
	}
	if !f.ready.Load() {
		return keystore.LookupResult{}, ErrNotReady
	}
	return f.store.Lookup(h)
}

// Ready reports whether a snapshot or persisted replica is loaded.
func (f *Follower) Ready() bool { return f.ready.Load() }

// ReleaseMemory gives the replica's mapped file pages back (see
// keystore.Store.ReleaseMemory).
func (f *Follower) ReleaseMemory() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return nil
	}
	return f.store.ReleaseMemory()
}

// Healthy returns nil when lookups may be trusted: a replica is loaded and,
// with MaxStaleness set, it was known current within that bound. Front
// doors answer 503 otherwise.
func (f *Follower) Healthy() error {
	f.mu.RLock()
	closed := f.store == nil
	f.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case !f.ready.Load():
		return ErrNotReady
	}
	if max := f.opts.MaxStaleness; max > 0 {
		if s := f.Staleness(); s > max {
			return fmt.Errorf("%w: last known current %s ago (max %s)", ErrStale, s.Round(time.Millisecond), max)
		}
	}
	return nil
}

// Staleness is the time since the replica was last known current: the
// last heartbeat or change received on a live watch, or the snapshot it
// loaded. A replica found on disk at start counts from the file's
// modification time; with nothing loaded, from NewFollower.
func (f *Follower) Staleness() time.Duration {
	last := f.lastCurrent.Load()
	if last == 0 {
		last = f.created.UnixNano()
	}
	now := f.now().UnixNano()
	if d := now - last; d >= 0 {
		return time.Duration(d)
	}
	// The clock went back: count staleness from now rather than waiting
	// for the clock to pass the old reading.
	if f.lastCurrent.CompareAndSwap(last, now) && f.opts.MaxStaleness > 0 {
		f.healthChanged() // a stale replica may be current again
	}
	return 0
}

// Revision returns the revision in force in the replica (0 when nothing
// is loaded).
func (f *Follower) Revision() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return 0
	}
	return f.store.Revision()
}

// PersistedRevision returns the revision of the replica file: Revision
// minus the changes in force that wait to be written (see SyncInterval).
func (f *Follower) PersistedRevision() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return 0
	}
	return f.store.DurableRevision()
}

// StoreID returns the id of the admin store the replica came from.
func (f *Follower) StoreID() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return ""
	}
	return f.store.StoreID()
}

// Close commits the changes in force to the replica file and closes it;
// lookups then fail with ErrClosed. It waits for in-flight lookups. Call
// it after Run has returned.
func (f *Follower) Close() error {
	if t := f.persistTimer.Load(); t != nil {
		t.Stop() // the commit below does its work
	}
	f.walMu.Lock()
	defer f.walMu.Unlock()
	f.mu.Lock()
	st := f.store
	f.store = nil
	f.mu.Unlock()
	if st == nil {
		return nil
	}
	f.healthChanged()
	err := st.Close()
	if last := f.lastCurrent.Load(); err == nil && last != 0 {
		// Its commit set the file's time to now; it was current then.
		at := time.Unix(0, last)
		_ = os.Chtimes(f.path, at, at)
	}
	if f.wal != nil {
		// Keep the log if the file did not get everything in it.
		werr := f.wal.close()
		if err == nil && werr == nil {
			werr = os.Remove(f.walPath)
		}
		f.wal = nil
		err = errors.Join(err, werr)
	}
	return err
}

// dropWAL removes the write-ahead log of a replica a snapshot replaced;
// the caller holds walMu. A log left behind by a crash before this point
// names the replaced file and is never replayed into the new one.
func (f *Follower) dropWAL() error {
	if f.wal != nil {
		f.wal.close()
		f.wal = nil // the next change starts a log for the new file
	}
	if err := os.Remove(f.walPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replication: remove write-ahead log: %w", err)
	}
	return nil
}

func (f *Follower) markCurrent(at time.Time) {
	prev := f.lastCurrent.Swap(at.UnixNano())
	if max := f.opts.MaxStaleness; max > 0 && (prev == 0 || at.UnixNano() < prev || at.Sub(time.Unix(0, prev)) > max) {
		f.healthChanged() // it was (or may have been) stale until now, or the clock went back
	}
	f.touch(at, false)
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

// touch persists the moment the replica was last known current in the
// file's mtime, so that a restart while the admin is down still knows how
// stale the replica is: at most every touchEvery unless force, and only
// when the file holds every change in force (a commit writing the file
// later sets the mtime again, and touches it back).
func (f *Follower) touch(at time.Time, force bool) {
	f.touchMu.Lock()
	defer f.touchMu.Unlock()
	if !force && at.Sub(f.lastTouch) < touchEvery && !at.Before(f.lastTouch) {
		return
	}
	f.mu.RLock()
	current := f.store != nil && f.store.Staged() == 0
	f.mu.RUnlock()
	if current {
		f.lastTouch = at
		_ = os.Chtimes(f.path, at, at)
	}
}

// errResnapshot means the admin answered 410 to the watch: compacted
// revision, replica ahead of the admin, or a different store id.
var errResnapshot = errors.New("replication: admin requires a new snapshot")

// errIdle means no line arrived within IdleTimeout.
var errIdle = errors.New("replication: no data from admin within the idle timeout")

// errProtocol means the watch stream broke the protocol (gap, bad line).
var errProtocol = errors.New("replication: watch protocol error")

// Run keeps the replica in step with the admin until ctx is done, then
// flushes pending usage (bounded) and returns nil. Admin failures never
// end it: the replica keeps serving and Run retries with jittered backoff
// capped by MaxBackoff. It returns ErrClosed if the follower is closed
// meanwhile.
func (f *Follower) Run(ctx context.Context) error {
	if !f.running.CompareAndSwap(false, true) {
		return errors.New("replication: Run is already running")
	}
	defer f.running.Store(false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.runUsage(ctx)
	}()
	defer wg.Wait()

	bo := backoff.Backoff{Base: min(minBackoff, f.opts.MaxBackoff), Max: f.opts.MaxBackoff}
	needSnapshot := !f.ready.Load()
	afterSnapshot := false
	failing := false
	for {
		if ctx.Err() != nil {
			return nil
		}
		var err error
		if needSnapshot {
			err = f.resync(ctx)
			if err == nil {
				needSnapshot, afterSnapshot = false, true
				bo.Reset()
				continue
			}
		} else {
			var live bool
			live, err = f.watch(ctx)
			if live {
				bo.Reset()
				afterSnapshot, failing = false, false
			}
			if errors.Is(err, errResnapshot) {
				needSnapshot = true
				f.log.Info().Err(err).Msg("taking a new snapshot")
				// Straight away, unless this follows a snapshot just
				// taken: then back off, so a log compacted faster than a
				// snapshot loads cannot spin.
				if !afterSnapshot {
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		d := bo.Next()
		ev := f.log.Warn()
		if failing {
			ev = f.log.Debug()
		}
		ev.Err(err).Dur("retry_in", d).Bool("serving", f.ready.Load()).Uint64("revision", f.Revision()).Msg("replication interrupted")
		failing = true
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// request issues an authenticated GET whose context is cancelled when no
// line arrives within IdleTimeout; touch resets that timer.
func (f *Follower) request(ctx context.Context, u string) (resp *http.Response, touch func(), done func(), err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	idle := time.AfterFunc(f.opts.IdleTimeout, func() { cancel(errIdle) })
	done = func() {
		idle.Stop()
		cancel(nil)
	}
	touch = func() { idle.Reset(f.opts.IdleTimeout) }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Token)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err = f.client.Do(req)
	if err != nil {
		done()
		if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
			err = errIdle
		}
		return nil, nil, nil, redactURLError(err)
	}
	return resp, touch, done, nil
}

// redactURLError keeps the error but drops the query string of the URL it
// names (nothing secret is there today; this keeps it that way).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			ue.URL = ue.URL[:i]
		}
	}
	return err
}

// statusError describes a non-200 answer, with the admin's error message.
func statusError(resp *http.Response) error {
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	if body.Error != "" {
		return fmt.Errorf("admin answered %d: %s", resp.StatusCode, body.Error)
	}
	return fmt.Errorf("admin answered %d", resp.StatusCode)
}

// watch follows the change stream from the replica's revision. live
// reports whether a heartbeat arrived, i.e. the follower was current.
func (f *Follower) watch(ctx context.Context) (live bool, err error) {
	if f.commitFailed.Load() {
		// The watch stopped because the file refused the changes in
		// force; it resumes once they are written.
		if err := f.commit(); err != nil {
			return false, err
		}
	}
	f.mu.RLock()
	st := f.store
	f.mu.RUnlock()
	if st == nil {
		return false, ErrClosed
	}
	u := f.base + PathWatch + "?since=" + strconv.FormatUint(st.Revision(), 10) + "&store_id=" + url.QueryEscape(st.StoreID())
	resp, touch, done, err := f.request(ctx, u)
	if err != nil {
		return false, err
	}
	defer done()
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		return false, fmt.Errorf("%w: %w", errResnapshot, statusError(resp))
	default:
		return false, statusError(resp)
	}
	err = f.consumeWatch(resp.Body, touch, func() {
		if !live {
			live = true
			f.log.Info().Uint64("revision", f.Revision()).Msg("following admin")
		}
	})
	if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
		err = errIdle
	}
	return live, err
}

// consumeWatch applies a watch stream until it ends. Lines that arrived
// together are staged together (see stage). onLive is called at every
// heartbeat that confirms the replica is current.
func (f *Follower) consumeWatch(body io.Reader, touch func(), onLive func()) error {
	lr := newLineReader(body, MaxLineSize)
	pos := f.Revision()
	// live turns true at the first heartbeat, which the admin sends only
	// after the catch-up: before it, applied changes do not prove the
	// replica is current.
	live := false
	batch := make([]keystore.Change, 0, 64)
	var lines []byte // the batch's lines as received, for the write-ahead log
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := f.stage(batch, lines)
		clear(batch)
		batch, lines = batch[:0], lines[:0]
		if err != nil {
			return err
		}
		if live {
			f.markCurrent(f.now())
		}
		return nil
	}
	for {
		line, err := lr.next()
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			if errors.Is(err, io.EOF) {
				return errors.New("replication: admin ended the watch")
			}
			return err
		}
		touch()
		l, err := decodeWatchLine(line)
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("%w: %w", errProtocol, err)
		}
		if l.Type == typeHeartbeat {
			if err := flush(); err != nil {
				return err
			}
			if f.commitFailed.Load() {
				return errCommit
			}
			if l.Revision != pos {
				return fmt.Errorf("%w: heartbeat at revision %d, replica at %d", errProtocol, l.Revision, pos)
			}
			live = true
			f.markCurrent(f.now())
			onLive()
			continue
		}
		if l.Revision != pos+1 {
			if err := flush(); err != nil {
				return err
			}
			return fmt.Errorf("%w: revision %d follows %d", errProtocol, l.Revision, pos)
		}
		pos = l.Revision
		batch = append(batch, l.change())
		lines = append(lines, line...)
		if len(batch) >= watchBatchMax || !lr.lineBuffered() {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// emptyWAL empties the write-ahead log when it is past walKeep and the
// replica file holds every change in force.
func (f *Follower) emptyWAL() error {
	f.walMu.Lock()
	defer f.walMu.Unlock()
	if f.wal == nil || f.wal.size < f.walKeep {
		return nil
	}
	f.mu.RLock()
	done := f.store != nil && f.store.Staged() == 0
	f.mu.RUnlock()
	if !done {
		return nil
	}
	return f.wal.reset()
}

// errCommit ends the watch when the replica file refused the changes in
// force: the replica is then not known current (it turns stale, and 503
// with MaxStaleness) and the staged changes stay bounded.
var errCommit = errors.New("replication: replica file not writable")

// stage puts changes in force in the current replica at once, after
// appending their lines to the write-ahead log, and schedules writing them
// to the replica file (see persist): the decision changes without waiting
// for an fsync, and a burst of changes shares one commit.
func (f *Follower) stage(changes []keystore.Change, lines []byte) error {
	if f.commitFailed.Load() {
		return errCommit
	}
	big, err := f.stageLogged(changes, lines)
	if err != nil {
		return err
	}
	d := f.opts.SyncInterval
	if d < 0 || big {
		return f.commit()
	}
	if f.persistDue.CompareAndSwap(false, true) {
		// Jittered in [d/2, 3d/2): sidecars on one node receive a change
		// together and would otherwise all fsync together. A timer, not a
		// goroutine woken per change: this is the path to the decision.
		f.persistTimer.Store(time.AfterFunc(d/2+rand.N(d), f.persist))
	}
	return nil
}

// stageLogged appends lines to the write-ahead log and stages changes,
// under walMu so that a commit never empties the log of a change it did
// not write. big reports a log past walMax. It holds mu shared so that
// Close cannot close the store underneath.
func (f *Follower) stageLogged(changes []keystore.Change, lines []byte) (big bool, err error) {
	f.walMu.Lock()
	defer f.walMu.Unlock()
	f.mu.RLock()
	defer f.mu.RUnlock()
	st := f.store
	if st == nil {
		return false, ErrClosed
	}
	if f.wal == nil {
		if f.wal, err = createWAL(f.walPath, st.StoreID(), st.FileID()); err != nil {
			return false, err
		}
	}
	if err := f.wal.append(lines); err != nil {
		return false, err
	}
	if err := st.Stage(changes); err != nil {
		// Not in force: take the lines back out of the log.
		return false, errors.Join(err, f.wal.cut(int64(len(lines))))
	}
	return f.wal.size > walMax, nil
}

// persist commits the staged changes when their SyncInterval is over. A
// failed commit is retried by the next watch (see errCommit); Close
// commits what is left at shutdown.
func (f *Follower) persist() {
	f.persistDue.Store(false) // changes staged from now on schedule the next commit
	f.logCommit(f.commit())
}

// logCommit logs a failed commit; a closed follower is not a failure.
func (f *Follower) logCommit(err error) {
	if err != nil && !errors.Is(err, ErrClosed) {
		f.log.Error().Err(err).Msg("replica file not written: the changes in force stay in memory and following pauses until it is")
	}
}

// commit writes the staged changes of the current replica to its file.
func (f *Follower) commit() error {
	f.commitMu.Lock()
	defer f.commitMu.Unlock()
	f.mu.RLock()
	st := f.store
	var err error
	if st == nil {
		err = ErrClosed
	} else {
		err = st.Commit()
	}
	f.mu.RUnlock()
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			f.commitFailed.Store(true)
		}
		return fmt.Errorf("replication: write replica: %w", err)
	}
	f.commitFailed.Store(false)
	if err := f.emptyWAL(); err != nil {
		return err
	}
	if last := f.lastCurrent.Load(); last != 0 {
		f.touch(time.Unix(0, last), true)
	}
	return nil
}
