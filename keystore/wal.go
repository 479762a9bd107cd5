package keystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/extauthz/extauthz/ndjson"
)

// walMax bounds the write-ahead log: past it, the watch commits at once
// instead of after SyncInterval (a long catch-up).
const walMax = 64 << 20

// walKeep is how large the log may grow with changes the replica file
// already holds before a commit empties it. Emptying is a truncate, a
// journaled metadata update that can stall for milliseconds while other
// processes on the node fsync; doing it once per megabyte rather than once
// per commit keeps it off the path of most changes. A replay skips the
// changes the file holds.
const walKeep = 1 << 20

// wal is the replica's write-ahead log. A change given to Stage is
// appended here, one JSON Change a line, before it is put in force;
// the replica file gets it at the next commit, and the log is emptied
// once a commit leaves it past walKeep. The log is not synced: a process that dies (SIGKILL, OOM) loses
// nothing, because the kernel still holds what it wrote, and the next
// start replays the log into the file (Replica.replay). A machine that loses
// power may lose the log's tail; the file, synced by every commit, is then
// as of its last commit, and the watch fetches the rest from the admin.
//
// The first line names the admin store the changes belong to and the
// replica file they follow (FileID): a log is replayed only into that very
// file, never into a snapshot installed over it. Like the records it
// holds, the log carries hashes, never a raw key. (Logs written by earlier
// builds hold the admin's watch lines, whose members are the same plus a
// "type"; they replay alike.)
type wal struct {
	f    *os.File
	size int64 // bytes in the file
	head int64 // bytes of the header line
}

// walHeader is the first line of the log.
type walHeader struct {
	Type    string `json:"type"` // always "wal"
	StoreID string `json:"store_id"`
	FileID  string `json:"file_id"`
}

// createWAL starts an empty log at path for changes of store storeID to
// the replica file fileID.
func createWAL(path, storeID, fileID string) (*wal, error) {
	h, err := json.Marshal(walHeader{Type: "wal", StoreID: storeID, FileID: fileID})
	if err != nil {
		return nil, err
	}
	h = append(h, '\n')
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: create write-ahead log: %w", err)
	}
	if _, err := f.Write(h); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: write-ahead log: %w", err)
	}
	return &wal{f: f, size: int64(len(h)), head: int64(len(h))}, nil
}

// append writes lines (whole watch lines, newline included). On failure
// the log is cut back to what it held, so a half-written line never sits
// before the next one.
func (w *wal) append(lines []byte) error {
	n, err := w.f.WriteAt(lines, w.size)
	if err == nil {
		w.size += int64(n)
		return nil
	}
	if terr := w.f.Truncate(w.size); terr != nil {
		err = errors.Join(err, terr)
	}
	return fmt.Errorf("keystore: write-ahead log: %w", err)
}

// reset empties the log after a commit put everything in it in the file.
func (w *wal) reset() error {
	if err := w.f.Truncate(w.head); err != nil {
		return fmt.Errorf("keystore: empty write-ahead log: %w", err)
	}
	w.size = w.head
	return nil
}

func (w *wal) close() error { return w.f.Close() }

// walRead is what readWAL found in a log.
type walRead struct {
	changes []Change // after the replica's revision, in order
	head    int64    // bytes of the header line
	valid   int64    // bytes of whole, valid lines: where appending resumes
	problem error    // what ended the read early, if anything
}

// readWAL reads the log at path for the replica file fileID of store
// storeID, at revision from. A log that ends in a torn or invalid line, or
// skips a revision, yields the changes before that point and the problem;
// a log of another store or file yields nothing and the problem. A missing
// log yields nothing. err is only for a log that cannot be read at all.
func readWAL(path, storeID, fileID string, from uint64) (walRead, error) {
	var r walRead
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("keystore: open write-ahead log: %w", err)
	}
	defer f.Close()
	return parseWAL(f, storeID, fileID, from), nil
}

