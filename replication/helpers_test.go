package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
)

const (
	testToken     = "test-replication-token-0123456789"
	alphanumeric  = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	testHeartbeat = 20 * time.Millisecond
)

// newAdminStore opens an authoritative store in a temp dir.
func newAdminStore(t testing.TB) *keystore.Store {
	t.Helper()
	st, err := keystore.Open(filepath.Join(t.TempDir(), "admin.db"), keystore.Options{NoSync: true})
	if err != nil {
		t.Fatalf("open admin store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// testKey is a key created on an admin store, with its raw form.
type testKey struct {
	raw string
	key *keystore.Key
}

func (k testKey) hash() keystore.Hash { return keystore.HashKey(k.raw) }

// createKey mints and stores a key; mod may adjust the record first.
func createKey(t testing.TB, st *keystore.Store, mod func(*keystore.Key)) testKey {
	t.Helper()
	raw, err := keystore.Mint("nex_", alphanumeric, 32)
	if err != nil {
		t.Fatal(err)
	}
	k := &keystore.Key{
		ID:       uuid.NewString(),
		Hash:     keystore.HashKey(raw),
		Prefix:   keystore.DisplayPrefix(raw),
		Name:     "key named " + raw[4:12],
		Scopes:   []string{"signals", "agents"},
		Metadata: map[string]string{"team": "payments"},
	}
	if mod != nil {
		mod(k)
	}
	if err := st.CreateKey(k, "tester"); err != nil {
		t.Fatalf("create key: %v", err)
	}
	return testKey{raw: raw, key: k}
}

// newServer serves st with a short heartbeat.
func newServer(t testing.TB, st *keystore.Store) *Server {
	t.Helper()
	s := mustServer(t, ServerOptions{Store: st, Token: testToken, Heartbeat: testHeartbeat, Logger: zerolog.Nop()})
	t.Cleanup(s.Close)
	return s
}

// front is an HTTP server we control standing in for the admin's address:
// it forwards to a backend handler that can be swapped (another admin) or
// removed (an outage: every request and open stream is cut).
type front struct {
	ts      *httptest.Server
	backend atomic.Pointer[http.Handler]
}

func newFront(t testing.TB, h http.Handler) *front {
	t.Helper()
	return startFront(t, h, nil, nil)
}

// startFront is newFront listening on ln (nil: a port of 127.0.0.1) and,
// with tlsConf, serving TLS.
func startFront(t testing.TB, h http.Handler, ln net.Listener, tlsConf *tls.Config) *front {
	t.Helper()
	f := &front{}
	f.ts = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hp := f.backend.Load()
		if hp == nil {
			// Outage: drop the connection without an answer.
			panic(http.ErrAbortHandler)
		}
		(*hp).ServeHTTP(w, r)
	}))
	if ln != nil {
		f.ts.Listener.Close()
		f.ts.Listener = ln
	}
	if tlsConf != nil {
		f.ts.TLS = tlsConf
		f.ts.StartTLS()
	} else {
		f.ts.Start()
	}
	f.set(h)
	t.Cleanup(func() {
		f.set(nil)
		f.ts.CloseClientConnections()
		f.ts.Close()
	})
	return f
}

func (f *front) url() string { return f.ts.URL }

// set switches the backend (nil = outage) and cuts open connections, so
// that open watch streams end as they would if the admin went away.
func (f *front) set(h http.Handler) {
	// Cut everything first, then let the new backend in, so that no
	// request the new backend answers is cut on its way back.
	f.backend.Store(nil)
	f.ts.CloseClientConnections()
	if h != nil {
		f.backend.Store(&h)
	}
}

// serve starts a test server whose cleanup cuts open streams before it
// closes, so that a live watch cannot hold Close up.
func serve(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})
	return ts
}

type followerOpt func(*FollowerOptions)

