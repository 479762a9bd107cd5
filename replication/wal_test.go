package replication

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
)

// copyFile copies src to dst as it is on disk now.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// stagedSetup is a follower of admin whose commits never come during a
// test, caught up by a snapshot (written at once), with a revocation of
// victim in force but not committed.
type stagedSetup struct {
	admin  *keystore.Store
	victim testKey
	fr     *front
	dir    string
	f      *Follower
	reg    *prometheus.Registry
	stop   func()
}

func newStagedSetup(t *testing.T) *stagedSetup {
	t.Helper()
	c := &stagedSetup{admin: newAdminStore(t), dir: t.TempDir()}
	c.victim = createKey(t, c.admin, nil)
	c.fr = newFront(t, newServer(t, c.admin))
	c.f, c.reg = newFollower(t, c.dir, c.fr.url(), func(o *FollowerOptions) { o.SyncInterval = time.Hour })
	c.stop = run(t, c.f)
	caughtUp(t, c.f, c.admin)
	if _, err := c.admin.RevokeKey(c.victim.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "revocation in force", func() bool { return lookup(t, c.f, c.victim).Key.RevokedAt != nil })
	return c
}

// TestChangeInForceBeforeTheFile: a change received on the watch decides
// lookups before the replica file has it; it is in the write-ahead log
// first. A copy of the directory taken then, as a process that died would
// leave it, comes back with the change in force and in the file, with the
// admin unreachable. Close writes the file and removes the log.
func TestChangeInForceBeforeTheFile(t *testing.T) {
	c := newStagedSetup(t)
	admin, victim, dir, f, reg, stop := c.admin, c.victim, c.dir, c.f, c.reg, c.stop
	if f.PersistedRevision() >= f.Revision() || f.Revision() != admin.Revision() {
		t.Fatalf("persisted %d, in force %d, admin %d: want the file behind", f.PersistedRevision(), f.Revision(), admin.Revision())
	}
	if got := metric(t, reg, "extauthz_replica_persisted_revision", ""); got != float64(f.PersistedRevision()) {
		t.Errorf("extauthz_replica_persisted_revision = %v; want %d", got, f.PersistedRevision())
	}
	if got := replicaRecords(t, f).Revision; got != f.PersistedRevision() {
		t.Errorf("file at revision %d; PersistedRevision %d", got, f.PersistedRevision())
	}
	log, err := os.ReadFile(filepath.Join(dir, WALFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`"revision":`+jsonNumber(admin.Revision()))) || bytes.Contains(log, []byte(victim.raw)) {
		t.Fatalf("write-ahead log %q: want the revocation's line and no raw key", log)
	}

	// What a process killed now leaves behind.
	crashed := t.TempDir()
	copyFile(t, filepath.Join(dir, ReplicaFile), filepath.Join(crashed, ReplicaFile))
	copyFile(t, filepath.Join(dir, WALFile), filepath.Join(crashed, WALFile))
	down := newFront(t, nil) // the admin is unreachable
	f2, _ := newFollower(t, crashed, down.url())
	if !f2.Ready() {
		t.Fatal("restarted follower not ready from its file and log")
	}
	if lookup(t, f2, victim).Key.RevokedAt == nil {
		t.Fatal("the revocation in the log was lost")
	}
	if f2.Revision() != admin.Revision() || f2.PersistedRevision() != admin.Revision() {
		t.Fatalf("replayed follower at %d/%d; want %d in force and in the file", f2.Revision(), f2.PersistedRevision(), admin.Revision())
	}
	sameRecords(t, replicaRecords(t, f2), records(t, admin))

	stop()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, WALFile)); !os.IsNotExist(err) {
		t.Errorf("log after Close: %v; want removed", err)
	}
	f3, _ := newFollower(t, dir, down.url())
	sameRecords(t, replicaRecords(t, f3), records(t, admin))
}

func jsonNumber(v uint64) string { b, _ := json.Marshal(v); return string(b) }

// testFile is the replica file id of the logs walLines builds.
const testFile = "file-1"

// walLines builds a log: a header for storeID and testFile, then lines.
func walLines(storeID string, lines ...string) []byte {
	return walLinesOf(storeID, testFile, lines...)
}

func walLinesOf(storeID, fileID string, lines ...string) []byte {
	h, _ := json.Marshal(walHeader{Type: "wal", StoreID: storeID, FileID: fileID})
	out := append(h, '\n')
	for _, l := range lines {
		out = append(out, l...)
	}
	return out
}

