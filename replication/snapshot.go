package replication

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/ndjson"
)

// resync downloads a snapshot into a new file and, once its trailer
// verifies, swaps it in for the current replica. On any failure the
// current replica keeps serving and the partial file is removed.
func (f *Follower) resync(ctx context.Context, t target) (err error) {
	started := time.Now()
	defer func() {
		switch {
		case err == nil: // counted before the swap, below
		case ctx.Err() != nil:
			// Shutdown, not a failure of the admin or the snapshot.
		default:
			f.resyncs.WithLabelValues("failed").Inc()
			if errors.Is(err, ErrBadSnapshot) {
				// Run logs unreachable admins; a corrupt snapshot is
				// worth a line every time.
				f.log.Warn().Err(err).Bool("serving", f.Ready()).Msg("snapshot rejected; the current replica keeps serving")
			}
		}
	}()
	resp, touch, done, err := f.request(ctx, t, PathSnapshot)
	if err != nil {
		return err
	}
	defer done()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusError(resp)
	}
	current := f.opts.Now() // the snapshot is the admin's state as of about now
	ns, hdr, count, err := f.loadSnapshot(resp.Body, touch)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
			err = fmt.Errorf("%w: %w", ErrBadSnapshot, errIdle)
		}
		return err
	}

	// Current before it is published, so that whoever sees the new
	// replica sees it current; counted too.
	ns.MarkCurrent(current)
	f.resyncs.WithLabelValues("ok").Inc()
	f.mu.Lock()
	old := f.rep
	if old == nil {
		f.mu.Unlock()
		ns.Close()
		return ErrClosed
	}
	f.rep = ns
	f.mu.Unlock()
	f.healthChanged() // loaded, and current
	if f.opts.NewHistory != nil && old.StoreID() != "" && (old.StoreID() != hdr.StoreID || hdr.Revision < old.Revision()) {
		f.opts.NewHistory()
	}
	// No lookup holds the old replica any more: the exclusive lock above
	// waited for them. Its staged changes and its log are of no use to the
	// new file; Discard removes the log before the watch, on this
	// goroutine, gives the new replica one at the same path.
	if err := old.Discard(); err != nil {
		f.log.Warn().Err(err).Msg("close previous replica")
	}
	f.log.Info().Str("admin", t.logValue()).Str("store_id", hdr.StoreID).Uint64("revision", hdr.Revision).Uint64("records", count).
		Dur("took", time.Since(started)).Msg("snapshot loaded")
	return nil
}

