package replication

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/usage"
	"github.com/rs/zerolog"
)

func TestSnapshotRoundTrip(t *testing.T) {
	admin := newAdminStore(t)
	project := createKey(t, admin, func(k *keystore.Key) { k.ProjectID = "p1"; k.Scopes = []string{"read", "write"} })
	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	expiring := createKey(t, admin, func(k *keystore.Key) { k.ExpiresAt = &exp })
	owned := createKey(t, admin, func(k *keystore.Key) { k.UserID = "u-off" })
	revoked := createKey(t, admin, nil)
	if _, err := admin.RevokeKey(revoked.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetUserActive("u-off", false, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetUserActive("u-on", true, "tester"); err != nil {
		t.Fatal(err)
	}
	fr := newFront(t, newServer(t, admin))

	f, reg := newFollower(t, t.TempDir(), fr.url())
	if f.Ready() {
		t.Fatal("Ready() = true before any snapshot")
	}
	if err := f.Healthy(); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Healthy() = %v; want ErrNotReady", err)
	}
	if _, err := f.Lookup(project.hash()); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Lookup before snapshot = %v; want ErrNotReady", err)
	}
	run(t, f)
	caughtUp(t, f, admin)
	sameRecords(t, replicaRecords(t, f), records(t, admin))

	if got := lookup(t, f, project).Key.ProjectID; got != "p1" {
		t.Errorf("project key ProjectID = %q; want p1", got)
	}
	if got := lookup(t, f, expiring).Key.ExpiresAt; got == nil || !got.Equal(exp) {
		t.Errorf("expiring key ExpiresAt = %v; want %v", got, exp)
	}
	if res := lookup(t, f, owned); res.OwnerActive {
		t.Error("key of a disabled user: OwnerActive = true; want false")
	}
	if res := lookup(t, f, revoked); res.Key.RevokedAt == nil {
		t.Error("revoked key: RevokedAt = nil")
	}
	if got := lookup(t, f, project).Key.Name; got != "" {
		t.Errorf("replica holds key name %q", got)
	}
	if err := f.Healthy(); err != nil {
		t.Errorf("Healthy() = %v; want nil", err)
	}
	if got := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); got != 1 {
		t.Errorf("resyncs ok = %v; want 1", got)
	}
	if got := metric(t, reg, "extauthz_replica_revision", ""); got != float64(admin.Revision()) {
		t.Errorf("extauthz_replica_revision = %v; want %d", got, admin.Revision())
	}
}

