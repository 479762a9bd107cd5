package keystore

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

func quotaOf(t *testing.T, s *Store, id string) *Quota {
	t.Helper()
	k, err := s.GetKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return k.Quota
}

func lastChange(t *testing.T, s *Store, since uint64) (Change, int) {
	t.Helper()
	var last Change
	n := 0
	if err := s.Changes(since, 0, func(ch Change) error { last = ch; n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return last, n
}

func use(id string, n uint64, at time.Time) []Usage {
	return []Usage{{KeyID: id, LastUsedAt: at, Count: n}}
}

// TestQuotaSubtraction: reported uses are subtracted from a key's quota,
// each subtraction a change-log entry carrying the remaining count; the
// one that reaches 0 is audited; a forged count only exhausts it; a
// refill makes it usable again; a bad limit is refused.
func TestQuotaSubtraction(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	_, k := newKey(t, "read")
	if err := s.CreateKey(k, "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(use(k.ID, 5, c.now())); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, k.ID); q != nil {
		t.Fatalf("a key without a quota has %+v", q)
	}
	n := int64(10)
	if _, err := s.SetKeyQuota(k.ID, &n, "operator"); err != nil {
		t.Fatal(err)
	}
	rev := s.Revision()
	if err := s.RecordUsage(use(k.ID, 4, c.now())); err != nil {
		t.Fatal(err)
	}
	ch, count := lastChange(t, s, rev)
	if count != 1 || ch.Key == nil || ch.Key.Quota == nil || ch.Key.Quota.Remaining != 6 || s.Revision() != rev+1 {
		t.Fatalf("after 4 uses: %d changes, last %+v, revision %d (was %d)", count, ch.Key, s.Revision(), rev)
	}
	forged := use(k.ID, math.MaxUint64, c.now())
	if err := s.RecordUsage(forged); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, k.ID); q.Remaining != 0 || q.Limit != 10 || !q.Exhausted() {
		t.Fatalf("after a forged count: %+v", q)
	}
	events, err := s.Audit(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	exhausted := 0
	for _, e := range events {
		if e.Action == "key.quota.exhausted" && e.KeyID == k.ID && e.Actor == "usage" && e.Revision == s.Revision() {
			exhausted++
		}
	}
	if exhausted != 1 {
		t.Fatalf("%d key.quota.exhausted events in %+v", exhausted, events)
	}
	rev = s.Revision()
	if err := s.RecordUsage(use(k.ID, 3, c.now())); err != nil {
		t.Fatal(err)
	}
	if _, count := lastChange(t, s, rev); count != 0 {
		t.Fatalf("uses of an exhausted quota wrote %d changes", count)
	}
	n = 3
	if _, err := s.SetKeyQuota(k.ID, &n, "operator"); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, k.ID); q.Remaining != 3 || q.Limit != 3 {
		t.Fatalf("after a refill: %+v", q)
	}
	if _, err := s.SetKeyQuota(k.ID, nil, "operator"); err != nil || quotaOf(t, s, k.ID) != nil {
		t.Fatalf("removing the quota: %v, %+v", err, quotaOf(t, s, k.ID))
	}
	for _, bad := range []int64{0, -1, MaxUsageLimit + 1} {
		if _, err := s.SetKeyQuota(k.ID, &bad, "operator"); err == nil {
			t.Fatalf("usage limit %d accepted", bad)
		}
	}
	if _, err := s.RevokeKey(k.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetKeyQuota(k.ID, &n, "operator"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked key: %v", err)
	}
}

// TestQuotaConcurrentReports: concurrent reports are all subtracted, none
// lost or counted twice.
func TestQuotaConcurrentReports(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	_, k := newKey(t, "read")
	k.Quota = &Quota{Limit: 100_000, Remaining: 100_000}
	if err := s.CreateKey(k, "test"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			for j := range 25 {
				if err := s.RecordUsage(use(k.ID, uint64(1+(i+j)%3), c.now())); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	want := int64(0)
	for i := range 40 {
		for j := range 25 {
			want += int64(1 + (i+j)%3)
		}
	}
	if q := quotaOf(t, s, k.ID); q.Remaining != 100_000-want {
		t.Fatalf("remaining %d, want %d", q.Remaining, 100_000-want)
	}
}

// TestQuotaRotation: a rotation carries the remaining count (no refill);
// with a grace period the old and the new key share it, a use of either
// counting for both; without one the new key has it alone.
func TestQuotaRotation(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	_, old := newKey(t, "read")
	old.Quota = &Quota{Limit: 100, Remaining: 100}
	if err := s.CreateKey(old, "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(use(old.ID, 30, c.now())); err != nil {
		t.Fatal(err)
	}
	_, next := newKey(t, "read")
	if _, err := s.RotateKey(old.ID, next, time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, next.ID); q == nil || q.Remaining != 70 || q.Limit != 100 {
		t.Fatalf("rotated key's quota %+v, want 70 of 100 left", q)
	}
	if err := s.RecordUsage(use(old.ID, 5, c.now())); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(use(next.ID, 10, c.now())); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{old.ID, next.ID} {
		if q := quotaOf(t, s, id); q.Remaining != 55 {
			t.Fatalf("key %s: %+v, want 55 left on both keys", id, q)
		}
	}
	n := int64(500)
	if _, err := s.SetKeyQuota(next.ID, &n, "operator"); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, old.ID); q.Remaining != 500 {
		t.Fatalf("refill of the new key left the old one at %+v", q)
	}
	_, third := newKey(t, "read")
	if _, err := s.RotateKey(next.ID, third, 0, "test"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(use(third.ID, 1, c.now())); err != nil {
		t.Fatal(err)
	}
	// A late report of the key rotated without a grace period counts for
	// its successor.
	if err := s.RecordUsage(use(next.ID, 2, c.now())); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]int64{old.ID: 497, third.ID: 497} {
		if q := quotaOf(t, s, id); q.Remaining != want {
			t.Fatalf("key %s: %+v, want %d", id, q, want)
		}
	}
	c.add(2 * time.Hour) // the first key's grace ends
	if err := s.RecordUsage(use(third.ID, 1, c.now())); err != nil {
		t.Fatal(err)
	}
	if q := quotaOf(t, s, old.ID); q.Remaining != 497 {
		t.Fatalf("an expired key's quota moved: %+v", q)
	}
	// At most MaxQuotaShared live keys share one quota.
	cur := third
	var err error
	for range MaxQuotaShared + 1 {
		_, nk := newKey(t, "read")
		if _, err = s.RotateKey(cur.ID, nk, time.Hour, "test"); err != nil {
			break
		}
		cur = nk
	}
	if !errors.Is(err, ErrQuotaShared) {
		t.Fatalf("rotating %d times within the grace: %v", MaxQuotaShared+1, err)
	}
}