// loadSnapshot verifies and writes a snapshot body into Dir/replica.db.tmp,
// renames it over Dir/replica.db and opens it. The result is only returned
// when header, every line, count and sha256 verified.
func (f *Follower) loadSnapshot(body io.Reader, touch func()) (st *keystore.Replica, hdr wireLine, count uint64, err error) {
	if p := f.opts.LoadGCPercent; p > 0 && !f.Ready() {
		defer relaxGC(p)()
	}
	_ = os.Remove(f.tmpPath)
	tmp, err := keystore.OpenReplica(f.tmpPath, keystore.ReplicaOptions{NoSync: true, Now: f.opts.Now})
	if err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: create snapshot file: %w", err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
		}
		if err != nil {
			_ = os.Remove(f.tmpPath)
		}
	}()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadSnapshot, fmt.Sprintf(format, args...))
	}

	lr := ndjson.NewReader(body, MaxLineSize)
	line, err := lr.NextWhole()
	if err != nil {
		return nil, hdr, 0, bad("reading header: %v", err)
	}
	touch()
	if hdr, err = decodeSnapshotLine(line); err != nil {
		return nil, hdr, 0, bad("header: %v", err)
	}
	if hdr.Type != typeHeader {
		return nil, hdr, 0, bad("first line is %q, not a header", hdr.Type)
	}
	if hdr.Schema != SchemaVersion {
		return nil, hdr, 0, bad("schema %d, want %d", hdr.Schema, SchemaVersion)
	}

	// Two stages, so that a snapshot loads on two cores: this goroutine
	// reads, verifies and decodes lines; the writer puts them into the
	// file in order, one transaction per chunk.
	w := startChunkWriter(tmp)
	defer func() {
		if werr := w.finish(); err == nil && werr != nil {
			err = werr
		}
	}()
	sum := sha256.New()
	batch := make([]keystore.Change, 0, snapshotChunk)
	var end wireLine
	for {
		line, err := lr.NextWhole()
		if errors.Is(err, io.EOF) {
			return nil, hdr, 0, bad("stream ended after %d records without a trailer", count)
		}
		if err != nil {
			return nil, hdr, 0, bad("after %d records: %v", count, err)
		}
		touch()
		l, err := decodeSnapshotLine(line)
		if err != nil {
			return nil, hdr, 0, bad("record %d: %v", count+1, err)
		}
		if l.Type == typeEnd {
			end = l
			break
		}
		if l.Type == typeHeader {
			return nil, hdr, 0, bad("second header at record %d", count+1)
		}
		sum.Write(line)
		count++
		batch = append(batch, l.change())
		if len(batch) == snapshotChunk {
			if err := w.write(batch); err != nil {
				return nil, hdr, 0, err
			}
			batch = make([]keystore.Change, 0, snapshotChunk)
		}
	}
	if _, err := lr.NextWhole(); !errors.Is(err, io.EOF) {
		return nil, hdr, 0, bad("data after the trailer")
	}
	if end.Count != count {
		return nil, hdr, 0, bad("trailer counts %d records, stream had %d", end.Count, count)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != end.SHA256 {
		return nil, hdr, 0, bad("sha256 mismatch")
	}
	if err := w.write(batch); err != nil {
		return nil, hdr, 0, err
	}
	if err := w.finish(); err != nil {
		return nil, hdr, 0, err
	}
	if err := tmp.SetOrigin(hdr.StoreID, hdr.Revision); err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: write snapshot file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: sync snapshot file: %w", err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: close snapshot file: %w", err)
	}
	// The live replica keeps its open handle on the old file until the
	// swap; the rename only changes what the name points to.
	if err := os.Rename(f.tmpPath, f.path); err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: install snapshot: %w", err)
	}
	syncDir(filepath.Dir(f.path))
	st, err = f.openReplica(f.path)
	if err != nil {
		return nil, hdr, 0, fmt.Errorf("replication: reopen replica: %w", err)
	}
	return st, hdr, count, nil
}

// chunkWriter applies chunks of snapshot records to a store in order, on
// its own goroutine, one chunk ahead of the reader at most.
type chunkWriter struct {
	chunks chan []keystore.Change
	failed chan struct{} // closed when err is set
	done   chan struct{} // closed when the goroutine has returned
	err    error         // set by the writer goroutine before failed closes
	closed bool
}

func startChunkWriter(st *keystore.Replica) *chunkWriter {
	w := &chunkWriter{chunks: make(chan []keystore.Change, 1), failed: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for c := range w.chunks {
			if w.err != nil {
				continue // drain, so that write never blocks forever
			}
			if err := st.ApplyChanges(c); err != nil {
				w.err = fmt.Errorf("replication: write snapshot file: %w", err)
				close(w.failed)
			}
		}
	}()
	return w
}

// write queues a chunk. It returns the writer's error once it has one, so
// that a full disk stops the download at once.
func (w *chunkWriter) write(c []keystore.Change) error {
	select {
	case <-w.failed:
		return w.err
	default:
	}
	if len(c) > 0 {
		w.chunks <- c
	}
	return nil
}

// finish waits for every queued chunk and returns the first error. It may
// be called more than once.
func (w *chunkWriter) finish() error {
	if !w.closed {
		w.closed = true
		close(w.chunks)
	}
	<-w.done
	return w.err
}

// gcRelax counts the loads running with relaxGC, so that overlapping loads
// (several followers in one process) restore the setting once, at the end.
var gcRelax struct {
	sync.Mutex
	n    int
	prev int
}

// relaxGC raises the GC percentage to percent until the returned function
// is called (see FollowerOptions.LoadGCPercent). It is only used before a
// replica is serving (a resync while serving keeps the collector as
// configured, since the lookup cache may be large), and never overrides an
// operator's GOGC.
func relaxGC(percent int) (restore func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	gcRelax.Lock()
	if gcRelax.n == 0 {
		gcRelax.prev = debug.SetGCPercent(percent)
	}
	gcRelax.n++
	gcRelax.Unlock()
	return func() {
		gcRelax.Lock()
		gcRelax.n--
		if gcRelax.n == 0 {
			debug.SetGCPercent(gcRelax.prev)
		}
		gcRelax.Unlock()
	}
}

// syncDir makes a rename in dir durable; failures only weaken durability.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}
