package keystore

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Snapshot is a consistent view of the store for replication.
type Snapshot struct {
	tx       *bolt.Tx
	Revision uint64
	StoreID  string
}

// View runs fn with a consistent snapshot held in one read transaction.
// Keep fn short-lived relative to write volume: pages freed meanwhile
// cannot be reused until it returns.
func (c *core) View(fn func(*Snapshot) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
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
