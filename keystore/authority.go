package keystore

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"
)

// update runs fn in a batched, fsynced write transaction. bbolt may run fn
// more than once when a batch is retried, so fn only touches the
// transaction and variables it resets itself.
func (s *Store) update(fn func(w *wtx) error) error {
	var rev uint64
	err := s.write(func(tx *bolt.Tx) error {
		w := &wtx{tx: tx, now: s.now().UTC()}
		if err := fn(w); err != nil {
			return err
		}
		rev = getU64(tx.Bucket(bucketMeta).Get(metaRevision))
		return s.markApplied(tx)
	})
	if err != nil {
		return err
	}
	s.notifyWritten(rev)
	return nil
}

// notifyWritten tells the watchers of revision rev, just written; inside
// a batch of log entries (ApplyEntries), once the batch is committed.
func (s *Store) notifyWritten(rev uint64) {
	if s.entries != nil {
		s.entries.rev, s.entries.notify = rev, true
		return
	}
	s.notify(rev)
}

// CreateKey stores a new record. It fails with ErrDuplicateHash when the
// hash is already known. CreatedAt defaults to now.
func (s *Store) CreateKey(k *Key, actor string) error {
	return s.update(func(w *wtx) error {
		return createKey(w, k, actor, "key.create")
	})
}

func createKey(w *wtx, k *Key, actor, action string) error {
	if k.ID == "" || k.Prefix == "" {
		return fmt.Errorf("keystore: create: id and prefix are required")
	}
	if w.tx.Bucket(bucketKeys).Get(k.Hash[:]) != nil {
		return ErrDuplicateHash
	}
	if w.tx.Bucket(bucketIDs).Get([]byte(k.ID)) != nil {
		return fmt.Errorf("keystore: create: id %s already exists", k.ID)
	}
	if k.CreatedAt.IsZero() {
		k.CreatedAt = w.now
	}
	if k.Scopes == nil {
		k.Scopes = []string{}
	}
	k.CreatedBy = actor
	return w.saveKey(k, actor, action)
}

// ImportResult tells, per key given to ImportKeys, whether it was stored.
type ImportResult struct {
	Imported int
	// Skipped holds the indexes of keys whose hash was already known or
	// repeated earlier in the same call.
	Skipped []int
}

// ImportKeys stores a batch of records in one transaction, skipping any
// whose hash is already present. Use it for bulk imports in chunks.
func (s *Store) ImportKeys(keys []*Key, actor string) (ImportResult, error) {
	var res ImportResult
	err := s.update(func(w *wtx) error {
		res = ImportResult{}
		for i, k := range keys {
			err := createKey(w, k, actor, "key.import")
			if errors.Is(err, ErrDuplicateHash) {
				res.Skipped = append(res.Skipped, i)
				continue
			}
			if err != nil {
				return err
			}
			res.Imported++
		}
		return nil
	})
	return res, err
}

// RevokeKey soft-deletes the key: the record stays, with RevokedAt set.
// It fails with ErrRevoked when the key was already revoked.
func (s *Store) RevokeKey(id, actor string) (*Key, error) {
	return s.updateLiveKey(id, actor, "key.revoke", func(w *wtx, k *Key) error {
		t := w.now
		k.RevokedAt, k.RevokedBy = &t, actor
		return nil
	})
}

// updateLiveKey applies change to the live key id in one transaction and
// saves it with the audit action; it fails with ErrRevoked for a revoked
// key. It returns the updated record.
func (s *Store) updateLiveKey(id, actor, action string, change func(*wtx, *Key) error) (*Key, error) {
	var out *Key
	err := s.update(func(w *wtx) error {
		k, err := getKeyByID(w.tx, id)
		if err != nil {
			return err
		}
		if k.Revoked() {
			return ErrRevoked
		}
		if err := change(w, k); err != nil {
			return err
		}
		out = k
		return w.saveKey(k, actor, action)
	})
	return out, err
}

// RotateKey stores next and, in the same transaction, ends the old key:
// with a zero grace it is revoked at once, otherwise it expires after grace
// (or at its own earlier expiry). It returns the updated old record.
func (s *Store) RotateKey(oldID string, next *Key, grace time.Duration, actor string) (*Key, error) {
	var out *Key
	err := s.update(func(w *wtx) error {
		old, err := getKeyByID(w.tx, oldID)
		if err != nil {
			return err
		}
		if old.Revoked() {
			return ErrRevoked
		}
		if err := w.carryQuota(old, next, grace > 0); err != nil {
			return err
		}
		if err := createKey(w, next, actor, "key.rotate.create"); err != nil {
			return err
		}
		if grace <= 0 {
			t := w.now
			old.RevokedAt, old.RevokedBy = &t, actor
		} else if end := w.now.Add(grace); old.ExpiresAt == nil || end.Before(*old.ExpiresAt) {
			old.ExpiresAt = &end
		}
		out = old
		return w.saveKey(old, actor, "key.rotate.retire")
	})
	return out, err
}

