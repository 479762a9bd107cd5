package keystore

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