func TestWatchFollowsChanges(t *testing.T) {
	admin := newAdminStore(t)
	first := createKey(t, admin, func(k *keystore.Key) { k.UserID = "u1" })
	fr := newFront(t, newServer(t, admin))
	f, reg := newFollower(t, t.TempDir(), fr.url())
	run(t, f)
	caughtUp(t, f, admin)

	created := createKey(t, admin, nil)
	waitFor(t, "created key", func() bool { return found(f, created) })

	if _, err := admin.RevokeKey(created.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation", func() bool { return lookup(t, f, created).Key.RevokedAt != nil })

	next := testKey{raw: "nex_" + strings.Repeat("R", 32)}
	next.key = &keystore.Key{ID: uuid.NewString(), Hash: next.hash(), Prefix: keystore.DisplayPrefix(next.raw), Scopes: []string{"signals"}, UserID: "u1"}
	if _, err := admin.RotateKey(first.key.ID, next.key, 0, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rotation", func() bool { return found(f, next) && lookup(t, f, first).Key.RevokedAt != nil })

	graceful := createKey(t, admin, nil)
	after := testKey{raw: "nex_" + strings.Repeat("G", 32)}
	after.key = &keystore.Key{ID: uuid.NewString(), Hash: after.hash(), Prefix: keystore.DisplayPrefix(after.raw), Scopes: []string{}}
	if _, err := admin.RotateKey(graceful.key.ID, after.key, time.Hour, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "graceful rotation", func() bool { return found(f, after) && lookup(t, f, graceful).Key.ExpiresAt != nil })

	if _, err := admin.SetUserActive("u1", false, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "user disabled", func() bool { return !lookup(t, f, next).OwnerActive })
	if _, err := admin.SetUserActive("u1", true, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "user enabled", func() bool { return lookup(t, f, next).OwnerActive })

	caughtUp(t, f, admin)
	sameRecords(t, replicaRecords(t, f), records(t, admin))
	if got := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); got != 1 {
		t.Errorf("resyncs ok = %v; want 1 (changes must come over the watch)", got)
	}
}

func TestFailStatic(t *testing.T) {
	admin := newAdminStore(t)
	srv := newServer(t, admin)
	old := createKey(t, admin, nil)
	fr := newFront(t, srv)
	dir := t.TempDir()

	f1, _ := newFollower(t, dir, fr.url())
	stop1 := run(t, f1)
	caughtUp(t, f1, admin)

	fr.set(nil) // the admin goes away
	// The follower keeps answering from its replica while it retries.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if res := lookup(t, f1, old); res.Key.ID != old.key.ID || res.Key.RevokedAt != nil {
			t.Fatalf("lookup during outage = %+v", res.Key)
		}
		if err := f1.Healthy(); err != nil {
			t.Fatalf("Healthy() during outage without max-staleness = %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop1()
	if err := f1.Close(); err != nil {
		t.Fatal(err)
	}

	// Changes made while the sidecar is down and the admin unreachable.
	added := createKey(t, admin, nil)
	if _, err := admin.RevokeKey(old.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}

	f2, reg2 := newFollower(t, dir, fr.url())
	if !f2.Ready() {
		t.Fatal("restarted follower is not Ready from its own file")
	}
	if res := lookup(t, f2, old); res.Key.RevokedAt != nil {
		t.Fatal("restarted follower sees a change it cannot have received")
	}
	run(t, f2)
	if res := lookup(t, f2, old); res.Key.RevokedAt != nil {
		t.Fatal("follower sees a change while the admin is down")
	}

	fr.set(srv) // the admin is back
	waitFor(t, "changes made during the outage", func() bool {
		return found(f2, added) && lookup(t, f2, old).Key.RevokedAt != nil
	})
	caughtUp(t, f2, admin)
	sameRecords(t, replicaRecords(t, f2), records(t, admin))
	if got := metric(t, reg2, "extauthz_replica_resyncs_total", "ok"); got != 0 {
		t.Errorf("restarted follower took %v snapshots; want 0 (resume the watch)", got)
	}
}

func TestCompactedLogForcesSnapshot(t *testing.T) {
	admin := newAdminStore(t)
	keys := []testKey{createKey(t, admin, nil)}
	fr := newFront(t, newServer(t, admin))
	dir := t.TempDir()

	f1, _ := newFollower(t, dir, fr.url())
	stop1 := run(t, f1)
	caughtUp(t, f1, admin)
	stale := f1.Revision()
	stop1()
	f1.Close()

	for i := 0; i < 40; i++ {
		k := createKey(t, admin, nil)
		keys = append(keys, k)
		if i%3 == 0 {
			if _, err := admin.RevokeKey(k.key.ID, "tester"); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := admin.SetUserActive("u9", false, "tester"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(5, 0); err != nil {
		t.Fatal(err)
	}
	oldest, _ := admin.OldestRevision()
	if oldest <= stale+1 {
		t.Fatalf("compaction kept revision %d; test needs it gone", stale+1)
	}

	f2, reg2 := newFollower(t, dir, fr.url())
	run(t, f2)
	caughtUp(t, f2, admin)
	sameRecords(t, replicaRecords(t, f2), records(t, admin))
	if got := metric(t, reg2, "extauthz_replica_resyncs_total", "ok"); got != 1 {
		t.Errorf("resyncs ok = %v; want 1", got)
	}
	for _, k := range keys {
		if !found(f2, k) {
			t.Errorf("key %s missing after re-snapshot", k.key.ID)
		}
	}
}

// fakeAdmin is a fake of the outside world: an admin that refuses every
// watch with 410 and serves the given snapshot body, or cuts the
// connection after it when abort is set.
func fakeAdmin(t *testing.T, body []byte, abort bool) *httptest.Server {
	t.Helper()
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathWatch:
			watchGone(w, "revision compacted", 1)
		case PathSnapshot:
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write(body)
			if abort {
				http.NewResponseController(w).Flush()
				panic(http.ErrAbortHandler)
			}
		case PathUsage:
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
}

// fetch GETs a replication path with the test token and returns the body.
func fetch(t *testing.T, base, path string) []byte {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
	}
	return b
}

// snapshotParts splits a snapshot body into header, record lines, trailer.
func snapshotParts(t *testing.T, body []byte) (header []byte, recs [][]byte, trailer []byte) {
	t.Helper()
	lines := bytes.SplitAfter(body, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) < 3 {
		t.Fatalf("snapshot has %d lines", len(lines))
	}
	return lines[0], lines[1 : len(lines)-1], lines[len(lines)-1]
}

func joinLines(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func trailerFor(count int, recs [][]byte) []byte {
	sum := sha256.Sum256(joinLines(recs...))
	b, _ := json.Marshal(endLine{Type: typeEnd, Count: uint64(count), SHA256: hex.EncodeToString(sum[:])})
	return append(b, '\n')
}

func TestCorruptSnapshotRejected(t *testing.T) {
	admin := newAdminStore(t)
	kept := createKey(t, admin, nil)
	createKey(t, admin, func(k *keystore.Key) { k.UserID = "u1" })
	if _, err := admin.SetUserActive("u1", false, "tester"); err != nil {
		t.Fatal(err)
	}
	real := serve(t, newServer(t, admin))
	dir := t.TempDir()
	f0, _ := newFollower(t, dir, real.URL)
	stop0 := run(t, f0)
	caughtUp(t, f0, admin)
	stop0()
	before := replicaRecords(t, f0)
	f0.Close()

	// A newer admin state, so that accepting a bad snapshot would show.
	createKey(t, admin, nil)
	good := fetch(t, real.URL, PathSnapshot)
	header, recs, trailer := snapshotParts(t, good)
	var end endLine
	if err := json.Unmarshal(trailer, &end); err != nil {
		t.Fatal(err)
	}
	padded := append([]byte(nil), recs[0][:len(recs[0])-2]...)
	padded = append(padded, []byte(`,"pad":"`+strings.Repeat("x", MaxLineSize)+`"}`+"\n")...)

	cases := []struct {
		name  string
		body  []byte
		abort bool
	}{
		{"bad sha256", joinLines(header, joinLines(recs...), []byte(`{"type":"end","count":`+jsonInt(len(recs))+`,"sha256":"`+strings.Repeat("ab", 32)+`"}`+"\n")), false},
		{"record changed, trailer kept", joinLines(header, bytes.Replace(recs[0], []byte(`"prefix":"nex_`), []byte(`"prefix":"nex-`), 1), joinLines(recs[1:]...), trailer), false},
		{"cut inside a line", good[:len(header)+len(recs[0])+len(recs[1])/2], false},
		{"cut before trailer", joinLines(header, joinLines(recs...)), false},
		{"connection dropped", joinLines(header, recs[0]), true},
		{"wrong count", joinLines(header, joinLines(recs...), trailerFor(len(recs)+1, recs)), false},
		{"garbage line", joinLines(header, recs[0], []byte("this is not json\n"), joinLines(recs[1:]...), trailer), false},
		{"unknown line type", joinLines(header, []byte(`{"type":"project","project":{}}`+"\n"), trailer), false},
		{"wrong schema", joinLines(bytes.Replace(header, []byte(`"schema":1`), []byte(`"schema":2`), 1), joinLines(recs...), trailer), false},
		{"missing header", joinLines(joinLines(recs...), trailer), false},
		{"line too long", joinLines(header, padded, joinLines(recs[1:]...), trailerFor(len(recs), append([][]byte{padded}, recs[1:]...))), false},
		{"data after trailer", joinLines(good, recs[0]), false},
		{"empty body", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := fakeAdmin(t, tc.body, tc.abort)
			f, reg := newFollower(t, dir, fake.URL)
			if !f.Ready() {
				t.Fatal("replica not Ready from its file")
			}
			stop := run(t, f)
			waitFor(t, "a rejected snapshot", func() bool {
				return metric(t, reg, "extauthz_replica_resyncs_total", "failed") >= 1
			})
			if res := lookup(t, f, kept); res.Key.ID != kept.key.ID {
				t.Errorf("old replica no longer serves %s", kept.key.ID)
			}
			if _, err := os.Stat(filepath.Join(dir, ReplicaFile+".tmp")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("temporary snapshot file left behind: %v", err)
			}
			if got := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); got != 0 {
				t.Errorf("resyncs ok = %v; want 0", got)
			}
			stop()
			sameRecords(t, replicaRecords(t, f), before)
			f.Close()
		})
	}

	t.Run("fresh follower stays not ready", func(t *testing.T) {
		fake := fakeAdmin(t, joinLines(header, joinLines(recs...)), false)
		f, reg := newFollower(t, t.TempDir(), fake.URL)
		run(t, f)
		waitFor(t, "a rejected snapshot", func() bool {
			return metric(t, reg, "extauthz_replica_resyncs_total", "failed") >= 1
		})
		if f.Ready() {
			t.Error("Ready() = true after a rejected snapshot")
		}
		if err := f.Healthy(); !errors.Is(err, ErrNotReady) {
			t.Errorf("Healthy() = %v; want ErrNotReady", err)
		}
	})

	t.Run("the genuine snapshot is accepted", func(t *testing.T) {
		fake := fakeAdmin(t, good, false)
		f, reg := newFollower(t, dir, fake.URL)
		run(t, f)
		waitFor(t, "snapshot", func() bool { return metric(t, reg, "extauthz_replica_resyncs_total", "ok") >= 1 })
		waitFor(t, "swap", func() bool { return f.Revision() == admin.Revision() })
		sameRecords(t, replicaRecords(t, f), records(t, admin))
	})
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestStoreIDChangeForcesSnapshot(t *testing.T) {
	adminA := newAdminStore(t)
	shared := createKey(t, adminA, nil)
	onlyA := createKey(t, adminA, nil)
	adminB := newAdminStore(t)
	// B holds the same shared key (same id and hash) plus its own.
	k := *shared.key
	k.CreatedBy = ""
	if err := adminB.CreateKey(&k, "tester"); err != nil {
		t.Fatal(err)
	}
	onlyB := createKey(t, adminB, nil)
	if adminA.StoreID() == adminB.StoreID() {
		t.Fatal("two authorities share a store id")
	}

	fr := newFront(t, newServer(t, adminA))
	f, reg := newFollower(t, t.TempDir(), fr.url())
	run(t, f)
	caughtUp(t, f, adminA)

	// Lookups run throughout the swap; none may fail.
	var (
		stopLookups atomic.Bool
		wg          sync.WaitGroup
		lookups     atomic.Int64
		failures    atomic.Int64
		firstErr    atomic.Value
	)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopLookups.Load() {
				if _, err := f.Lookup(shared.hash()); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				lookups.Add(1)
			}
		}()
	}

	fr.set(newServer(t, adminB))
	caughtUp(t, f, adminB)
	stopLookups.Store(true)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d lookups failed during the swap; first: %v", n, lookups.Load(), firstErr.Load())
	}
	sameRecords(t, replicaRecords(t, f), records(t, adminB))
	if !notFound(f, onlyA) {
		t.Error("key of the old store still found")
	}
	if !found(f, onlyB) {
		t.Error("key of the new store not found")
	}
	if got := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); got != 2 {
		t.Errorf("resyncs ok = %v; want 2", got)
	}
}

