package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBackupRestoreStartsANewHistory: an online backup is the store as of
// one revision; Restore puts it back under a new store id (a new history)
// and a new file id, keeps its records and revision, refuses a file that
// is not a store and a store another process holds, and leaves the
// backup as it was.
func TestBackupRestoreStartsANewHistory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extauthz.db")
	s := mustOpen(t, path, nil)
	_, k1 := newKey(t, "read")
	if err := s.CreateKey(k1, "t"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, rev, err := s.Backup(&buf)
	if err != nil || rev != 1 || n != int64(buf.Len()) {
		t.Fatalf("Backup = %d bytes, revision %d, %v; want %d bytes at revision 1", n, rev, err, buf.Len())
	}
	backup := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(backup, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, k2 := newKey(t, "read")
	if err := s.CreateKey(k2, "t"); err != nil {
		t.Fatal(err)
	}
	oldStore, oldFile := s.StoreID(), s.FileID()

	if _, err := Restore(backup, path, Options{Timeout: 50 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Restore over an open store = %v; want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("x"), 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(junk, path, Options{}); err == nil {
		t.Fatal("Restore of a file that is not a store succeeded")
	}

	r, err := Restore(backup, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(backup); !bytes.Equal(b, buf.Bytes()) {
		t.Error("Restore changed the backup")
	}
	s = mustOpen(t, path, nil)
	if s.StoreID() != r.StoreID || r.StoreID == oldStore || s.FileID() == oldFile || s.Revision() != 1 || r.Revision != 1 {
		t.Fatalf("restored store %q file %q at %d (Restored %+v); want a new store id and file id at revision 1 (was %q, %q)", s.StoreID(), s.FileID(), s.Revision(), r, oldStore, oldFile)
	}
	if _, err := s.GetKey(k1.ID); err != nil {
		t.Errorf("K1 after the restore: %v", err)
	}
	if _, err := s.GetKey(k2.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("K2 after the restore: %v; want ErrNotFound", err)
	}
	if err := s.Check(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(path + ".restore"); !os.IsNotExist(err) {
		t.Errorf("restore left its temporary file: %v", err)
	}
}

// TestRestoreOfAClusterMembersBackupIsASingleAdminsStore: a member's
// backup carries its applied log index and adopted store id; the restored
// file has neither (a new cluster takes it over from its first member).
func TestRestoreOfAClusterMembersBackupIsASingleAdminsStore(t *testing.T) {
	dir := t.TempDir()
	s := mustOpen(t, filepath.Join(dir, "member.db"), nil)
	_, k := newKey(t, "read")
	if err := s.Applied(7, time.Now()).CreateKey(k, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Applied(8, time.Now()).AdoptStoreID("cluster-id"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, _, err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(backup, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "extauthz.db")
	r, err := Restore(backup, path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := mustOpen(t, path, nil)
	applied, err := got.AppliedIndex()
	if err != nil {
		t.Fatal(err)
	}
	adopted, err := got.Adopted()
	if err != nil || applied != 0 || adopted || got.StoreID() != r.StoreID || got.StoreID() == "cluster-id" {
		t.Fatalf("restored member backup: applied %d, adopted %v (%v), store id %s; want 0, false and the new id %s", applied, adopted, err, got.StoreID(), r.StoreID)
	}
	if _, err := got.GetKey(k.ID); err != nil {
		t.Fatalf("key after the restore: %v", err)
	}
}
