package replication

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
)

type noQuorumError struct{}

func (noQuorumError) Error() string     { return "admin cluster: no quorum of admin members; retry" }
func (noQuorumError) Unavailable() bool { return true }

func TestUsageGoesThroughRecordUsageAndAnUnavailableOneIs503(t *testing.T) {
	admin := newAdminStore(t)
	var got []keystore.Usage
	fail := false
	srv := mustServer(t, ServerOptions{Store: admin, Token: testToken, Logger: zerolog.Nop(), RecordUsage: func(b []keystore.Usage) error {
		if fail {
			return noQuorumError{}
		}
		got = append(got, b...)
		return nil
	}})
	t.Cleanup(srv.Close)
	ts := serve(t, srv)
	body := []byte(`{"node":"n1","usage":[{"key_id":"k1","count":2}]}`)
	if resp, b := do(t, http.MethodPost, ts.URL+PathUsage, "Bearer "+testToken, "application/json", body); resp.StatusCode != http.StatusNoContent || len(got) != 1 {
		t.Fatalf("status %d (%s), %d reports passed on", resp.StatusCode, b, len(got))
	}
	fail = true
	resp, b := do(t, http.MethodPost, ts.URL+PathUsage, "Bearer "+testToken, "application/json", body)
	if resp.StatusCode != http.StatusServiceUnavailable || errorOf(t, b) != (noQuorumError{}).Error() {
		t.Fatalf("without quorum: status %d (%s)", resp.StatusCode, b)
	}
}

// A watch ahead of the store, with its store id: one admin answers 410
// (take a new snapshot); a cluster member (BehindWait) waits for the
// revision, or answers 503 (retry) and never 410.
func TestWatchAheadOfAClusterMemberWaitsOrRetries(t *testing.T) {
	st := newAdminStore(t)
	createKey(t, st, nil)
	ahead := fmt.Sprintf("%s?since=%d&store_id=%s", PathWatch, st.Revision()+1, st.StoreID())
	auth := "Bearer " + testToken
	single := serve(t, newServer(t, st))
	if resp, b := do(t, http.MethodGet, single.URL+ahead, auth, "", nil); resp.StatusCode != http.StatusGone {
		t.Fatalf("one admin: %d %s, want 410", resp.StatusCode, b)
	}
	member := func(wait time.Duration) *httptest.Server {
		s := mustServer(t, ServerOptions{Store: st, Token: testToken, Heartbeat: testHeartbeat, Logger: zerolog.Nop(), BehindWait: wait})
		t.Cleanup(s.Close)
		return serve(t, s)
	}
	resp, b := do(t, http.MethodGet, member(time.Nanosecond).URL+ahead, auth, "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a member that stays behind: %d %s, want 503 with Retry-After", resp.StatusCode, b)
	}
	// Another store id is another cluster: 410 whatever the wait.
	other := fmt.Sprintf("%s?since=%d&store_id=other", PathWatch, st.Revision()+1)
	if resp, b := do(t, http.MethodGet, member(time.Minute).URL+other, auth, "", nil); resp.StatusCode != http.StatusGone {
		t.Fatalf("another store id: %d %s, want 410", resp.StatusCode, b)
	}
	// A member that reaches the revision while the watch waits streams it.
	ts := member(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL+ahead, nil)
		req.Header.Set("Authorization", auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	createKey(t, st, nil)
	if code := <-done; code != http.StatusOK {
		t.Fatalf("a member that catches up: %d, want 200", code)
	}
}