func changeLine(t testing.TB, rev uint64, scope string) string {
	t.Helper()
	k := &keystore.Key{ID: "k" + scope, Hash: keystore.HashKey("nex_" + scope), Prefix: "nex_", Scopes: []string{scope}}
	b, err := appendLine(nil, recordLine{Type: typeKey, Revision: rev, Key: k.Enforcement()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadWAL(t *testing.T) {
	const store = "store-1"
	one, two, three := changeLine(t, 5, "a"), changeLine(t, 6, "b"), changeLine(t, 7, "c")
	head := int64(len(walLines(store)))
	for _, tc := range []struct {
		name    string
		log     []byte
		from    uint64
		want    int    // changes
		valid   int64  // bytes
		problem string // "" for none
	}{
		{"whole", walLines(store, one, two, three), 4, 3, head + int64(len(one+two+three)), ""},
		{"already in the file", walLines(store, one, two, three), 5, 2, head + int64(len(one+two+three)), ""},
		{"all in the file", walLines(store, one, two), 6, 0, head + int64(len(one+two)), ""},
		{"torn tail", walLines(store, one, two, three[:len(three)-5]), 4, 2, head + int64(len(one+two)), "unexpected EOF"},
		{"garbage line", walLines(store, one, "{not json\n", three), 4, 1, head + int64(len(one)), "bad stream line"},
		{"gap", walLines(store, one, three), 4, 1, head + int64(len(one)), "revision 7 follows 5"},
		{"gap after the file", walLines(store, two), 4, 0, head, "revision 6 follows 4"},
		{"heartbeat", walLines(store, one, `{"type":"heartbeat","revision":5}`+"\n"), 4, 1, head + int64(len(one)), "heartbeat"},
		{"another store", walLines("store-2", one), 4, 0, 0, "log of store"},
		{"another file", walLinesOf(store, "file-2", one), 4, 0, 0, "log of store"},
		{"no header", []byte(one), 4, 0, 0, "not a write-ahead log"},
		{"empty file", nil, 4, 0, 0, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), WALFile)
			if err := os.WriteFile(path, tc.log, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := readWAL(path, store, testFile, tc.from)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.changes) != tc.want || r.valid != tc.valid {
				t.Errorf("%d changes, %d valid bytes; want %d, %d", len(r.changes), r.valid, tc.want, tc.valid)
			}
			for i, c := range r.changes {
				if c.Revision != tc.from+uint64(i)+1 {
					t.Errorf("change %d at revision %d; want %d", i, c.Revision, tc.from+uint64(i)+1)
				}
			}
			switch {
			case tc.problem == "" && r.problem != nil:
				t.Errorf("problem %v; want none", r.problem)
			case tc.problem != "" && (r.problem == nil || !strings.Contains(r.problem.Error(), tc.problem)):
				t.Errorf("problem %v; want one naming %q", r.problem, tc.problem)
			}
		})
	}
	if r, err := readWAL(filepath.Join(t.TempDir(), "absent"), store, testFile, 0); err != nil || r.problem != nil || len(r.changes) != 0 {
		t.Errorf("missing log: %+v, %v; want nothing", r, err)
	}
}

// TestWALResumeAfterTornTail: appending resumes right after the last whole
// line, so a torn line never sits in front of new ones.
func TestWALResumeAfterTornTail(t *testing.T) {
	const store = "store-1"
	one, two, three := changeLine(t, 5, "a"), changeLine(t, 6, "b"), changeLine(t, 7, "c")
	path := filepath.Join(t.TempDir(), WALFile)
	if err := os.WriteFile(path, walLines(store, one, two[:10]), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := readWAL(path, store, testFile, 4)
	if err != nil || len(r.changes) != 1 || r.problem == nil {
		t.Fatalf("torn log: %+v, %v", r, err)
	}
	w, err := resumeWAL(path, r.head, r.valid)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.append([]byte(two + three)); err != nil {
		t.Fatal(err)
	}
	if r, err = readWAL(path, store, testFile, 4); err != nil || len(r.changes) != 3 || r.problem != nil {
		t.Fatalf("after resuming: %d changes, problem %v, %v; want 3, none", len(r.changes), r.problem, err)
	}
	if err := w.reset(); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, walLines(store)) {
		t.Fatalf("after reset: %q; want the header alone", b)
	}
}

// FuzzReadWAL: whatever a log holds, its reader returns contiguous changes
// after the replica's revision, and a valid prefix within the log that
// reads back to the same changes with no problem.
func FuzzReadWAL(f *testing.F) {
	const store = "store-1"
	one, two := changeLine(f, 5, "a"), changeLine(f, 6, "b")
	f.Add(walLines(store, one, two), uint64(4))
	f.Add(walLines(store, one, two[:9]), uint64(4))
	f.Add(walLines(store, two, one), uint64(5))
	f.Add(walLines("other", one), uint64(4))
	f.Add([]byte("{\"type\":\"wal\",\"store_id\":\"store-1\",\"file_id\":\"file-1\"}\n{}\n"), uint64(0))
	f.Fuzz(func(t *testing.T, log []byte, from uint64) {
		r := parseWAL(bytes.NewReader(log), store, testFile, from)
		if r.valid > int64(len(log)) || r.head > r.valid {
			t.Fatalf("valid %d, head %d of %d bytes", r.valid, r.head, len(log))
		}
		for i, c := range r.changes {
			if c.Revision != from+uint64(i)+1 || (c.Key == nil) == (c.User == nil) {
				t.Fatalf("change %d: revision %d, key %v, user %v", i, c.Revision, c.Key != nil, c.User != nil)
			}
		}
		if r.valid == 0 {
			return
		}
		again := parseWAL(bytes.NewReader(log[:r.valid]), store, testFile, from)
		if again.problem != nil || len(again.changes) != len(r.changes) || again.valid != r.valid {
			t.Fatalf("valid prefix reads back as %d changes, %d bytes, problem %v; want %d, %d", len(again.changes), again.valid, again.problem, len(r.changes), r.valid)
		}
	})
}

