package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// This file is what a consensus log's state machine (package cluster)
// needs of the authoritative store: writes whose time and log index are
// decided by the log entry rather than by this process, the log index last
// applied (stored in the same transaction as the change it made), one store
// id for every member, and a whole-file copy to snapshot and restore.

// Applied returns a view of s whose writes take their time from at instead
// of the store's clock and record index as the applied log index in the
// same transaction as the change. Writes through it are not batched with
// other callers: a state machine applies one entry at a time (or a batch
// of them in one transaction, ApplyEntries). The view shares s's file and
// must not outlive it.
func (s *Store) Applied(index uint64, at time.Time) *Store {
	at = at.UTC()
	return &Store{core: s.core, now: func() time.Time { return at }, applied: index}
}

// LogEntry is one consensus log entry for ApplyEntries.
type LogEntry struct {
	Index uint64    // its log index, above zero
	At    time.Time // the time its writes record, as Applied's at
	// Apply makes the entry's change through st, a view like
	// Applied(Index, At) whose writes join the batch's transaction, and
	// returns the write's error. It may be run more than once (see
	// ApplyEntries), so it keeps only the results of its last run.
	Apply func(st *Store) error
}

// entriesTx is the transaction ApplyEntries shares among its entries' views,
// and what they leave for after its commit.
type entriesTx struct {
	tx      *bolt.Tx
	rev     uint64 // the revision after the last write that made one
	notify  bool   // a write made a revision: notify after the commit
	storeID string // adopted by an entry (AdoptStoreID)
}

// errEntryFailed aborts one run of ApplyEntries' transaction.
var errEntryFailed = errors.New("keystore: an entry failed")

// ApplyEntries applies entries in order in one fsynced write transaction,
// each as its own Applied view would apply it alone, and returns each
// entry's error (nil when applied). An entry whose Apply fails changes
// nothing: the transaction is rolled back and run again without it, so it
// is as if the entry had never been in the log, and the entries after it
// see the store the way they would have one at a time. Entries at or below
// the applied index the file records are already in it and are skipped
// (nil error, Apply not called). The applied index recorded is the last
// applied entry's. err is set when the transaction itself failed; then no
// entry was applied.
func (s *Store) ApplyEntries(entries []LogEntry) (errs []error, err error) {
	errs = make([]error, len(entries))
	failed := make([]bool, len(entries))
	pending := func(done uint64) bool {
		for i, e := range entries {
			if !failed[i] && e.Index > done {
				return true
			}
		}
		return false
	}
	for {
		var et entriesTx
		var done uint64
		again := false
		err := s.db.Update(func(tx *bolt.Tx) error {
			et = entriesTx{tx: tx}
			done = getU64(tx.Bucket(bucketMeta).Get(metaApplied))
			for i, e := range entries {
				if failed[i] || e.Index <= done {
					continue
				}
				at := e.At.UTC()
				view := &Store{core: s.core, now: func() time.Time { return at }, applied: e.Index, entries: &et}
				if err := e.Apply(view); err != nil {
					errs[i], failed[i], again = err, true, true
					return errEntryFailed
				}
			}
			return nil
		})
		if again && pending(done) {
			continue
		}
		if again { // nothing left to write
			return errs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("keystore: apply entries: %w", err)
		}
		if et.storeID != "" {
			s.storeID.Store(et.storeID)
		}
		if et.notify {
			s.notify(et.rev)
		}
		return errs, nil
	}
}

// write runs fn in a write transaction: bbolt's Batch for the store's own
// callers, a plain transaction for an Applied view, the batch's for a
// view of ApplyEntries.
func (s *Store) write(fn func(tx *bolt.Tx) error) error {
	switch {
	case s.entries != nil:
		return fn(s.entries.tx)
	case s.applied > 0:
		return s.db.Update(fn)
	}
	return s.db.Batch(fn)
}

func (s *Store) markApplied(tx *bolt.Tx) error {
	if s.applied == 0 {
		return nil
	}
	return tx.Bucket(bucketMeta).Put(metaApplied, u64(s.applied))
}