// TestUsageReachesAdmin: uses recorded in a usage buffer whose Send is the
// follower's reach the admin, merged per key; while the admin is down they
// are kept and merged with later ones, then delivered.
func TestUsageReachesAdmin(t *testing.T) {
	admin := newAdminStore(t)
	k1 := createKey(t, admin, nil)
	k2 := createKey(t, admin, nil)
	fr := newFront(t, newServer(t, admin))
	f, _ := newFollower(t, t.TempDir(), fr.url())
	buf, err := usage.New(usage.Options{Send: f.SendUsage, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	t1 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second) // in the past: the admin clamps future uses
	t2 := t1.Add(time.Minute)
	for _, at := range []time.Time{t2, t2, t1, t1, t1} {
		buf.Record(k1.key.ID, at, false)
	}
	buf.Record(k2.key.ID, t1, false)
	buf.Record("unknown-key", t1, false)
	buf.Flush(ctx)
	a, err1 := admin.GetKey(k1.key.ID)
	b, err2 := admin.GetKey(k2.key.ID)
	if err1 != nil || err2 != nil || a.UseCount != 5 || b.UseCount != 1 {
		t.Fatalf("use counts %v %v (%v, %v); want 5 and 1", a, b, err1, err2)
	}
	if a.LastUsedAt == nil || !a.LastUsedAt.Equal(t2) {
		t.Errorf("LastUsedAt = %v; want %v", a.LastUsedAt, t2)
	}

	// While the admin is down, reports are kept and merged, then delivered.
	fr.set(nil)
	buf.Record(k2.key.ID, t2, false)
	buf.Flush(ctx)
	if buf.Len() != 1 {
		t.Fatalf("%d keys buffered after a failed flush; want the one kept", buf.Len())
	}
	buf.Record(k2.key.ID, t1, false)
	fr.set(newServer(t, admin))
	buf.Flush(ctx)
	b, err = admin.GetKey(k2.key.ID)
	if err != nil || b.UseCount != 3 || b.LastUsedAt == nil || !b.LastUsedAt.Equal(t2) {
		t.Fatalf("after the outage: %+v, %v; want 3 uses, the last at %v", b, err, t2)
	}
	if buf.Len() != 0 {
		t.Errorf("%d keys buffered after a delivered flush; want 0", buf.Len())
	}
}

// TestMaxStaleness: heartbeats keep a following replica current for as
// long as they come; an outage makes it stale once MaxStaleness passes
// without one (lookups still answer), and the admin's return makes it
// current again. It runs in a testing/synctest bubble over an in-memory
// network: heartbeats, backoffs and the minute of staleness pass on the
// bubble's clock, and each step waits for the follower to settle.
func TestMaxStaleness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		admin := newAdminStore(t)
		k := createKey(t, admin, nil)
		srv := newServer(t, admin)
		fr := newMemFront(t, srv)
		client := fr.client()
		t.Cleanup(client.CloseIdleConnections)
		f, reg := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) {
			o.MaxStaleness = time.Minute
			o.HTTPClient = client
		})
		run(t, f)
		time.Sleep(time.Second) // the snapshot, the watch and a commit
		synctest.Wait()
		if f.Revision() != admin.Revision() || f.PersistedRevision() != admin.Revision() {
			t.Fatalf("follower at %d/%d; want %d", f.Revision(), f.PersistedRevision(), admin.Revision())
		}
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v while following", err)
		}
		// Heartbeats keep a following replica current past the bound.
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v after 3 minutes of heartbeats", err)
		}

		fr.set(nil)
		time.Sleep(time.Minute - time.Second)
		synctest.Wait()
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v within the bound of an outage", err)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("Healthy() = %v a minute into an outage; want ErrStale", err)
		}
		if got := metric(t, reg, "extauthz_replica_staleness_seconds", ""); got <= 60 {
			t.Errorf("staleness gauge = %v; want > 60", got)
		}
		// Still serving: staleness is the front doors' decision.
		lookup(t, f, k)

		fr.set(srv)
		time.Sleep(time.Second) // a backoff, then the watch's first heartbeat
		synctest.Wait()
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v after the admin returned", err)
		}
	})
}

