package keystore

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultSyncInterval is how long a staged change may be in force before
// the replica file has it (ReplicaOptions.SyncInterval).
const DefaultSyncInterval = time.Second

// WALSuffix names a replica's write-ahead log: the replica file's path
// with this appended.
const WALSuffix = ".wal"

// ErrUnwritable is returned by Stage after a commit failed, until one
// succeeds: the changes in force stay in memory, and no more are taken.
var ErrUnwritable = errors.New("keystore: replica file not writable")

// ReplicaOptions configures OpenReplica. The zero value is usable.
type ReplicaOptions struct {
	// Timeout bounds the wait for the file lock held by another process.
	// Zero means one second. OpenReplica then fails with ErrLocked.
	Timeout time.Duration
	// NoSync skips fsync on commit: for a snapshot being loaded into a new
	// file, synced with Sync before it is trusted.
	NoSync bool
	// SyncInterval is how long after Stage the staged changes are
	// committed, together with whatever was staged meanwhile, jittered in
	// [d/2, 3d/2). Zero means DefaultSyncInterval; negative means Stage
	// commits before it returns (still after the changes are in force).
	SyncInterval time.Duration
	// CommitFailed, when not nil, is told of a scheduled commit that
	// failed (the package does not log). Stage then returns ErrUnwritable
	// until a Commit succeeds.
	CommitFailed func(error)
	// Now is the clock of LastCurrent's starting point; nil means
	// time.Now.
	Now func() time.Time
	// ReleaseMemory: see Options.ReleaseMemory.
	ReleaseMemory bool
}

// Replica is a sidecar's copy of the authoritative store, changed only
// with records received from it: ApplyChanges and SetOrigin while a
// snapshot loads into a new file, Stage and Commit for the changes of the
// watch. It owns its durability: the write-ahead log (wal.go), the staged
// changes in force before the file has them (staged.go), the schedule of
// their commit, the replay of a log a dead process left, and the moment
// the replica was last known current, kept as the file's mtime.
//
// A replica keeps no change log and no id index, and persists bbolt's
// freelist so it opens without walking the file. Its methods are safe for
// concurrent use; Stage and ApplyChanges are meant for one writer.
type Replica struct {
	*core
	staged       staged
	walPath      string
	syncInterval time.Duration
	commitFailed func(error)

	durable     atomic.Uint64 // revision of the file
	lastCurrent atomic.Int64  // Unix nanoseconds of MarkCurrent; 0 = never

	// commitMu allows one commit (or ApplyChanges) at a time; it is held
	// across the commit's fsync and taken before mu.
	commitMu sync.Mutex

	// mu guards the fields below. It orders appends to the log with the
	// staging of their changes, and with emptying the log after a commit,
	// so that the log never loses a change the file does not hold. Never
	// held across an fsync.
	mu        sync.Mutex
	wal       *wal        // nil until the first Stage after open, replay or a snapshot
	walKeep   int64       // see walKeep; tests lower it
	timer     *time.Timer // the scheduled commit; nil when none is due
	commitErr error       // the last commit's failure; nil once one succeeded
	lastTouch time.Time   // the file's mtime as last set
	closed    bool
	replayed  Replayed // set by OpenReplica
}

// Replayed is what OpenReplica found in a write-ahead log.
type Replayed struct {
	// Changes counts the changes put back in force from the log.
	Changes int
	// Problem says why the log, or its tail, was not replayed (a torn
	// line after a power loss, a log of another file); the watch fetches
	// what is missing from the admin.
	Problem error
	// CommitErr is set when the replayed changes are in force but the
	// file refused them; the next Commit retries.
	CommitErr error
}