// AppliedIndex returns the log index recorded by the last successful write
// through an Applied view, zero when there was none.
func (s *Store) AppliedIndex() (uint64, error) {
	var n uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		n = getU64(tx.Bucket(bucketMeta).Get(metaApplied))
		return nil
	})
	return n, err
}

// Adopted reports whether the store id was set by AdoptStoreID.
func (s *Store) Adopted() (bool, error) {
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketMeta).Get(metaAdopted) != nil
		return nil
	})
	return ok, err
}

// AdoptStoreID gives the store the id id, once: every member of a cluster
// applies the same first adoption, so all hold one store id, and later
// ones change nothing. It reports whether this call set it.
func (s *Store) AdoptStoreID(id string) (bool, error) {
	if id == "" {
		return false, errors.New("keystore: adopt: empty store id")
	}
	set := false
	err := s.write(func(tx *bolt.Tx) error {
		set = false
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaAdopted) != nil {
			return s.markApplied(tx)
		}
		if err := meta.Put(metaStoreID, []byte(id)); err != nil {
			return err
		}
		if err := meta.Put(metaAdopted, []byte{1}); err != nil {
			return err
		}
		set = true
		return s.markApplied(tx)
	})
	switch {
	case err != nil || !set:
	case s.entries != nil:
		s.entries.storeID = id // once the batch is committed
	default:
		s.storeID.Store(id)
	}
	return set, err
}

// Restore replaces the whole content of the store with the copy Backup
// wrote to r, in one transaction; the file keeps its own file id. The copy
// is spooled to a temporary file beside the store first and checked, so a
// truncated or foreign copy changes nothing.
func (s *Store) Restore(r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".restore-*")
	if err != nil {
		return fmt.Errorf("keystore: restore: %w", err)
	}
	defer os.Remove(tmp.Name())
	size, err := io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("keystore: restore: spool: %w", err)
	}
	src, err := bolt.Open(tmp.Name(), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("keystore: restore: open copy: %w", err)
	}
	defer src.Close()
	var rev uint64
	var storeID string
	err = src.View(func(stx *bolt.Tx) error {
		// A copy shorter than its own meta page says is truncated; it is
		// refused before any page past its end is read.
		if size < stx.Size() {
			return fmt.Errorf("%w: the copy is truncated (%d of %d bytes)", ErrCorrupt, size, stx.Size())
		}
		var problems []error
		for err := range stx.Check() {
			problems = append(problems, err)
		}
		if len(problems) > 0 {
			return fmt.Errorf("%w: the copy is inconsistent: %w", ErrCorrupt, errors.Join(problems...))
		}
		smeta := stx.Bucket(bucketMeta)
		if smeta == nil || !bytes.Equal(smeta.Get(metaSchema), u64(SchemaVersion)) {
			return fmt.Errorf("%w: the copy is not a schema %d store", ErrSchema, SchemaVersion)
		}
		return s.db.Update(func(tx *bolt.Tx) error {
			fileID := bytes.Clone(tx.Bucket(bucketMeta).Get(metaFileID))
			for _, name := range allBuckets {
				if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
					return err
				}
				dst, err := tx.CreateBucket(name)
				if err != nil {
					return err
				}
				sb := stx.Bucket(name)
				if sb == nil {
					continue
				}
				if err := dst.SetSequence(sb.Sequence()); err != nil {
					return err
				}
				if err := sb.ForEach(func(k, v []byte) error { return dst.Put(bytes.Clone(k), bytes.Clone(v)) }); err != nil {
					return err
				}
			}
			meta := tx.Bucket(bucketMeta)
			if err := meta.Put(metaFileID, fileID); err != nil {
				return err
			}
			rev = getU64(meta.Get(metaRevision))
			storeID = string(meta.Get(metaStoreID))
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("keystore: restore: %w", err)
	}
	s.storeID.Store(storeID)
	s.cache.mu.Lock()
	s.cache.rev, s.cache.m = rev, nil
	s.cache.mu.Unlock()
	s.mu.Lock()
	s.rev.Store(rev)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	return nil
}
