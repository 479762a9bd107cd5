package keystore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// openReplica opens a replica whose commits happen only when the test
// calls Commit.
func openReplica(t *testing.T, path string) *Replica {
	t.Helper()
	s, err := OpenReplica(path, ReplicaOptions{SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fileKey reads k's record from the file itself, past any staged change.
func fileKey(t *testing.T, s *Replica, k *Key) *Key {
	t.Helper()
	got, err := s.GetKeyByHash(k.Hash)
	if err != nil {
		t.Fatalf("file record of %s: %v", k.ID, err)
	}
	return got
}

func revoked(k *Key) *Key {
	r := *k.Enforcement()
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	r.RevokedAt = &at
	return &r
}

// TestStageInForceBeforeCommit: a staged change decides lookups at once,
// the file gets it only at Commit, and both revisions say where each is.
func TestStageInForceBeforeCommit(t *testing.T) {
	s := openReplica(t, filepath.Join(t.TempDir(), "replica.db"))
	_, k := newKey(t, "read")
	k.UserID = "u"
	if err := s.ApplyChanges([]Change{{Revision: 1, Key: k.Enforcement()}, {Revision: 2, User: &User{ID: "u", Active: true}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Lookup(k.Hash); err != nil || res.Key.RevokedAt != nil || !res.OwnerActive {
		t.Fatalf("before: %+v, %v", res, err)
	}
	changed := s.Changed()

	if err := s.Stage([]Change{{Revision: 3, Key: revoked(k)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed did not fire for a staged change")
	}
	if res, err := s.Lookup(k.Hash); err != nil || res.Key.RevokedAt == nil {
		t.Fatalf("staged revocation not in force: %+v, %v", res, err)
	}
	if s.Revision() != 3 || s.DurableRevision() != 2 || s.Staged() != 1 {
		t.Fatalf("revision %d durable %d staged %d; want 3, 2, 1", s.Revision(), s.DurableRevision(), s.Staged())
	}
	if fileKey(t, s, k).RevokedAt != nil {
		t.Fatal("the file has the revocation before Commit")
	}

	// ApplyChanges commits what is staged before it writes.
	_, other := newKey(t, "read")
	other.UserID = "u"
	if err := s.ApplyChanges([]Change{{Revision: 4, Key: other.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 4 || s.DurableRevision() != 4 || s.Staged() != 0 || fileKey(t, s, k).RevokedAt == nil {
		t.Fatalf("ApplyChanges after Stage: revision %d durable %d staged %d; want 4, 4, 0 and the revocation in the file", s.Revision(), s.DurableRevision(), s.Staged())
	}
	// A staged user deactivation applies to a key only the file holds.
	if err := s.Stage([]Change{{Revision: 5, User: &User{ID: "u", Active: false}}}); err != nil {
		t.Fatal(err)
	}
	if res, err := s.Lookup(other.Hash); err != nil || res.OwnerActive {
		t.Fatalf("staged deactivation: %+v, %v; want owner inactive", res, err)
	}

	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.Revision() != 5 || s.DurableRevision() != 5 || s.Staged() != 0 {
		t.Fatalf("after Commit: revision %d durable %d staged %d; want 5, 5, 0", s.Revision(), s.DurableRevision(), s.Staged())
	}
	if fileKey(t, s, k).RevokedAt == nil {
		t.Fatal("Commit did not write the revocation")
	}
	if u, err := s.GetUser("u"); err != nil || u.Active {
		t.Fatalf("Commit did not write the user: %+v, %v", u, err)
	}
	if res, _ := s.Lookup(k.Hash); res.Key.RevokedAt == nil || res.OwnerActive {
		t.Fatalf("after Commit: %+v", res)
	}
}

// TestCloseCommitsStaged: what is in force when the store closes is in
// the file when it opens again.
func TestCloseCommitsStaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "replica.db")
	s, err := OpenReplica(path, ReplicaOptions{SyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, k := newKey(t, "read")
	if err := s.ApplyChanges([]Change{{Revision: 1, Key: k.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Stage([]Change{{Revision: 2, Key: revoked(k)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openReplica(t, path)
	if s.Revision() != 2 || s.DurableRevision() != 2 {
		t.Fatalf("reopened at %d/%d; want 2", s.Revision(), s.DurableRevision())
	}
	if res, err := s.Lookup(k.Hash); err != nil || res.Key.RevokedAt == nil {
		t.Fatalf("reopened: %+v, %v; want revoked", res, err)
	}
}

func TestStageRefuses(t *testing.T) {
	_, k := newKey(t, "read")
	s := openReplica(t, filepath.Join(t.TempDir(), "replica.db"))
	err := s.Stage([]Change{{Revision: 1, Key: k.Enforcement()}, {Revision: 2}})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("change without a record: %v; want ErrCorrupt", err)
	}
	if s.Revision() != 0 || s.Staged() != 0 {
		t.Fatalf("a refused batch was partly staged: revision %d, %d staged", s.Revision(), s.Staged())
	}
	if _, err := s.Lookup(k.Hash); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup after a refused batch: %v; want ErrNotFound", err)
	}
	// Replayed revisions are skipped, as by ApplyChanges.
	if err := s.Stage([]Change{{Revision: 1, Key: k.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Stage([]Change{{Revision: 1, Key: revoked(k)}}); err != nil {
		t.Fatal(err)
	}
	if res, _ := s.Lookup(k.Hash); res.Key.RevokedAt != nil || s.Staged() != 1 {
		t.Fatalf("a replayed revision was staged: %+v, %d staged", res.Key, s.Staged())
	}
}

// TestStageCommitLookupConcurrently stages a stream of versions of one key
// while commits run and readers look it up: a lookup never returns a
// version older than the last one staged before it started, whether it
// reads the staged change or the file, and the file ends with the last.
func TestStageCommitLookupConcurrently(t *testing.T) {
	s := openReplica(t, filepath.Join(t.TempDir(), "replica.db"))
	_, k := newKey(t, "v0")
	if err := s.ApplyChanges([]Change{{Revision: 1, Key: k.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	const versions = 300
	version := func(k *Key) int {
		var v int
		fmt.Sscanf(k.Scopes[0], "v%d", &v)
		return v
	}
	var (
		staged  sync.WaitGroup
		done    = make(chan struct{})
		lastSet = make(chan int, 1) // highest version whose Stage returned
		errs    = make(chan error, 16)
	)
	lastSet <- 0
	latest := func() int { v := <-lastSet; lastSet <- v; return v }
	staged.Add(1)
	go func() { // the watch
		defer staged.Done()
		for v := 1; v <= versions; v++ {
			next := *k.Enforcement()
			next.Scopes = []string{fmt.Sprintf("v%d", v)}
			if err := s.Stage([]Change{{Revision: uint64(v + 1), Key: &next}}); err != nil {
				errs <- err
				return
			}
			<-lastSet
			lastSet <- v
		}
	}()
	var workers sync.WaitGroup
	workers.Add(1)
	go func() { // the commit timer
		defer workers.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := s.Commit(); err != nil {
				errs <- err
				return
			}
		}
	}()
	for range 2 {
		workers.Add(1)
		go func() { // lookups
			defer workers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				floor := latest()
				res, err := s.Lookup(k.Hash)
				if err != nil {
					errs <- err
					return
				}
				if got := version(res.Key); got < floor {
					errs <- fmt.Errorf("lookup returned v%d after v%d was staged", got, floor)
					return
				}
			}
		}()
	}
	staged.Wait()
	close(done)
	workers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := version(fileKey(t, s, k)); got != versions || s.DurableRevision() != versions+1 || s.Staged() != 0 {
		t.Fatalf("file at v%d, revision %d, %d staged; want v%d, %d, 0", got, s.DurableRevision(), s.Staged(), versions, versions+1)
	}
}
