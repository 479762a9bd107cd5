package keystore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrCompacted means the change log no longer holds the requested revision;
// the follower must take a new snapshot.
var ErrCompacted = errors.New("keystore: revision compacted")

// Change is one committed change as replication carries it: exactly one of
// Key (its enforcement view) or User is set.
type Change struct {
	Revision uint64    `json:"revision"`
	Time     time.Time `json:"time"`
	Key      *Key      `json:"key,omitempty"`
	User     *User     `json:"user,omitempty"`
}

// Event is one audit log entry.
type Event struct {
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	KeyID     string    `json:"key_id,omitempty"`
	KeyPrefix string    `json:"key_prefix,omitempty"`
	UserID    string    `json:"user_id,omitempty"`
	ProjectID string    `json:"project_id,omitempty"`
	Revision  uint64    `json:"revision,omitempty"`
	Detail    string    `json:"detail,omitempty"`
}

// wtx is an authoritative write transaction: every record it puts gets a
// change-log entry and an audit event in the same bbolt transaction.
type wtx struct {
	tx  *bolt.Tx
	now time.Time
	rev uint64
}

func (w *wtx) nextRevision() (uint64, error) {
	meta := w.tx.Bucket(bucketMeta)
	rev := getU64(meta.Get(metaRevision)) + 1
	if err := meta.Put(metaRevision, u64(rev)); err != nil {
		return 0, err
	}
	w.rev = rev
	return rev, nil
}

func (w *wtx) logChange(c Change) error {
	rev, err := w.nextRevision()
	if err != nil {
		return err
	}
	c.Revision = rev
	c.Time = w.now
	v, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return w.tx.Bucket(bucketChanges).Put(u64(rev), v)
}

// saveKey writes k, its change-log entry and an audit event.
func (w *wtx) saveKey(k *Key, actor, action string) error {
	if err := putKey(w.tx, k); err != nil {
		return err
	}
	if err := w.logChange(Change{Key: k.Enforcement()}); err != nil {
		return err
	}
	return w.audit(Event{Actor: actor, Action: action, KeyID: k.ID, KeyPrefix: k.Prefix, UserID: k.UserID, ProjectID: k.ProjectID})
}

func (w *wtx) saveUser(u *User, actor, action string) error {
	if err := putUser(w.tx, u); err != nil {
		return err
	}
	if err := w.logChange(Change{User: u}); err != nil {
		return err
	}
	return w.audit(Event{Actor: actor, Action: action, UserID: u.ID})
}

func (w *wtx) audit(e Event) error {
	b := w.tx.Bucket(bucketAudit)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Time = w.now
	e.Revision = w.rev
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(w.now.UnixNano()))
	binary.BigEndian.PutUint64(k[8:], seq)
	return b.Put(k, v)
}

// OldestRevision returns the lowest revision still in the change log, or
// the next revision to be written when the log is empty.
func (s *Store) OldestRevision() (uint64, error) {
	var oldest uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		oldest = oldestRevision(tx)
		return nil
	})
	return oldest, err
}

func oldestRevision(tx *bolt.Tx) uint64 {
	if k, _ := tx.Bucket(bucketChanges).Cursor().First(); k != nil {
		return binary.BigEndian.Uint64(k)
	}
	return getU64(tx.Bucket(bucketMeta).Get(metaRevision)) + 1
}

// Changes calls fn for each change after revision since, in order, at most
// limit of them (0 = all) inside one read transaction. It returns
// ErrCompacted when changes after since are no longer all retained.
func (s *Store) Changes(since uint64, limit int, fn func(Change) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		head := getU64(tx.Bucket(bucketMeta).Get(metaRevision))
		if since > head {
			return fmt.Errorf("keystore: revision %d is ahead of the store (%d)", since, head)
		}
		if since+1 < oldestRevision(tx) && since < head {
			return ErrCompacted
		}
		if since >= head {
			return nil
		}
		c := tx.Bucket(bucketChanges).Cursor()
		n := 0
		for k, v := c.Seek(u64(since + 1)); k != nil; k, v = c.Next() {
			var ch Change
			if err := json.Unmarshal(v, &ch); err != nil {
				return fmt.Errorf("%w: change %d: %v", ErrCorrupt, binary.BigEndian.Uint64(k), err)
			}
			if err := fn(ch); err != nil {
				return err
			}
			n++
			if limit > 0 && n >= limit {
				break
			}
		}
		return nil
	})
}

// Compact drops change-log entries beyond the newest keep entries and
// older than maxAge (an entry goes when it fails either bound; a zero
// bound is not applied). It deletes in small transactions so writers
// never wait long, and returns how many entries it removed.
func (s *Store) Compact(keep int, maxAge time.Duration) (int, error) {
	const chunk = 1000
	cutoffTime := time.Time{}
	if maxAge > 0 {
		cutoffTime = s.now().Add(-maxAge)
	}
	removed := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			head := getU64(tx.Bucket(bucketMeta).Get(metaRevision))
			c := tx.Bucket(bucketChanges).Cursor()
			for k, v := c.First(); k != nil && n < chunk; k, v = c.Next() {
				rev := binary.BigEndian.Uint64(k)
				drop := keep > 0 && head-rev >= uint64(keep)
				if !drop && maxAge > 0 {
					var ch Change
					if json.Unmarshal(v, &ch) == nil && ch.Time.Before(cutoffTime) {
						drop = true
					}
				}
				if !drop {
					break
				}
				if err := c.Delete(); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		removed += n
		if err != nil || n < chunk {
			return removed, err
		}
	}
}

// Audit returns audit events at or after since, oldest first, at most limit
// (0 = no limit).
func (s *Store) Audit(since time.Time, limit int) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		start := make([]byte, 16)
		if !since.IsZero() {
			binary.BigEndian.PutUint64(start, uint64(since.UnixNano()))
		}
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%w: audit %x: %v", ErrCorrupt, k, err)
			}
			out = append(out, e)
			if limit > 0 && len(out) >= limit {
				break
			}
		}
		return nil
	})
	return out, err
}
