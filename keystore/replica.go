package keystore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// ApplyChanges applies changes received from the authoritative store, in
// order, in one transaction, and advances the revision to the last one.
// Changes at or below the current revision are skipped, so a replayed
// batch is harmless. A replica writes no change log and no audit. Staged
// changes (see Stage) are committed first.
func (s *Store) ApplyChanges(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	if err := s.commitLocked(); err != nil {
		return err
	}
	rev, err := s.writeChanges(changes)
	if err != nil {
		return err
	}
	s.durable.Store(rev)
	s.notify(rev)
	return nil
}

// writeChanges is the transaction of ApplyChanges and Commit. It returns
// the file's revision after it.
func (s *Store) writeChanges(changes []Change) (uint64, error) {
	var rev uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		rev = getU64(meta.Get(metaRevision))
		if s.replica && changes[0].Revision == 0 {
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
				if err := putKeyBytes(tx, c.Key, v, !s.replica); err != nil {
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

// SetOrigin records the authoritative store id and revision a replica's
// content corresponds to. Used after loading a snapshot.
func (s *Store) SetOrigin(storeID string, rev uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaStoreID, []byte(storeID)); err != nil {
			return err
		}
		return meta.Put(metaRevision, u64(rev))
	})
	if err != nil {
		return fmt.Errorf("keystore: set origin: %w", err)
	}
	s.storeID.Store(storeID)
	s.rev.Store(rev)
	s.durable.Store(rev)
	s.notify(rev)
	return nil
}

// Snapshot is a consistent view of the store for replication.
type Snapshot struct {
	tx       *bolt.Tx
	Revision uint64
	StoreID  string
}

// View runs fn with a consistent snapshot held in one read transaction.
// Keep fn short-lived relative to write volume: pages freed meanwhile
// cannot be reused until it returns.
func (s *Store) View(fn func(*Snapshot) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		return fn(&Snapshot{tx: tx, Revision: getU64(meta.Get(metaRevision)), StoreID: string(meta.Get(metaStoreID))})
	})
}

// ForEachRecord calls fn with the stored JSON of every key's enforcement
// view, in hash order, then of every user record that is not the implicit
// active default. v is only valid until fn returns. This is what a
// snapshot streams: no record is decoded (see record.go).
func (sn *Snapshot) ForEachRecord(fn func(isKey bool, v []byte) error) error {
	err := sn.tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error { return fn(true, enforcementJSON(v)) })
	if err != nil {
		return err
	}
	return sn.tx.Bucket(bucketUsers).ForEach(func(_, v []byte) error { return fn(false, v) })
}

// ForEach is ForEachRecord with every record decoded into a change without
// a revision.
func (sn *Snapshot) ForEach(fn func(Change) error) error {
	return sn.ForEachRecord(func(isKey bool, v []byte) error {
		var c Change
		if isKey {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			c.Key = k
		} else {
			c.User = new(User)
			if err := json.Unmarshal(v, c.User); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
		}
		return fn(c)
	})
}