// newFollower creates a follower with test-friendly timings and its own
// metrics registry; the follower is closed at cleanup.
func newFollower(t testing.TB, dir, adminURL string, mods ...followerOpt) (*Follower, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts := FollowerOptions{
		AdminURL:    adminURL,
		Token:       testToken,
		Dir:         dir,
		MaxBackoff:  50 * time.Millisecond,
		IdleTimeout: 2 * time.Second,
		// Short, so that waiting for the file is quick; tests of staging
		// set their own.
		SyncInterval: 20 * time.Millisecond,
		Node:         "test-node",
		Logger:       zerolog.Nop(),
		Registerer:   reg,
		// No DNS: names (memFront's) are dialled as they are.
		Resolver: staticResolver(nil),
	}
	for _, m := range mods {
		m(&opts)
	}
	f, err := NewFollower(opts)
	if err != nil {
		t.Fatalf("NewFollower: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f, reg
}

// staticResolver resolves the names it maps and no other.
type staticResolver map[string][]string

func (r staticResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if addrs, ok := r[host]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// run starts f.Run and returns a function that stops it and waits.
func run(t testing.TB, f *Follower) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// caughtUp waits until the follower holds the admin's store id and revision.
func caughtUp(t testing.TB, f *Follower, admin *keystore.Store) {
	t.Helper()
	waitFor(t, "follower to catch up, in force and in its file", func() bool {
		return f.Ready() && f.StoreID() == admin.StoreID() && f.Revision() == admin.Revision() && f.PersistedRevision() == admin.Revision()
	})
}

// recordSet is a store's full replicated content: store id, revision and
// every record's JSON by "key/<id>" or "user/<id>".
type recordSet struct {
	StoreID  string
	Revision uint64
	Records  map[string]string
}

// viewer is what records reads: an authoritative store or a replica.
type viewer interface {
	View(func(*keystore.Snapshot) error) error
}

func records(t testing.TB, st viewer) recordSet {
	t.Helper()
	rs := recordSet{Records: map[string]string{}}
	err := st.View(func(sn *keystore.Snapshot) error {
		rs.StoreID, rs.Revision = sn.StoreID, sn.Revision
		return sn.ForEach(func(c keystore.Change) error {
			var name string
			var v any
			if c.Key != nil {
				name, v = "key/"+c.Key.ID, c.Key.Enforcement()
			} else {
				name, v = "user/"+c.User.ID, c.User
			}
			b, err := json.Marshal(v)
			rs.Records[name] = string(b)
			return err
		})
	})
	if err != nil {
		t.Fatalf("read records: %v", err)
	}
	return rs
}

func replicaRecords(t testing.TB, f *Follower) recordSet {
	t.Helper()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.rep == nil {
		t.Fatal("follower closed")
	}
	return records(t, f.rep)
}

func sameRecords(t testing.TB, got, want recordSet) {
	t.Helper()
	if got.StoreID != want.StoreID || got.Revision != want.Revision {
		t.Errorf("replica at store %q revision %d; want %q revision %d", got.StoreID, got.Revision, want.StoreID, want.Revision)
	}
	for name, w := range want.Records {
		if g, ok := got.Records[name]; !ok {
			t.Errorf("replica lacks %s", name)
		} else if g != w {
			t.Errorf("replica %s = %s; want %s", name, g, w)
		}
	}
	for name := range got.Records {
		if _, ok := want.Records[name]; !ok {
			t.Errorf("replica has extra %s", name)
		}
	}
}

// metric returns the value of a counter or gauge with the given label
// value (or no labels when label is empty) from reg.
func metric(t testing.TB, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

// lookup asserts that raw is found in f and returns the result.
func lookup(t testing.TB, f *Follower, k testKey) keystore.LookupResult {
	t.Helper()
	res, err := f.Lookup(k.hash())
	if err != nil {
		t.Fatalf("Lookup(%s) error %v", k.key.ID, err)
	}
	return res
}

func found(f *Follower, k testKey) bool {
	_, err := f.Lookup(k.hash())
	return err == nil
}

func notFound(f *Follower, k testKey) bool {
	_, err := f.Lookup(k.hash())
	return errors.Is(err, keystore.ErrNotFound)
}

// mustServer is NewServer for tests.
func mustServer(tb testing.TB, opts ServerOptions) *Server {
	tb.Helper()
	s, err := NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