// TestSnapshotDropsTheLog: a snapshot installed over a replica (here: the
// admin answers for another store) removes the replaced file's log, whose
// staged changes it supersedes; a log of the replaced file is never
// replayed into the new one.
func TestSnapshotDropsTheLog(t *testing.T) {
	c := newStagedSetup(t)
	victim, fr, dir, f, reg, stop := c.victim, c.fr, c.dir, c.f, c.reg, c.stop
	stale, err := os.ReadFile(filepath.Join(dir, WALFile))
	if err != nil {
		t.Fatal(err)
	}

	second := newAdminStore(t)
	other := createKey(t, second, nil)
	fr.set(newServer(t, second))
	waitFor(t, "snapshot of the other store", func() bool { return metric(t, reg, "extauthz_replica_resyncs_total", "ok") == 2 })
	caughtUp(t, f, second)
	if _, err := os.Stat(filepath.Join(dir, WALFile)); !os.IsNotExist(err) {
		t.Fatalf("log after the snapshot: %v; want removed", err)
	}
	if !found(f, other) || found(f, victim) {
		t.Fatal("replica is not the second store's")
	}

	// A crash between installing the file and removing the log would leave
	// the old log beside the new file: it names another file.
	fr.set(nil)
	stop()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, WALFile), stale, 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	f2, _ := newFollower(t, dir, fr.url(), func(o *FollowerOptions) { o.Logger = zerolog.New(logs) })
	if f2.Revision() != second.Revision() || !found(f2, other) || found(f2, victim) {
		t.Fatalf("replayed a log of the replaced file: revision %d", f2.Revision())
	}
	if !strings.Contains(logs.String(), "log of store") {
		t.Errorf("ignored log not reported: %s", logs.String())
	}
}

// TestCommitKeepsASmallLog: a commit leaves a log under walKeep as it is
// (a truncate is a journaled metadata update that the next append would
// wait for), and a restart from the committed file and that log replays
// nothing; a commit that leaves the log past walKeep empties it.
func TestCommitKeepsASmallLog(t *testing.T) {
	c := newStagedSetup(t)
	admin, victim, dir, f := c.admin, c.victim, c.dir, c.f
	walPath := filepath.Join(dir, WALFile)
	revLine := func(rev uint64) []byte { return []byte(`"revision":` + jsonNumber(rev)) }

	if err := f.commit(); err != nil {
		t.Fatal(err)
	}
	if f.PersistedRevision() != admin.Revision() {
		t.Fatalf("file at %d after commit; want %d", f.PersistedRevision(), admin.Revision())
	}
	kept, err := os.ReadFile(walPath)
	if err != nil || !bytes.Contains(kept, revLine(admin.Revision())) {
		t.Fatalf("log after a commit under walKeep: %q, %v; want the committed line kept", kept, err)
	}

	// A restart from the file and the kept log: nothing to replay.
	restarted := t.TempDir()
	copyFile(t, filepath.Join(dir, ReplicaFile), filepath.Join(restarted, ReplicaFile))
	copyFile(t, walPath, filepath.Join(restarted, WALFile))
	logs := &syncBuffer{}
	f2, _ := newFollower(t, restarted, newFront(t, nil).url(), func(o *FollowerOptions) { o.Logger = zerolog.New(logs) })
	if !f2.Ready() || f2.Revision() != admin.Revision() || lookup(t, f2, victim).Key.RevokedAt == nil {
		t.Fatalf("restart with a kept log: ready %v, revision %d; want %d with the revocation", f2.Ready(), f2.Revision(), admin.Revision())
	}
	if strings.Contains(logs.String(), "replayed") || strings.Contains(logs.String(), "ends early") {
		t.Errorf("a log of committed lines was replayed or reported: %s", logs.String())
	}

	// Past walKeep, the commit empties the log down to its header.
	f.walMu.Lock()
	f.walKeep = 1
	f.walMu.Unlock()
	next := createKey(t, admin, nil)
	waitFor(t, "new key in force", func() bool { return found(f, next) })
	if err := f.commit(); err != nil {
		t.Fatal(err)
	}
	emptied, err := os.ReadFile(walPath)
	if err != nil || bytes.Contains(emptied, []byte(`"revision"`)) || !bytes.Contains(emptied, []byte(`"type":"wal"`)) {
		t.Fatalf("log after a commit past walKeep: %q, %v; want the header alone", emptied, err)
	}
}
