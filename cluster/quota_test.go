package cluster

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// quotaCluster starts three members holding the key id with a quota of
// limit requests.
func quotaCluster(t *testing.T, id string, limit int64) ([]*testNode, *keystore.Key) {
	t.Helper()
	nodes := newCluster(t, newTestCA(t), 3, nil)
	_, k := newKey(t, id, "u1")
	write(t, nodes, func(w *Writer) error { return w.CreateKey(k, "op") })
	write(t, nodes, func(w *Writer) error { _, err := w.SetKeyQuota(k.ID, &limit, "op"); return err })
	return nodes, k
}

// TestQuotaUsesThroughRaft: a quota set and its uses reported through
// raft, concurrently, leave the same remaining count (the sum subtracted
// exactly once) on every member, down to exhaustion, and a refill
// replicates the same way.
func TestQuotaUsesThroughRaft(t *testing.T) {
	limit := int64(1000)
	nodes, k := quotaCluster(t, "q-1", limit)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10 {
				for attempt := 0; ; attempt++ {
					l := leader(t, nodes)
					err := (&Writer{Node: l.node}).RecordUsage([]keystore.Usage{{KeyID: k.ID, LastUsedAt: time.Now(), Count: 7}})
					if err == nil {
						break
					}
					if !errors.Is(err, ErrNotLeader) || attempt > 50 {
						t.Error(err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	sameState(t, nodes)
	for _, tn := range nodes {
		got, err := tn.store.GetKey(k.ID)
		if err != nil || got.Quota == nil || got.Quota.Remaining != 1000-8*10*7 || got.UseCount != 8*10*7 {
			t.Fatalf("%s: %+v, %v; want 440 remaining after 560 uses", tn.id, got, err)
		}
	}
	write(t, nodes, func(w *Writer) error {
		return w.RecordUsage([]keystore.Usage{{KeyID: k.ID, LastUsedAt: time.Now(), Count: 1 << 62}})
	})
	sameState(t, nodes)
	for _, tn := range nodes {
		if got, _ := tn.store.GetKey(k.ID); got.Quota == nil || !got.Quota.Exhausted() {
			t.Fatalf("%s: quota not exhausted: %+v", tn.id, got.Quota)
		}
	}
	write(t, nodes, func(w *Writer) error { _, err := w.SetKeyQuota(k.ID, &limit, "op"); return err })
	sameState(t, nodes)
	for _, tn := range nodes {
		if got, _ := tn.store.GetKey(k.ID); got.Quota == nil || got.Quota.Remaining != limit {
			t.Fatalf("%s: refill did not replicate: %+v", tn.id, got.Quota)
		}
	}
}

// TestAForwardedWriteIsAppliedOnTheFollowerWhenItReturns: a write through
// a follower returns once the follower's own store holds it, as Writer
// promises. A usage report answered by a follower names that follower's
// revision (Extauthz-Revision), and a sidecar gives its quota allowance
// back once its replica reaches it: were the follower's store behind the
// leader's, the sidecar would regain allowance the remaining count it
// reads does not reflect, past the documented overshoot bound.
func TestAForwardedWriteIsAppliedOnTheFollowerWhenItReturns(t *testing.T) {
	limit := int64(1000)
	nodes, k := quotaCluster(t, "q-fwd", limit)
	f := follower(nodes, leader(t, nodes))
	w := &Writer{Node: f.node}
	for i := range int64(20) {
		if err := untilLeaderKnown(func() error {
			return w.RecordUsage([]keystore.Usage{{KeyID: k.ID, LastUsedAt: time.Now(), Count: 1}})
		}); err != nil {
			t.Fatal(err)
		}
		got, err := f.store.GetKey(k.ID)
		if err != nil {
			t.Fatal(err)
		}
		if want := limit - i - 1; got.Quota.Remaining != want {
			t.Fatalf("report %d returned through follower %s before its store had it: remaining %d, want %d", i+1, f.id, got.Quota.Remaining, want)
		}
	}
}