// SetKeyRateLimit replaces the rate limit of the live key id (nil removes
// it) and returns the updated record. It fails with ErrRevoked for a
// revoked key. The change replicates like any other.
func (s *Store) SetKeyRateLimit(id string, limit *RateLimit, actor string) (*Key, error) {
	if limit != nil {
		if err := limit.Validate(); err != nil {
			return nil, fmt.Errorf("keystore: rate limit: %w", err)
		}
		l := *limit
		limit = &l
	}
	return s.updateLiveKey(id, actor, "key.update", func(_ *wtx, k *Key) error { k.RateLimit = limit; return nil })
}

// SetUserActive activates or deactivates a user. Deactivation stops every
// key the user owns.
func (s *Store) SetUserActive(id string, active bool, actor string) (User, error) {
	var u User
	err := s.update(func(w *wtx) error {
		u = User{ID: id, Active: active, UpdatedAt: w.now}
		action := "user.enable"
		if !active {
			action = "user.disable"
		}
		return w.saveUser(&u, actor, action)
	})
	return u, err
}

// CreateProject stores a project and, when first is not nil, its first key,
// in one transaction.
func (s *Store) CreateProject(p *Project, first *Key, actor string) error {
	return s.update(func(w *wtx) error {
		pb := w.tx.Bucket(bucketProjects)
		if pb.Get([]byte(p.ID)) != nil {
			return fmt.Errorf("keystore: project %s already exists", p.ID)
		}
		if p.CreatedAt.IsZero() {
			p.CreatedAt = w.now
		}
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if err := pb.Put([]byte(p.ID), v); err != nil {
			return err
		}
		if err := w.audit(Event{Actor: actor, Action: "project.create", ProjectID: p.ID}); err != nil {
			return err
		}
		if first == nil {
			return nil
		}
		return createKey(w, first, actor, "key.create")
	})
}

// Usage is what a front door observed of one key since its last report.
type Usage struct {
	KeyID      string    `json:"key_id"`
	LastUsedAt time.Time `json:"last_used_at"`
	Count      uint64    `json:"count"`
}

// MaxUsageSkew is how far ahead of the store's clock a reported use may be:
// a later LastUsedAt is taken as now + MaxUsageSkew, so that one report
// from a sidecar with a wrong clock (or a forged one) cannot pin a key's
// last use in the future for good.
const MaxUsageSkew = time.Minute

// RecordUsage folds usage reports into the records: the latest LastUsedAt
// wins, clamped to MaxUsageSkew ahead of the store's clock, and counts add
// up, saturating at the largest uint64 instead of wrapping. Usage is not an
// enforcement change, so it writes no change-log entry and no audit event,
// except for a key with a quota: the count is subtracted from its
// remaining (and from the live keys sharing it, so that a rotated key's
// late reports count for its successor), saturating at 0, and that is a
// change that replicates; reaching 0 is audited as key.quota.exhausted.
// A report's count can therefore at most exhaust a quota. Everything is
// decided from the batch and the store's clock, so members of an admin
// cluster applying the same batch reach the same records. Unknown key ids
// are ignored.
func (s *Store) RecordUsage(batch []Usage) error {
	if len(batch) == 0 {
		return nil
	}
	var rev uint64
	err := s.write(func(tx *bolt.Tx) error {
		w := &wtx{tx: tx, now: s.now().UTC()}
		latest := w.now.Add(MaxUsageSkew)
		if err := s.markApplied(tx); err != nil {
			return err
		}
		for _, u := range batch {
			k, err := getKeyByID(tx, u.KeyID)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			at := u.LastUsedAt
			if at.After(latest) {
				at = latest
			}
			if k.LastUsedAt == nil || at.After(*k.LastUsedAt) {
				t := at.UTC()
				k.LastUsedAt = &t
			}
			if k.UseCount+u.Count < k.UseCount {
				k.UseCount = math.MaxUint64
			} else {
				k.UseCount += u.Count
			}
			if k.Quota != nil {
				// A revoked key's uses, reported late, still count for
				// the live keys sharing its quota (its successor).
				err = w.spendQuota(k, u.Count)
			} else {
				err = putKey(tx, k)
			}
			if err != nil {
				return err
			}
		}
		rev = w.rev
		return nil
	})
	if err == nil && rev > 0 {
		s.notifyWritten(rev)
	}
	return err
}