func TestNewFollowerValidates(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		opts FollowerOptions
	}{
		{"no url", FollowerOptions{Token: "t", Dir: dir}},
		{"relative url", FollowerOptions{AdminURL: "admin:8181", Token: "t", Dir: dir}},
		{"no token", FollowerOptions{AdminURL: "http://a", Dir: dir}},
		{"no dir", FollowerOptions{AdminURL: "http://a", Token: "t"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if f, err := NewFollower(tc.opts); err == nil {
				f.Close()
				t.Errorf("NewFollower(%+v) = nil error", tc.opts)
			}
		})
	}
	t.Run("locked replica", func(t *testing.T) {
		f, _ := newFollower(t, dir, "http://127.0.0.1:1")
		defer f.Close()
		_, err := NewFollower(FollowerOptions{AdminURL: "http://127.0.0.1:1", Token: "t", Dir: dir})
		if !errors.Is(err, keystore.ErrLocked) {
			t.Errorf("second follower on one dir: %v; want ErrLocked", err)
		}
	})
	t.Run("unreadable replica moved aside", func(t *testing.T) {
		d := t.TempDir()
		if err := os.WriteFile(filepath.Join(d, ReplicaFile), bytes.Repeat([]byte("junk"), 2048), 0o600); err != nil {
			t.Fatal(err)
		}
		f, _ := newFollower(t, d, "http://127.0.0.1:1")
		if f.Ready() {
			t.Error("Ready() = true over a junk file")
		}
		if _, err := os.Stat(filepath.Join(d, ReplicaFile+".bad")); err != nil {
			t.Errorf("junk not moved aside: %v", err)
		}
	})
}

