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
	"github.com/extauthz/extauthz/keystore/keystoretest"
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
	logs := &keystoretest.LogBuffer{}
	f2, _ := newFollower(t, dir, fr.url(), func(o *FollowerOptions) { o.Logger = zerolog.New(logs) })
	if f2.Revision() != second.Revision() || !found(f2, other) || found(f2, victim) {
		t.Fatalf("replayed a log of the replaced file: revision %d", f2.Revision())
	}
	if !strings.Contains(logs.String(), "log of store") {
		t.Errorf("ignored log not reported: %s", logs.String())
	}
}
