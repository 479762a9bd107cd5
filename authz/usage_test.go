package authz

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestUsageTrackerCountsEveryUse: concurrent Records over many keys are
// all counted, with the latest time per key, and Drain empties the tracker.
func TestUsageTrackerCountsEveryUse(t *testing.T) {
	tr := NewUsageTracker()
	base := time.Unix(1_700_000_000, 0)
	const workers, keys, uses = 8, 100, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range uses {
				for k := range keys {
					tr.Record(fmt.Sprint("key", k), base.Add(time.Duration(w*uses+i)*time.Second))
				}
			}
		})
	}
	wg.Wait()
	got := tr.Drain()
	if len(got) != keys {
		t.Fatalf("drained %d keys; want %d", len(got), keys)
	}
	last := base.Add(time.Duration(workers*uses-1) * time.Second)
	for _, u := range got {
		if u.Count != workers*uses {
			t.Errorf("%s: count %d; want %d", u.KeyID, u.Count, workers*uses)
		}
		if !u.LastUsedAt.Equal(last) {
			t.Errorf("%s: last used %s; want %s", u.KeyID, u.LastUsedAt, last)
		}
	}
	if again := tr.Drain(); len(again) != 0 {
		t.Fatalf("second drain returned %d keys; want none", len(again))
	}
}