func TestCloseStopsLookups(t *testing.T) {
	f, _ := newFollower(t, t.TempDir(), "http://127.0.0.1:1")
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Lookup(keystore.Hash{1}); !errors.Is(err, ErrClosed) {
		t.Errorf("Lookup after Close = %v; want ErrClosed", err)
	}
	if err := f.Healthy(); !errors.Is(err, ErrClosed) {
		t.Errorf("Healthy after Close = %v; want ErrClosed", err)
	}
}

// TestChunkWriterStopsAtFirstError: once the snapshot writer fails (here:
// its store is closed, as a full disk would fail it), the next write
// reports the error, so a load stops at once instead of downloading the
// rest; finish returns the same error and the goroutine ends.
func TestChunkWriterStopsAtFirstError(t *testing.T) {
	st, err := keystore.OpenReplica(filepath.Join(t.TempDir(), "tmp.db"), keystore.ReplicaOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	h := keystore.HashKey("k")
	chunk := []keystore.Change{{Key: &keystore.Key{ID: "k", Hash: h, Prefix: "nex_"}}}
	w := startChunkWriter(st)
	if err := w.write(chunk); err != nil {
		t.Fatalf("first write: %v; want it queued", err)
	}
	<-w.failed
	werr := w.write(chunk)
	if werr == nil || !strings.Contains(werr.Error(), "write snapshot file") {
		t.Fatalf("write after the failure = %v; want the writer's error", werr)
	}
	if err := w.finish(); err != werr {
		t.Fatalf("finish = %v; want %v", err, werr)
	}
	if err := w.finish(); err != werr {
		t.Fatalf("second finish = %v; want %v", err, werr)
	}
}

// TestRelaxGC: overlapping loads raise the GC percentage once and restore
// it when the last one ends; an operator's GOGC is left alone.
func TestRelaxGC(t *testing.T) {
	const loadGCPercent = 400
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set in this environment")
	}
	gcPercent := func() int { v := debug.SetGCPercent(100); debug.SetGCPercent(v); return v }
	prev := debug.SetGCPercent(150)
	defer debug.SetGCPercent(prev)
	r1, r2 := relaxGC(loadGCPercent), relaxGC(loadGCPercent)
	if got := gcPercent(); got != loadGCPercent {
		t.Fatalf("during two loads: GC percent %d; want %d", got, loadGCPercent)
	}
	r1()
	if got := gcPercent(); got != loadGCPercent {
		t.Fatalf("one load still running: GC percent %d; want %d", got, loadGCPercent)
	}
	r2()
	if got := gcPercent(); got != 150 {
		t.Fatalf("after both loads: GC percent %d; want 150", got)
	}
	t.Setenv("GOGC", "150")
	relaxGC(loadGCPercent)()
	r := relaxGC(loadGCPercent)
	if got := gcPercent(); got != 150 {
		t.Fatalf("with GOGC set: GC percent %d; want it untouched (150)", got)
	}
	r()
}

