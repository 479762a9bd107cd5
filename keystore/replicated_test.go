package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestAppliedViewIsDeterministicAndRecordsItsIndex(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var logs [2]string
	for i := range logs {
		s := mustOpen(t, "", nil)
		k := &Key{ID: "k1", Hash: HashKey("ek_raw"), Prefix: "ek_raw"}
		if err := s.Applied(7, at).CreateKey(k, "op"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Applied(8, at.Add(time.Second)).RevokeKey("k1", "op"); err != nil {
			t.Fatal(err)
		}
		// A failed write records no index.
		if _, err := s.Applied(9, at).RevokeKey("k1", "op"); !errors.Is(err, ErrRevoked) {
			t.Fatal(err)
		}
		if n, err := s.AppliedIndex(); err != nil || n != 8 {
			t.Fatalf("applied index %d, %v; want 8", n, err)
		}
		got, err := s.GetKey("k1")
		if err != nil || !got.CreatedAt.Equal(at) || !got.RevokedAt.Equal(at.Add(time.Second)) {
			t.Fatalf("record %+v, %v: times are not the entries'", got, err)
		}
		var b strings.Builder
		s.Changes(0, 0, func(c Change) error { b.WriteString(c.Time.String() + c.Key.ID + ";"); return nil })
		logs[i] = b.String()
	}
	if logs[0] != logs[1] {
		t.Fatalf("two stores applying the same entries differ:\n%s\n%s", logs[0], logs[1])
	}
}

func TestAdoptStoreIDOnce(t *testing.T) {
	s := mustOpen(t, "", nil)
	if set, err := s.Applied(1, time.Now()).AdoptStoreID("cluster-1"); err != nil || !set {
		t.Fatalf("first adoption: %v, %v", set, err)
	}
	if set, err := s.Applied(2, time.Now()).AdoptStoreID("cluster-2"); err != nil || set {
		t.Fatalf("second adoption: %v, %v", set, err)
	}
	if s.StoreID() != "cluster-1" {
		t.Fatalf("store id %q", s.StoreID())
	}
	if n, _ := s.AppliedIndex(); n != 2 {
		t.Fatalf("applied index %d, want 2", n)
	}
}

func TestBackupRestore(t *testing.T) {
	src := mustOpen(t, "", nil)
	if err := src.CreateKey(&Key{ID: "k1", Hash: HashKey("a"), Prefix: "a", UserID: "u"}, "op"); err != nil {
		t.Fatal(err)
	}
	var copyBuf bytes.Buffer
	if _, _, err := src.Backup(&copyBuf); err != nil {
		t.Fatal(err)
	}
	dst := mustOpen(t, "", nil)
	if err := dst.CreateKey(&Key{ID: "other", Hash: HashKey("b"), Prefix: "b"}, "op"); err != nil {
		t.Fatal(err)
	}
	before := dst.FileID()
	// A truncated copy changes nothing.
	if err := dst.Restore(bytes.NewReader(copyBuf.Bytes()[:copyBuf.Len()/2])); err == nil {
		t.Fatal("a truncated copy was restored")
	}
	if _, err := dst.GetKey("other"); err != nil {
		t.Fatalf("a failed restore lost a record: %v", err)
	}
	if err := dst.Restore(bytes.NewReader(copyBuf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.GetKey("other"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a record the copy does not hold survived: %v", err)
	}
	if _, err := dst.Lookup(HashKey("a")); err != nil {
		t.Fatalf("restored key not found: %v", err)
	}
	if keys, _ := dst.ListOwnedKeys(Owner{UserID: "u"}); len(keys) != 1 {
		t.Fatalf("owner index not restored: %d keys", len(keys))
	}
	if dst.StoreID() != src.StoreID() || dst.Revision() != src.Revision() || dst.FileID() != before {
		t.Fatalf("store id %q rev %d file %q; want %q %d %q", dst.StoreID(), dst.Revision(), dst.FileID(), src.StoreID(), src.Revision(), before)
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(dst.Path()), ".restore-*")); len(m) != 0 {
		t.Fatalf("spool files left: %v", m)
	}
}

// batchLog is a log of entries 1..9 with the time of each; every call
// makes new records, as each member decodes its own copy of an entry.
// Entries 2, 4, 7 and 9 fail: 2 after writing part of its change (the
// project is put before its first key's hash is found taken), the others
// before writing anything.
func batchLog(at time.Time) []LogEntry {
	ops := []func(st *Store) error{
		func(st *Store) error { return st.CreateKey(&Key{ID: "k1", Hash: HashKey("a"), Prefix: "a"}, "op") },
		func(st *Store) error {
			return st.CreateProject(&Project{ID: "p1"}, &Key{ID: "k2", Hash: HashKey("a"), Prefix: "a"}, "op")
		},
		func(st *Store) error { _, err := st.RevokeKey("k1", "op"); return err },
		func(st *Store) error { _, err := st.RevokeKey("k1", "op"); return err },
		func(st *Store) error {
			return st.CreateProject(&Project{ID: "p1"}, &Key{ID: "k3", Hash: HashKey("c"), Prefix: "c"}, "op")
		},
		func(st *Store) error { _, err := st.AdoptStoreID("cluster-x"); return err },
		func(st *Store) error { return st.CreateKey(&Key{ID: "k1", Hash: HashKey("d"), Prefix: "d"}, "op") },
		func(st *Store) error {
			_, err := st.RotateKey("k3", &Key{ID: "k5", Hash: HashKey("e"), Prefix: "e"}, time.Hour, "op")
			return err
		},
		func(st *Store) error { _, err := st.RevokeKey("missing", "op"); return err },
	}
	out := make([]LogEntry, len(ops))
	for i, op := range ops {
		out[i] = LogEntry{Index: uint64(i + 1), At: at.Add(time.Duration(i) * time.Second), Apply: op}
	}
	return out
}

// history is what members must agree on: revision, applied index, store
// id, change log, audit log and projects.
func history(t *testing.T, s *Store) string {
	t.Helper()
	n, err := s.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d applied %d store %s\n", s.Revision(), n, s.StoreID())
	if err := s.Changes(0, 0, func(c Change) error {
		j, err := json.Marshal(c)
		b.Write(append(j, '\n'))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	events, err := s.Audit(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		j, _ := json.Marshal(e)
		b.Write(append(j, '\n'))
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketProjects).ForEach(func(k, v []byte) error { b.WriteString(string(k) + " " + string(v) + "\n"); return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestApplyEntriesAsOneAtATime: a batch of entries, some failing (one
// after a partial write), applied in one transaction leaves the store
// exactly as applying them one at a time through Applied views does, with
// each entry's own error; replaying the log after a restart applies
// nothing twice.
func TestApplyEntriesAsOneAtATime(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	one := mustOpen(t, "", nil)
	var want []error
	for _, e := range batchLog(at) {
		want = append(want, e.Apply(one.Applied(e.Index, e.At)))
	}
	path := filepath.Join(t.TempDir(), "keys.db")
	batch := mustOpen(t, path, nil)
	changed := batch.Changed()
	errs, err := batch.ApplyEntries(batchLog(at))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if (want[i] == nil) != (errs[i] == nil) || (want[i] != nil && want[i].Error() != errs[i].Error()) {
			t.Errorf("entry %d: error %v, one at a time %v", i+1, errs[i], want[i])
		}
	}
	for _, i := range []int{1, 3, 6, 8} {
		if errs[i] == nil {
			t.Errorf("entry %d did not fail", i+1)
		}
	}
	if !errors.Is(errs[3], ErrRevoked) || !errors.Is(errs[8], ErrNotFound) {
		t.Errorf("errors %v, %v; want the store's own", errs[3], errs[8])
	}
	select {
	case <-changed:
	default:
		t.Error("no revision notified after the batch")
	}
	got, wantH := history(t, batch), history(t, one)
	if got != wantH {
		t.Fatalf("batch:\n%s\none at a time:\n%s", got, wantH)
	}
	if !strings.Contains(got, "applied 8 store cluster-x") {
		t.Fatalf("want the last applied entry's index (8) and the adopted id:\n%s", got)
	}

	// A restart replays the log: entries 1..8 are in the file and are not
	// run again; 9, above the applied index, fails again.
	if err := batch.Close(); err != nil {
		t.Fatal(err)
	}
	batch = mustOpen(t, path, nil)
	replay := batchLog(at)
	var ran []uint64
	for i := range replay {
		op := replay[i].Apply
		replay[i].Apply = func(st *Store) error { ran = append(ran, replay[i].Index); return op(st) }
	}
	errs, err = batch.ApplyEntries(replay)
	if err != nil {
		t.Fatal(err)
	}
	if len(ran) != 1 || ran[0] != 9 || !errors.Is(errs[8], ErrNotFound) {
		t.Fatalf("replay ran entries %v (errors %v); want only 9, failing", ran, errs)
	}
	if again := history(t, batch); again != got {
		t.Fatalf("the replay changed the store:\n%s\nwas:\n%s", again, got)
	}
}
