package keystoretest

import (
	"bytes"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/keystore"
)

// checker is what both store types offer for the check at cleanup.
type checker interface {
	Check() error
	Close() error
}

// cleanup checks s's file with bbolt's consistency check, then closes it,
// when t ends. A store the test closed itself is not checked again.
func cleanup(t testing.TB, s checker) {
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, keystore.ErrClosed) {
			t.Errorf("keystore consistency check: %v", err)
		}
		s.Close()
	})
}

// Open opens an authoritative store at keys.db in a new temporary
// directory of t; see OpenAt.
func Open(t testing.TB, opts keystore.Options) *keystore.Store {
	t.Helper()
	return OpenAt(t, filepath.Join(t.TempDir(), "keys.db"), opts)
}

// OpenAt opens an authoritative store at path. When t ends, bbolt's
// consistency check runs on the file (a problem fails the test) and the
// store is closed.
func OpenAt(t testing.TB, path string, opts keystore.Options) *keystore.Store {
	t.Helper()
	s, err := keystore.Open(path, opts)
	if err != nil {
		t.Fatalf("keystore.Open: %v", err)
	}
	cleanup(t, s)
	return s
}

// OpenReplica opens a replica at path, checked and closed when t ends as
// by OpenAt.
func OpenReplica(t testing.TB, path string, opts keystore.ReplicaOptions) *keystore.Replica {
	t.Helper()
	r, err := keystore.OpenReplica(path, opts)
	if err != nil {
		t.Fatalf("keystore.OpenReplica: %v", err)
	}
	cleanup(t, r)
	return r
}

// Clock is a clock that only moves when told; pass its Now as a store's,
// a server's or a follower's clock. Safe for concurrent use.
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d (backwards when d is negative).
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Alphanumeric is the alphabet of NewKey's raw keys.
const Alphanumeric = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// NewKey mints a raw key with prefix (nex_ when empty) and its record: a
// new id, the hash, the display prefix, a name and the given scopes. The
// record is not stored.
func NewKey(t testing.TB, prefix string, scopes ...string) (raw string, k *keystore.Key) {
	t.Helper()
	if prefix == "" {
		prefix = "nex_"
	}
	raw, err := keystore.Mint(prefix, Alphanumeric, 32)
	if err != nil {
		t.Fatal(err)
	}
	if scopes == nil {
		scopes = []string{}
	}
	return raw, &keystore.Key{
		ID:     uuid.NewString(),
		Hash:   keystore.HashKey(raw),
		Prefix: keystore.DisplayPrefix(raw),
		Name:   "key named " + raw[len(prefix):len(prefix)+8],
		Scopes: scopes,
	}
}

// LogBuffer is an io.Writer for loggers written from several goroutines.
type LogBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
