package keystore

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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

// changeLine is one line of the log: a key change at rev.
func changeLine(t testing.TB, rev uint64, scope string) string {
	t.Helper()
	k := &Key{ID: "k" + scope, Hash: HashKey("nex_" + scope), Prefix: "nex_", Scopes: []string{scope}}
	b, err := json.Marshal(Change{Revision: rev, Key: k.Enforcement()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestReadWAL(t *testing.T) {
	const store = "store-1"
	one, two, three := changeLine(t, 5, "a"), changeLine(t, 6, "b"), changeLine(t, 7, "c")
	// Logs of earlier builds hold the admin's watch lines: a "type" more.
	watchLine := `{"type":"key","revision":5,"key":{"id":"ka","hash":"` + HashKey("nex_a").String() + `","prefix":"nex_","scopes":["a"]}}` + "\n"
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
		{"watch lines of an earlier build", walLines(store, watchLine, two), 4, 2, head + int64(len(watchLine+two)), ""},
		{"torn tail", walLines(store, one, two, three[:len(three)-5]), 4, 2, head + int64(len(one+two)), "unexpected EOF"},
		{"garbage line", walLines(store, one, "{not json\n", three), 4, 1, head + int64(len(one)), "write-ahead log line"},
		{"gap", walLines(store, one, three), 4, 1, head + int64(len(one)), "revision 7 follows 5"},
		{"gap after the file", walLines(store, two), 4, 0, head, "revision 6 follows 4"},
		{"heartbeat", walLines(store, one, `{"type":"heartbeat","revision":6}`+"\n"), 4, 1, head + int64(len(one)), "not exactly one record"},
		{"another store", walLines("store-2", one), 4, 0, 0, "log of store"},
		{"another file", walLinesOf(store, "file-2", one), 4, 0, 0, "log of store"},
		{"no header", []byte(one), 4, 0, 0, "not a write-ahead log"},
		{"empty file", nil, 4, 0, 0, "header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "replica.db"+WALSuffix)
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
	path := filepath.Join(t.TempDir(), "replica.db"+WALSuffix)
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

// copyFile copies src to dst as it is on disk now (a small test file).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.WriteFile(dst, b, 0o600)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestCommitKeepsASmallLog: a commit leaves a log under walKeep as it is
// (a truncate is a journaled metadata update that the next append would
// wait for), and a replica opened from the committed file and that log
// replays nothing; a commit that leaves the log past walKeep empties it.
func TestCommitKeepsASmallLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "replica.db")
	walPath := path + WALSuffix
	s := openReplica(t, path)
	_, k := newKey(t, "read")
	if err := s.ApplyChanges([]Change{{Revision: 1, Key: k.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetOrigin("store-1", 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Stage([]Change{{Revision: 2, Key: revoked(k)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	if s.DurableRevision() != 2 {
		t.Fatalf("file at %d after commit; want 2", s.DurableRevision())
	}
	kept, err := os.ReadFile(walPath)
	if err != nil || !bytes.Contains(kept, []byte(`"revision":2`)) {
		t.Fatalf("log after a commit under walKeep: %q, %v; want the committed line kept", kept, err)
	}

	// A replica opened from the file and the kept log: nothing to replay.
	restarted := filepath.Join(t.TempDir(), "replica.db")
	copyFile(t, path, restarted)
	copyFile(t, walPath, restarted+WALSuffix)
	r2 := openReplica(t, restarted)
	if got := r2.Replayed(); got.Changes != 0 || got.Problem != nil || got.CommitErr != nil {
		t.Errorf("a log of committed lines was replayed or reported: %+v", got)
	}
	if res, err := r2.Lookup(k.Hash); err != nil || res.Key.RevokedAt == nil || r2.Revision() != 2 {
		t.Fatalf("reopened with a kept log: %+v, %v at revision %d; want the revocation at 2", res, err, r2.Revision())
	}

	// Past walKeep, the commit empties the log down to its header.
	s.mu.Lock()
	s.walKeep = 1
	s.mu.Unlock()
	_, next := newKey(t, "read")
	if err := s.Stage([]Change{{Revision: 3, Key: next.Enforcement()}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	emptied, err := os.ReadFile(walPath)
	if err != nil || bytes.Contains(emptied, []byte(`"revision"`)) || !bytes.Contains(emptied, []byte(`"type":"wal"`)) {
		t.Fatalf("log after a commit past walKeep: %q, %v; want the header alone", emptied, err)
	}
}
