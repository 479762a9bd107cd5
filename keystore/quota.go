package keystore

import (
	"errors"
	"fmt"
	"slices"
)

// Quota is a key's budget of requests in total (Unkey's "remaining"):
// Limit were granted when it was last set and Remaining are left. The
// admin subtracts the uses sidecars report (RecordUsage); a key whose
// Remaining reaches 0 is exhausted, a change that replicates like a
// revocation. Records written before quotas existed have none (nil:
// unlimited).
//
// Shared lists the other live keys of the same rotation (a rotated key
// in its grace period and its successor): they share one remaining count,
// a use of any of them is subtracted from all, and setting the quota of
// one sets it for all.
type Quota struct {
	Limit     int64    `json:"limit"`
	Remaining int64    `json:"remaining"`
	Shared    []string `json:"shared,omitempty"`
}

// Bounds of a quota: a limit of 1 to MaxUsageLimit requests, shared by at
// most MaxQuotaShared keys of one rotation at a time.
const (
	MaxUsageLimit  = 1_000_000_000_000
	MaxQuotaShared = 16
)

// ErrQuotaShared means a rotation would have more than MaxQuotaShared live
// keys share one quota (too many rotations within their grace periods).
var ErrQuotaShared = errors.New("keystore: too many keys of this rotation share the quota in their grace periods")

// Exhausted reports whether no request is left.
func (q *Quota) Exhausted() bool { return q.Remaining <= 0 }

// CheckUsageLimit returns what is wrong with n as a quota's limit, or nil.
func CheckUsageLimit(n int64) error {
	if n < 1 || n > MaxUsageLimit {
		return fmt.Errorf("must be an integer from 1 to %d, got %d", int64(MaxUsageLimit), n)
	}
	return nil
}

// ErrQuotaRaise means LowerKeyQuota was asked for more requests than the
// key has left, or to remove its quota.
var ErrQuotaRaise = errors.New("keystore: the new usage limit is above the requests the key has left")

// SetKeyQuota gives the live key id a new quota of limit requests, all of
// them remaining (a refill), or removes its quota (nil). The keys sharing
// its quota (Quota.Shared) get the same. It returns the updated record and
// fails with ErrRevoked for a revoked key. The change replicates like any
// other.
func (s *Store) SetKeyQuota(id string, limit *int64, actor string) (*Key, error) {
	return s.setKeyQuota(id, limit, actor, false)
}

// LowerKeyQuota is SetKeyQuota for a caller who may only tighten a quota
// (a key's holder): it fails with ErrQuotaRaise when, as the change is
// applied, the key has a quota and limit is nil or above the requests it
// has left, so uses subtracted after the caller read the key are never
// given back.
func (s *Store) LowerKeyQuota(id string, limit *int64, actor string) (*Key, error) {
	return s.setKeyQuota(id, limit, actor, true)
}

func (s *Store) setKeyQuota(id string, limit *int64, actor string, lowerOnly bool) (*Key, error) {
	if limit != nil {
		if err := CheckUsageLimit(*limit); err != nil {
			return nil, fmt.Errorf("keystore: usage limit: %w", err)
		}
	}
	set := func(k *Key) {
		if limit == nil {
			k.Quota = nil
			return
		}
		var shared []string
		if k.Quota != nil {
			shared = k.Quota.Shared
		}
		k.Quota = &Quota{Limit: *limit, Remaining: *limit, Shared: shared}
	}
	return s.updateLiveKey(id, actor, "key.update", func(w *wtx, k *Key) error {
		if lowerOnly && k.Quota != nil && (limit == nil || *limit > k.Quota.Remaining) {
			return fmt.Errorf("%w (%d of %d left)", ErrQuotaRaise, k.Quota.Remaining, k.Quota.Limit)
		}
		members, err := w.quotaMembers(k)
		if err != nil {
			return err
		}
		for _, m := range members[1:] {
			set(m)
			if err := w.saveKey(m, actor, "key.update"); err != nil {
				return err
			}
		}
		set(k) // saved by updateLiveKey
		return nil
	})
}

// quotaMembers returns k (live or not) and the live keys that share its
// quota, k first.
func (w *wtx) quotaMembers(k *Key) ([]*Key, error) {
	out := []*Key{k}
	if k.Quota == nil {
		return out, nil
	}
	for _, id := range k.Quota.Shared {
		m, err := getKeyByID(w.tx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m.Revoked() || m.Expired(w.now) || m.Quota == nil {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// spendQuota subtracts n uses from the quota of k (already changed by the
// caller and not yet saved) and of the keys sharing it, saturating at 0.
// Each record whose remaining count moves gets a change-log entry, so
// sidecars learn it; one that reaches 0 also gets the audit event
// key.quota.exhausted. k itself is saved in any case.
func (w *wtx) spendQuota(k *Key, n uint64) error {
	members, err := w.quotaMembers(k)
	if err != nil {
		return err
	}
	for i, m := range members {
		q := m.Quota
		if n == 0 || q.Remaining <= 0 {
			if i == 0 {
				if err := putKey(w.tx, m); err != nil {
					return err
				}
			}
			continue
		}
		if n >= uint64(q.Remaining) {
			q.Remaining = 0
		} else {
			q.Remaining -= int64(n)
		}
		if err := putKey(w.tx, m); err != nil {
			return err
		}
		if err := w.logChange(Change{Key: m.Enforcement()}); err != nil {
			return err
		}
		if q.Remaining == 0 {
			if err := w.audit(Event{Actor: usageActor, Action: "key.quota.exhausted", KeyID: m.ID, KeyPrefix: m.Prefix, UserID: m.UserID, ProjectID: m.ProjectID}); err != nil {
				return err
			}
		}
	}
	return nil
}

// usageActor is the actor of the audit events usage reports cause.
const usageActor = "usage"

// carryQuota gives next, the successor of old in a rotation, old's quota
// as it stands: the same limit and remaining count, not a refill. With a
// grace period old stays live, so the two (and the other live keys already
// sharing old's quota) share it from now on. Without one old is revoked,
// but keeps next in its Shared list: uses of old that sidecars report
// late are still subtracted from next. The old keys are saved here, old
// itself by the caller.
func (w *wtx) carryQuota(old, next *Key, grace bool) error {
	next.Quota = nil
	if old.Quota == nil {
		return nil
	}
	members, err := w.quotaMembers(old)
	if err != nil {
		return err
	}
	if !grace {
		members = members[1:] // old is revoked at once
	}
	if len(members)+1 > MaxQuotaShared {
		return ErrQuotaShared
	}
	ids := make([]string, 0, len(members)+1)
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	next.Quota = &Quota{Limit: old.Quota.Limit, Remaining: old.Quota.Remaining, Shared: slices.Clone(ids)}
	ids = append(ids, next.ID)
	for _, m := range members {
		m.Quota.Shared = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == m.ID })
		if m == old {
			continue
		}
		if err := putKey(w.tx, m); err != nil {
			return err
		}
		if err := w.logChange(Change{Key: m.Enforcement()}); err != nil {
			return err
		}
	}
	if !grace {
		old.Quota.Shared = ids
	}
	return nil
}