// TestUsageAckCarriesTheRevision: an accepted report is answered with the
// admin's revision after it, which the follower hands to UsageAcked with
// the chunk; a replica at that revision has the quota's uses subtracted.
func TestUsageAckCarriesTheRevision(t *testing.T) {
	admin := newAdminStore(t)
	k := createKey(t, admin, func(k *keystore.Key) { k.Quota = &keystore.Quota{Limit: 100, Remaining: 100} })
	fr := newFront(t, newServer(t, admin))
	var acked []keystore.Usage
	var ackRev uint64
	f, _ := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) {
		o.UsageAcked = func(u []keystore.Usage, rev uint64) { acked, ackRev = u, rev }
	})
	stop := run(t, f)
	defer stop()
	// A replica of the admin's store (a sidecar allows nothing before).
	waitFor(t, "the replica holds the admin's store", func() bool { return f.StoreID() == admin.StoreID() })
	batch := []keystore.Usage{{KeyID: k.key.ID, LastUsedAt: time.Now().Add(-time.Minute), Count: 7}}
	if retry, err := f.SendUsage(t.Context(), batch); err != nil || len(retry) > 0 {
		t.Fatalf("SendUsage: %v, %d to retry", err, len(retry))
	}
	if len(acked) != 1 || acked[0].Count != 7 || ackRev == 0 || ackRev != admin.Revision() {
		t.Fatalf("acknowledged %+v at revision %d; admin at %d", acked, ackRev, admin.Revision())
	}
	waitFor(t, "the replica reaches the acknowledged revision", func() bool { return f.Revision() >= ackRev })
	if res := lookup(t, f, k); res.Key.Quota == nil || res.Key.Quota.Remaining != 93 {
		t.Fatalf("replica's quota %+v, want 93 remaining", res.Key.Quota)
	}
}

// TestUsageAckOfAnotherStoreIsNotAcknowledged: a usage report accepted by
// an admin of another store (the sidecar's replica is of one store, the
// member that took the report holds another history) is not handed to
// UsageAcked: that store's revision, at or below the replica's, would
// give the sidecar its quota allowance back with nothing subtracted from
// the counts it reads.
func TestUsageAckOfAnotherStoreIsNotAcknowledged(t *testing.T) {
	followed := newAdminStore(t)
	k := createKey(t, followed, func(k *keystore.Key) { k.Quota = &keystore.Quota{Limit: 100, Remaining: 100} })
	createKey(t, followed, nil)
	other := newAdminStore(t)
	mux := http.NewServeMux()
	mux.Handle("/", newServer(t, followed))
	mux.Handle(PathUsage, newServer(t, other))
	fr := newFront(t, mux)
	acked := false
	f, _ := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) {
		o.UsageAcked = func([]keystore.Usage, uint64) { acked = true }
	})
	stop := run(t, f)
	defer stop()
	waitFor(t, "the replica holds the followed store", func() bool { return f.Revision() == followed.Revision() })
	if other.Revision() > f.Revision() || other.StoreID() == f.StoreID() {
		t.Fatalf("setup: other store %s at %d, replica of %s at %d", other.StoreID(), other.Revision(), f.StoreID(), f.Revision())
	}
	batch := []keystore.Usage{{KeyID: k.key.ID, LastUsedAt: time.Now().Add(-time.Minute), Count: 7}}
	if retry, err := f.SendUsage(t.Context(), batch); err != nil || len(retry) > 0 {
		t.Fatalf("SendUsage: %v, %d to retry", err, len(retry))
	}
	if acked {
		t.Fatal("another store's acknowledgement was handed to UsageAcked")
	}
}

// TestNewHistoryAfterASnapshotOfAnotherStore: NewHistory is called once
// the replica is replaced by a snapshot of another store (a restored
// admin), at a revision below the replica's, and not for the first
// snapshot or a resumed watch.
func TestNewHistoryAfterASnapshotOfAnotherStore(t *testing.T) {
	adminA := newAdminStore(t)
	for range 3 {
		createKey(t, adminA, nil)
	}
	fr := newFront(t, newServer(t, adminA))
	var calls atomic.Int32
	f, _ := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) {
		o.NewHistory = func() { calls.Add(1) }
	})
	stop := run(t, f)
	defer stop()
	caughtUp(t, f, adminA)
	createKey(t, adminA, nil)
	caughtUp(t, f, adminA)
	if n := calls.Load(); n != 0 {
		t.Fatalf("NewHistory called %d times while following one store", n)
	}
	adminB := newAdminStore(t)
	createKey(t, adminB, nil)
	fr.set(newServer(t, adminB))
	caughtUp(t, f, adminB)
	if n := calls.Load(); n != 1 {
		t.Fatalf("NewHistory called %d times for the other store, want once", n)
	}
}