// OpenReplica opens or creates the replica file at path. A replica that
// holds a snapshot (StoreID is set) replays the write-ahead log a process
// that died left at path+WALSuffix, commits it and reports it in
// Replayed, and counts LastCurrent from the file's mtime.
func OpenReplica(path string, opts ReplicaOptions) (*Replica, error) {
	if opts.SyncInterval == 0 {
		opts.SyncInterval = DefaultSyncInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	// The mtime is the last time the replica was known current (see
	// MarkCurrent); read it before opening writes to the file.
	fi, statErr := os.Stat(path)
	c, err := openCore(path, fileOptions{timeout: opts.Timeout, noSync: opts.NoSync, replica: true, release: opts.ReleaseMemory})
	if err != nil {
		return nil, err
	}
	r := &Replica{core: c, walPath: path + WALSuffix, syncInterval: opts.SyncInterval, commitFailed: opts.CommitFailed, walKeep: walKeep}
	c.staged = &r.staged
	r.durable.Store(c.rev.Load())
	if r.StoreID() == "" {
		return r, nil
	}
	if err := r.replay(); err != nil {
		return nil, errors.Join(err, r.db.Close())
	}
	last := opts.Now()
	if statErr == nil && fi.ModTime().Before(last) {
		last = fi.ModTime()
	}
	r.lastCurrent.Store(last.UnixNano())
	// Opening (and a replay) wrote the file: put back the moment it was
	// last known current.
	r.mu.Lock()
	r.touchLocked(last, true)
	r.mu.Unlock()
	return r, nil
}

// Replayed reports what OpenReplica replayed from the write-ahead log.
func (r *Replica) Replayed() Replayed {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replayed
}

// ApplyChanges writes changes received from the authoritative store to the
// file, in order, in one transaction, and advances the revision to the
// last one: the way a snapshot loads. Changes at or below the current
// revision are skipped, so a replayed batch is harmless. Staged changes
// are committed first.
func (r *Replica) ApplyChanges(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	if err := r.commitLocked(); err != nil {
		return err
	}
	rev, err := r.writeChanges(changes)
	if err != nil {
		return err
	}
	r.durable.Store(rev)
	r.notify(rev)
	return nil
}

// writeChanges is the transaction of ApplyChanges and Commit. It returns
// the file's revision after it.
func (r *Replica) writeChanges(changes []Change) (uint64, error) {
	var rev uint64
	err := r.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		rev = getU64(meta.Get(metaRevision))
		if changes[0].Revision == 0 {
			// Snapshot records come in hash order: fill pages completely.
			tx.Bucket(bucketKeys).FillPercent = 1.0
		}
		for _, c := range changes {
			if c.Revision != 0 && c.Revision <= rev {
				continue
			}
			switch {
			case c.Key != nil:
				v, err := encodeKey(c.Key)
				if err != nil {
					return err
				}
				if err := putKeyBytes(tx, c.Key, v, false); err != nil {
					return err
				}
			case c.User != nil:
				if err := putUser(tx, c.User); err != nil {
					return err
				}
			default:
				return fmt.Errorf("%w: change %d carries no record", ErrCorrupt, c.Revision)
			}
			if c.Revision > rev {
				rev = c.Revision
			}
		}
		return meta.Put(metaRevision, u64(rev))
	})
	if err != nil {
		return 0, fmt.Errorf("keystore: apply: %w", err)
	}
	return rev, nil
}

// SetOrigin records the authoritative store id and revision the replica's
// content corresponds to. Used after loading a snapshot.
func (r *Replica) SetOrigin(storeID string, rev uint64) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaStoreID, []byte(storeID)); err != nil {
			return err
		}
		return meta.Put(metaRevision, u64(rev))
	})
	if err != nil {
		return fmt.Errorf("keystore: set origin: %w", err)
	}
	r.storeID.Store(storeID)
	r.rev.Store(rev)
	r.durable.Store(rev)
	r.notify(rev)
	return nil
}

// DurableRevision returns the revision the file holds; Revision is above
// it while staged changes wait for Commit.
func (r *Replica) DurableRevision() uint64 { return r.durable.Load() }

// touchEvery bounds how often MarkCurrent writes the file's mtime.
const touchEvery = time.Second

// MarkCurrent records that the replica was known current at at (a
// heartbeat, a change on a live watch, a snapshot). It is kept in the
// file's mtime, so that a restart while the admin is down still knows how
// stale the replica is: at most every second, and only while the file
// holds every change in force (a commit writing the file later sets the
// mtime back to it).
func (r *Replica) MarkCurrent(at time.Time) {
	r.lastCurrent.Store(at.UnixNano())
	r.mu.Lock()
	r.touchLocked(at, false)
	r.mu.Unlock()
}

// LastCurrent returns the moment of the last MarkCurrent, or for a replica
// found on disk the file's mtime; ok is false when it never was current.
func (r *Replica) LastCurrent() (at time.Time, ok bool) {
	n := r.lastCurrent.Load()
	return time.Unix(0, n), n != 0
}

// touchLocked sets the file's mtime to at; mu is held.
func (r *Replica) touchLocked(at time.Time, force bool) {
	if r.closed || (!force && at.Sub(r.lastTouch) < touchEvery && !at.Before(r.lastTouch)) {
		return
	}
	if r.staged.count() == 0 {
		r.lastTouch = at
		_ = os.Chtimes(r.path, at, at)
	}
}

// Close commits the staged changes and closes the file, then removes the
// write-ahead log if the file got everything in it. Calls after Close
// fail.
func (r *Replica) Close() error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	if r.isClosed() {
		return nil
	}
	err := r.commitLocked()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
	err = errors.Join(err, r.db.Close())
	if last, ok := r.LastCurrent(); err == nil && ok {
		// The commit set the file's time to now; it was current then.
		_ = os.Chtimes(r.path, last, last)
	}
	if r.wal != nil {
		// Keep the log if the file did not get everything in it.
		werr := r.wal.close()
		if err == nil && werr == nil {
			werr = os.Remove(r.walPath)
		}
		r.wal = nil
		err = errors.Join(err, werr)
	}
	return err
}

// Discard closes a replica that a snapshot replaced: its staged changes
// are not written (the new file is the admin's state), and its
// write-ahead log is removed before the new replica writes one at the same
// path. A log a crash left before this point names the replaced file and
// is never replayed into the new one.
func (r *Replica) Discard() error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.stopLocked()
	err := r.db.Close()
	if r.wal != nil {
		err = errors.Join(err, r.wal.close())
		r.wal = nil
	}
	if rerr := os.Remove(r.walPath); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("keystore: remove write-ahead log: %w", rerr))
	}
	return err
}

func (r *Replica) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// stopLocked marks the replica closed and stops its scheduled commit; mu
// is held.
func (r *Replica) stopLocked() {
	r.closed = true
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
}