// parseWAL is readWAL on the log's content.
func parseWAL(rd io.Reader, storeID, fileID string, from uint64) walRead {
	var r walRead
	lr := ndjson.NewReader(rd, walMaxLine)
	line, err := lr.NextWhole()
	if err != nil {
		r.problem = fmt.Errorf("header: %w", err)
		return r
	}
	var h walHeader
	if err := json.Unmarshal(line, &h); err != nil || h.Type != "wal" {
		r.problem = errors.New("header: not a write-ahead log")
		return r
	}
	if h.StoreID != storeID || h.FileID != fileID {
		r.problem = fmt.Errorf("log of store %q file %q, replica of store %q file %q", h.StoreID, h.FileID, storeID, fileID)
		return r
	}
	r.head = int64(len(line))
	r.valid = r.head
	pos := from
	for {
		line, err := lr.NextWhole()
		if errors.Is(err, io.EOF) {
			return r
		}
		var c Change
		if err == nil {
			c, err = decodeWALLine(line)
		}
		switch {
		case err != nil:
			r.problem = err
		case c.Revision <= pos && len(r.changes) == 0:
			// Already in the file: a commit raced with later appends.
		case c.Revision == pos+1:
			r.changes = append(r.changes, c)
			pos = c.Revision
		default:
			r.problem = fmt.Errorf("revision %d follows %d", c.Revision, pos)
		}
		if r.problem != nil {
			return r
		}
		r.valid += int64(len(line))
	}
}

// resumeWAL opens an existing log to append after its first valid bytes,
// dropping whatever follows them.
func resumeWAL(path string, head, valid int64) (*wal, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("keystore: open write-ahead log: %w", err)
	}
	if err := f.Truncate(valid); err != nil {
		f.Close()
		return nil, fmt.Errorf("keystore: cut write-ahead log: %w", err)
	}
	return &wal{f: f, size: valid, head: head}, nil
}

// walMaxLine bounds one line of the log, newline included: the admin's
// bound on one watch line, which carries the same record.
const walMaxLine = 1 << 20

// decodeWALLine decodes one change of the log: a key's enforcement view
// or a user, with its revision.
func decodeWALLine(b []byte) (Change, error) {
	var c Change
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%w: write-ahead log line: %v", ErrCorrupt, err)
	}
	if c.Revision == 0 {
		return c, fmt.Errorf("%w: write-ahead log change without revision", ErrCorrupt)
	}
	if err := c.check(); err != nil {
		return c, err
	}
	if c.Key != nil {
		if c.Key.ID == "" || c.Key.Hash == (Hash{}) {
			return c, fmt.Errorf("%w: write-ahead log key without id or hash", ErrCorrupt)
		}
		c.Key = c.Key.Enforcement()
	} else if c.User.ID == "" {
		return c, fmt.Errorf("%w: write-ahead log user without id", ErrCorrupt)
	}
	return c, nil
}

// check reports a change that carries not exactly one record.
func (c Change) check() error {
	if (c.Key == nil) == (c.User == nil) {
		return fmt.Errorf("%w: change %d carries not exactly one record", ErrCorrupt, c.Revision)
	}
	return nil
}

// replay puts the changes of a write-ahead log left by a process that
// died back in force and commits them. A commit that fails leaves them in
// force from memory (Replayed.CommitErr); the next Commit retries.
func (r *Replica) replay() error {
	w, err := readWAL(r.walPath, r.StoreID(), r.fileID, r.Revision())
	if err != nil {
		return err
	}
	r.replayed = Replayed{Changes: len(w.changes), Problem: w.problem}
	if len(w.changes) == 0 {
		if err := os.Remove(r.walPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("keystore: remove write-ahead log: %w", err)
		}
		return nil
	}
	if r.wal, err = resumeWAL(r.walPath, w.head, w.valid); err != nil {
		return err
	}
	r.stage(w.changes)
	r.replayed.CommitErr = r.Commit()
	return nil
}