// TestHealthChanged: the channel from HealthChanged is closed when a
// replica is loaded, when a stale replica becomes current again, and at
// Close; UntilStale counts down to the MaxStaleness bound. (cmd/extauthz
// drives gRPC health from these instead of polling.)
func TestHealthChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		admin, fr, clock, f := c.admin, c.fr, c.clock, c.f
		closed := func(what string, ch <-chan struct{}) {
			t.Helper()
			select {
			case <-ch:
			case <-time.After(30 * time.Second):
				t.Fatalf("HealthChanged not signalled: %s", what)
			}
		}

		ch := f.HealthChanged()
		if f.Ready() {
			t.Fatal("ready before any snapshot")
		}
		stop := run(t, f)
		closed("snapshot loaded", ch)
		caughtUp(t, f, admin)
		stop()
		if d, ok := f.UntilStale(); !ok || d <= 0 || d > time.Minute {
			t.Fatalf("UntilStale() = %v, %v right after following; want (0, 1m]", d, ok)
		}

		ch = f.HealthChanged()
		clock.Add(time.Minute + time.Second)
		if d, _ := f.UntilStale(); d > 0 {
			t.Fatalf("UntilStale() = %v past the bound; want <= 0", d)
		}
		select {
		case <-ch:
			t.Fatal("HealthChanged signalled by time passing alone")
		default:
		}
		if !errors.Is(f.Healthy(), ErrStale) {
			t.Fatal("not stale past the bound")
		}
		stop = run(t, f)
		closed("stale replica current again", ch)
		waitFor(t, "current again", func() bool { return f.Healthy() == nil })
		stop()

		ch = f.HealthChanged()
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		closed("Close", ch)

		g, _ := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) { o.HTTPClient = fr.client() })
		if _, ok := g.UntilStale(); ok {
			t.Error("UntilStale() ok without MaxStaleness")
		}
	})
}

// TestHealthChangedClockBack: a backwards clock jump that makes a stale
// replica current again is signalled too, since no event follows it.
func TestHealthChangedClockBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		clock, f := c.clock, c.f
		c.followOnce(t)
		clock.Add(time.Minute + time.Second)
		if !errors.Is(f.Healthy(), ErrStale) {
			t.Fatal("not stale past the bound")
		}
		ch := f.HealthChanged()
		clock.Add(-2 * time.Minute)
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v after the clock went back", err)
		}
		select {
		case <-ch:
		default:
			t.Fatal("HealthChanged not signalled when the clock went back")
		}
	})
}
