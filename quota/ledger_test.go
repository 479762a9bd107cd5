package quota

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/extauthz/extauthz/keystore"
)

// takeConcurrently has callers goroutines take uses of id until each was
// denied once, and returns how many were allowed.
func takeConcurrently(l *Ledger, id string, q *keystore.Quota, rev uint64, callers int) int64 {
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for l.Take(id, q, rev).Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	return allowed.Load()
}

// TestAllowance: concurrent callers get exactly min(remaining, allowance)
// uses, none lost or given twice; more only once an acknowledged report
// is replicated, and then only up to the new remaining count.
func TestAllowance(t *testing.T) {
	l := New(Options{Allowance: 10})
	q := &keystore.Quota{Limit: 1000, Remaining: 1000}
	if n := takeConcurrently(l, "k", q, 5, 40); n != 10 {
		t.Fatalf("allowed %d, want the allowance of 10", n)
	}
	if r := l.Take("k", q, 5); r.Allowed || r.Exhausted || r.Remaining != 990 {
		t.Fatalf("after the allowance: %+v", r)
	}
	l.Acked([]keystore.Usage{{KeyID: "k", Count: 10}, {KeyID: "other", Count: 3}}, 7)
	// Not before the replica has revision 7: the record it reads may not
	// reflect the report yet.
	if r := l.Take("k", q, 6); r.Allowed {
		t.Fatalf("allowed before the acknowledged revision: %+v", r)
	}
	q7 := &keystore.Quota{Limit: 1000, Remaining: 990}
	if n := takeConcurrently(l, "k", q7, 7, 40); n != 10 {
		t.Fatalf("allowed %d after the acknowledgement, want 10", n)
	}
	if l.Len() != 1 {
		t.Fatalf("%d entries, want only k's", l.Len())
	}
	// Fewer remaining than the allowance: the remaining count bounds.
	low := &keystore.Quota{Limit: 1000, Remaining: 3}
	if n := takeConcurrently(New(Options{Allowance: 10}), "k", low, 1, 40); n != 3 {
		t.Fatalf("allowed %d of 3 remaining", n)
	}
	if r := l.Take("k", &keystore.Quota{Limit: 5}, 9); r.Allowed || !r.Exhausted {
		t.Fatalf("an exhausted quota: %+v", r)
	}
}

// TestRefundAndBounds: a refunded use can be taken again; past MaxKeys a
// new key is denied; settled entries are swept.
func TestRefundAndBounds(t *testing.T) {
	rev := uint64(1)
	l := New(Options{Allowance: 2, MaxKeys: 2, Revision: func() uint64 { return rev }})
	q := &keystore.Quota{Limit: 100, Remaining: 100}
	l.Take("a", q, rev)
	l.Take("a", q, rev)
	l.Refund("a")
	if !l.Take("a", q, rev).Allowed || l.Take("a", q, rev).Allowed {
		t.Fatal("a refund did not give back exactly one use")
	}
	l.Take("b", q, rev)
	if r := l.Take("c", q, rev); r.Allowed {
		t.Fatalf("a third key past MaxKeys 2: %+v", r)
	}
	l.Acked([]keystore.Usage{{KeyID: "a", Count: 2}}, 3)
	if l.Len() != 2 {
		t.Fatalf("swept before the revision: %d entries", l.Len())
	}
	rev = 3
	l.Acked([]keystore.Usage{{KeyID: "b", Count: 1}}, 4)
	if l.Len() != 1 {
		t.Fatalf("%d entries after a's report is replicated, want 1 (b's)", l.Len())
	}
	if r := l.Take("c", q, 2); r.Allowed || !r.Stale {
		t.Fatalf("a record older than a sweep: %+v; want a stale denial", r)
	}
	if !l.Take("c", q, 3).Allowed {
		t.Fatal("a new key after the sweep is denied")
	}
}

// TestOvershootBound: sidecars sharing one quota, each reporting its uses
// to one admin that subtracts them and replicates the result at once or
// late, never allow more than the limit plus sidecars × allowance in
// total, and allow the whole limit.
func TestOvershootBound(t *testing.T) {
	const limit, allowance = 1000, 37
	for _, sidecars := range []int{1, 2, 5} {
		for _, lag := range []int{0, 1, 3} {
			remaining := int64(limit)
			var history []int64 // the remaining count at each revision
			history = append(history, remaining)
			ledgers := make([]*Ledger, sidecars)
			unreported := make([]uint64, sidecars)
			seen := make([]uint64, sidecars)
			for i := range ledgers {
				ledgers[i] = New(Options{Allowance: allowance})
			}
			var allowed int64
			var headAt []int // the admin's revision at the start of each round
			for round := 0; round < 400; round++ {
				headAt = append(headAt, len(history)-1)
				for i, l := range ledgers {
					// Sidecar i's replica is lag × (i+1) rounds behind.
					seen[i] = uint64(headAt[max(0, round-lag*(i+1))])
					q := &keystore.Quota{Limit: limit, Remaining: history[seen[i]]}
					for range 1 + (round*7+i*13)%50 {
						if l.Take("k", q, seen[i]).Allowed {
							allowed++
							unreported[i]++
						}
					}
					if round%3 == i%3 && unreported[i] > 0 {
						remaining = max(0, remaining-int64(unreported[i]))
						history = append(history, remaining)
						l.Acked([]keystore.Usage{{KeyID: "k", Count: unreported[i]}}, uint64(len(history)-1))
						unreported[i] = 0
					}
				}
			}
			if allowed < limit || allowed > limit+int64(sidecars)*allowance {
				t.Errorf("%d sidecars, lag %d: allowed %d of %d, want from %d to %d", sidecars, lag, allowed, limit, limit, limit+sidecars*allowance)
			}
		}
	}
}

// TestResetForANewHistory: once acknowledgements settled a key at a
// revision, a replica of a new history (restored store, lower revisions)
// found every quota'd key without an entry denied, and a key with uses
// waiting for a revision of the old history denied at its allowance,
// until the new history passed the old revisions. Reset starts over.
func TestResetForANewHistory(t *testing.T) {
	l := New(Options{Allowance: 2, Revision: func() uint64 { return 1000 }})
	q := &keystore.Quota{Limit: 100, Remaining: 100}
	for _, id := range []string{"a", "b"} {
		if !l.Take(id, q, 990).Allowed {
			t.Fatalf("%s: first use denied", id)
		}
	}
	l.Acked([]keystore.Usage{{KeyID: "a", Count: 1}}, 1000) // a settles and is swept at 1000
	l.Acked([]keystore.Usage{{KeyID: "b", Count: 1}}, 1001) // b waits for 1001
	l.Take("b", q, 990)
	// The new history's replica is at revision 10.
	if l.Take("c", q, 10).Allowed || l.Take("b", q, 10).Allowed {
		t.Fatal("setup: the old history's revisions did not hold the keys back")
	}
	l.Reset()
	for _, id := range []string{"a", "b", "c"} {
		if r := l.Take(id, q, 10); !r.Allowed {
			t.Fatalf("%s after Reset: %+v", id, r)
		}
	}
}
