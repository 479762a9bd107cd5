package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// mustOpen opens a real bbolt store in a temp dir and closes it at cleanup.
func mustOpen(t testing.TB, path string, c *clock) *Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "keys.db")
	}
	opts := Options{}
	if c != nil {
		opts.Now = c.now
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Check(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("bbolt consistency check: %v", err)
		}
		s.Close()
	})
	return s
}

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func newKey(t testing.TB, scopes ...string) (string, *Key) {
	t.Helper()
	raw, err := Mint("nex_", alnum, 32)
	if err != nil {
		t.Fatal(err)
	}
	return raw, &Key{ID: uuid.NewString(), Hash: HashKey(raw), Prefix: DisplayPrefix(raw), Name: "k", Scopes: scopes}
}

func TestMint(t *testing.T) {
	counts := map[byte]int{}
	for i := 0; i < 2000; i++ {
		k, err := Mint("nxg_", "0123456789abcdef", 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 68 || !strings.HasPrefix(k, "nxg_") {
			t.Fatalf("Mint = %q; want nxg_ + 64", k)
		}
		for i := 4; i < len(k); i++ {
			counts[k[i]]++
		}
	}
	if len(counts) != 16 {
		t.Fatalf("Mint used %d distinct hex digits; want 16", len(counts))
	}
	// 128,000 draws over 16 symbols: each near 8,000; a biased draw would be far off.
	for c, n := range counts {
		if n < 7400 || n > 8600 {
			t.Errorf("digit %c drawn %d times; want about 8000", c, n)
		}
	}
	if _, err := Mint("x", "a", 3); err == nil {
		t.Error("Mint with a one-character alphabet: want error")
	}
}

func TestLockedFileFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	mustOpen(t, path, nil)
	start := time.Now()
	_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v; want ErrLocked", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("second Open hung")
	}
}

func TestPersistenceAndNoRawKeyOnDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	raw, k := newKey(t, "signals")
	if err := s.CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	id := s.StoreID()
	s.Close()

	s = mustOpen(t, path, nil)
	if s.StoreID() != id || s.Revision() != 1 {
		t.Fatalf("after reopen: store id %q rev %d; want %q 1", s.StoreID(), s.Revision(), id)
	}
	res, err := s.Lookup(HashKey(raw))
	if err != nil || res.Key.ID != k.ID || !res.OwnerActive {
		t.Fatalf("Lookup after reopen = %+v, %v", res, err)
	}
	s.Close()
	data, _ := os.ReadFile(path)
	if bytes.Contains(data, []byte(raw)) || bytes.Contains(data, []byte(raw[4:])) {
		t.Fatal("the raw key is in the bbolt file")
	}
}

func TestLifecycleChangesAndAudit(t *testing.T) {
	c := &clock{t: time.Date(2026, 1, 15, 10, 30, 0, 0, time.UTC)}
	s := mustOpen(t, "", c)
	raw, k := newKey(t, "signals")
	k.UserID = "u1"
	if err := s.CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateKey(&Key{ID: uuid.NewString(), Hash: k.Hash, Prefix: "nex_x"}, "op"); !errors.Is(err, ErrDuplicateHash) {
		t.Fatalf("duplicate hash: %v; want ErrDuplicateHash", err)
	}
	if _, err := s.Lookup(HashKey(raw + "x")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown hash: %v; want ErrNotFound", err)
	}
	if _, err := s.SetUserActive("u1", false, "op"); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Lookup(k.Hash); res.OwnerActive {
		t.Fatal("owner still active after SetUserActive(false)")
	}
	raw2, next := newKey(t, "signals")
	c.add(time.Minute)
	old, err := s.RotateKey(k.ID, next, time.Hour, "op")
	if err != nil {
		t.Fatal(err)
	}
	if old.ExpiresAt == nil || !old.ExpiresAt.Equal(c.now().Add(time.Hour)) {
		t.Fatalf("rotated key expires at %v; want now+1h", old.ExpiresAt)
	}
	if _, err := s.Lookup(HashKey(raw2)); err != nil {
		t.Fatal(err)
	}
	revoked, err := s.RevokeKey(next.ID, "op")
	if err != nil || revoked.RevokedAt == nil {
		t.Fatalf("RevokeKey = %v, %v", revoked, err)
	}
	if _, err := s.RevokeKey(next.ID, "op"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("second revoke: %v; want ErrRevoked", err)
	}
	// create(1), user(2), rotate: new(3) old(4), revoke(5)
	var revs []uint64
	err = s.Changes(0, 0, func(ch Change) error {
		revs = append(revs, ch.Revision)
		if ch.Key != nil && ch.Key.Name != "" {
			t.Errorf("change %d carries the key name", ch.Revision)
		}
		return nil
	})
	if err != nil || len(revs) != 5 || revs[0] != 1 || revs[4] != 5 || s.Revision() != 5 {
		t.Fatalf("changes = %v, %v (revision %d); want 1..5", revs, err, s.Revision())
	}
	events, err := s.Audit(time.Time{}, 0)
	if err != nil || len(events) != 5 {
		t.Fatalf("audit = %d events, %v; want 5", len(events), err)
	}
	if events[0].Action != "key.create" || events[4].Action != "key.revoke" || events[4].Revision != 5 {
		t.Errorf("audit order/actions = %+v", events)
	}

	// Compaction: keep the newest 2.
	if n, err := s.Compact(2, 0); err != nil || n != 3 {
		t.Fatalf("Compact = %d, %v; want 3", n, err)
	}
	if err := s.Changes(1, 0, func(Change) error { return nil }); !errors.Is(err, ErrCompacted) {
		t.Fatalf("Changes(1) after compaction = %v; want ErrCompacted", err)
	}
	var after []uint64
	if err := s.Changes(3, 0, func(ch Change) error { after = append(after, ch.Revision); return nil }); err != nil || len(after) != 2 {
		t.Fatalf("Changes(3) = %v, %v; want [4 5]", after, err)
	}
}

func TestConcurrentCreatesAreBatchedAndDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	hashes := make([]Hash, 64)
	for i := range hashes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, k := newKey(t, "signals")
			hashes[i] = k.Hash
			if err := s.CreateKey(k, "op"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	s.Close()
	s = mustOpen(t, path, nil)
	for _, h := range hashes {
		if _, err := s.Lookup(h); err != nil {
			t.Fatalf("key lost: %v", err)
		}
	}
	if s.Revision() != 64 {
		t.Fatalf("revision = %d; want 64", s.Revision())
	}
}

func TestReplicaApply(t *testing.T) {
	src := mustOpen(t, "", nil)
	_, k := newKey(t, "a")
	if err := src.CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.SetUserActive("u", false, "op"); err != nil {
		t.Fatal(err)
	}
	var changes []Change
	if err := src.Changes(0, 0, func(c Change) error { changes = append(changes, c); return nil }); err != nil {
		t.Fatal(err)
	}
	dst, err := OpenReplica(filepath.Join(t.TempDir(), "replica.db"), ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if dst.StoreID() != "" {
		t.Fatalf("replica has store id %q before any snapshot", dst.StoreID())
	}
	for i := 0; i < 2; i++ { // replaying is harmless
		if err := dst.ApplyChanges(changes); err != nil {
			t.Fatal(err)
		}
	}
	if dst.Revision() != 2 {
		t.Fatalf("replica revision = %d; want 2", dst.Revision())
	}
	got, err := dst.GetKeyByHash(k.Hash)
	if err != nil || got.ID != k.ID || got.Name != "" {
		t.Fatalf("replica key = %+v, %v; want id %s without a name", got, err, k.ID)
	}
	if u, _ := dst.GetUser("u"); u.Active {
		t.Fatal("replica user active; want inactive")
	}
	if err := dst.ApplyChanges([]Change{{Revision: 3}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty change: %v; want ErrCorrupt", err)
	}
}

func BenchmarkLookup(b *testing.B) {
	s := mustOpen(b, "", nil)
	var hashes []Hash
	batch := make([]*Key, 0, 1000)
	for i := 0; i < 10000; i++ {
		_, k := newKey(b, "signals")
		hashes = append(hashes, k.Hash)
		batch = append(batch, k)
		if len(batch) == cap(batch) {
			if _, err := s.ImportKeys(batch, "bench"); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Lookup(hashes[i%len(hashes)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func TestReleaseMemoryKeepsData(t *testing.T) {
	s := mustOpen(t, "", nil)
	raw, k := newKey(t, "signals")
	if err := s.CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseMemory(); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Lookup(HashKey(raw)); err != nil || res.Key.ID != k.ID {
		t.Fatalf("Lookup after ReleaseMemory = %+v, %v", res, err)
	}
}
