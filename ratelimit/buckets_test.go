package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func lim(n int64, d time.Duration) keystore.RateLimit {
	return keystore.RateLimit{Limit: n, Duration: d}
}

// TestBucketAllowsNThenRefillsEvenly: a full bucket allows exactly N at
// once; then one token comes back every D/N, and after D it is full.
func TestBucketAllowsNThenRefillsEvenly(t *testing.T) {
	b := New(0)
	l := lim(4, time.Minute) // a token every 15 s
	for i := range 4 {
		r := b.Take("k", l, 1, t0)
		if !r.Allowed || r.Remaining != int64(3-i) {
			t.Fatalf("request %d: %+v", i+1, r)
		}
	}
	r := b.Take("k", l, 1, t0)
	if r.Allowed || r.Remaining != 0 || r.RetryAfter != 15*time.Second || r.Reset != time.Minute {
		t.Fatalf("fifth request: %+v; want refused, retry after 15s, full after 1m", r)
	}
	if r := b.Take("k", l, 1, t0.Add(15*time.Second-time.Nanosecond)); r.Allowed {
		t.Fatalf("a token before 15 s: %+v", r)
	}
	if r := b.Take("k", l, 1, t0.Add(15*time.Second)); !r.Allowed || r.Remaining != 0 || r.Reset != time.Minute {
		t.Fatalf("at 15 s: %+v; want the one token back, full again a minute later", r)
	}
	if r := b.Take("k", l, 1, t0.Add(20*time.Second)); r.Allowed || r.RetryAfter != 10*time.Second {
		t.Fatalf("at 20 s: %+v; want refused, retry after 10s", r)
	}
	// Idle for the whole window: full again, N at once.
	at := t0.Add(15*time.Second + time.Minute)
	for i := range 4 {
		if r := b.Take("k", l, 1, at); !r.Allowed {
			t.Fatalf("after a minute idle, request %d refused: %+v", i+1, r)
		}
	}
	if r := b.Take("k", l, 1, at); r.Allowed {
		t.Fatalf("fifth request after refill allowed: %+v", r)
	}
}

func TestCost(t *testing.T) {
	b := New(0)
	l := lim(10, 10*time.Second)
	for range 3 {
		if r := b.Take("k", l, 3, t0); !r.Allowed {
			t.Fatalf("cost 3 refused: %+v", r)
		}
	}
	r := b.Take("k", l, 3, t0)
	if r.Allowed || r.Remaining != 1 || r.RetryAfter != 2*time.Second {
		t.Fatalf("fourth cost-3 request: %+v; want refused with 1 left, retry after 2s", r)
	}
	if r := b.Take("k", l, 0, t0); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("cost 0: %+v", r)
	}
	// A cost above the limit takes the whole bucket.
	if r := b.Take("big", l, 25, t0); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("cost 25 of 10: %+v", r)
	}
	if r := b.Take("big", l, 1, t0); r.Allowed {
		t.Fatalf("after a cost above the limit: %+v", r)
	}
}

// TestConcurrentCallersTakeExactlyN: however many goroutines take at
// once, exactly N tokens are handed out, none lost, none twice.
func TestConcurrentCallersTakeExactlyN(t *testing.T) {
	b := New(0)
	l := lim(1000, time.Hour)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 100 {
				// Times within one token's refill (3.6 s), out of order.
				at := t0.Add(time.Duration((g*7+i*13)%100) * time.Millisecond)
				if b.Take("k", l, 1, at).Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 1000 {
		t.Fatalf("allowed %d of 3200 concurrent requests; want exactly 1000", got)
	}
}

// TestOutOfOrderTimesAreNotCreditedTwice: a request stamped before the
// bucket's latest does not move its clock back (rate.Limiter alone would
// credit the refill between the two stamps again).
func TestOutOfOrderTimesAreNotCreditedTwice(t *testing.T) {
	b := New(0)
	l := lim(10, 10*time.Second)
	for range 10 {
		b.Take("k", l, 1, t0)
	}
	for range 4 {
		if !b.Take("k", l, 1, t0.Add(5*time.Second)).Allowed {
			t.Fatal("5 s later, 5 tokens should be back")
		}
	}
	if r := b.Take("k", l, 1, t0.Add(time.Second)); !r.Allowed || r.Remaining != 0 {
		t.Fatalf("an earlier stamp should take the last token: %+v", r)
	}
	if r := b.Take("k", l, 1, t0.Add(5*time.Second)); r.Allowed {
		t.Fatalf("the refill from 1 s to 5 s was credited twice: %+v", r)
	}
}

// TestChangedLimitKeepsWhatWasUsed: a new limit applies to the next
// request, with the tokens already used counted against it.
func TestChangedLimitKeepsWhatWasUsed(t *testing.T) {
	b := New(0)
	for range 10 {
		b.Take("k", lim(10, time.Minute), 1, t0)
	}
	raised := lim(15, time.Minute)
	for i := range 5 {
		if r := b.Take("k", raised, 1, t0); !r.Allowed {
			t.Fatalf("raised to 15, request %d refused: %+v", i+1, r)
		}
	}
	if r := b.Take("k", raised, 1, t0); r.Allowed {
		t.Fatalf("16th request under 15/1m allowed: %+v", r)
	}
	for range 3 {
		b.Take("j", lim(10, time.Minute), 1, t0)
	}
	if r := b.Take("j", lim(2, time.Minute), 1, t0); r.Allowed || r.Remaining != 0 {
		t.Fatalf("3 used, lowered to 2: %+v; want refused", r)
	}
	// A partly refilled token is not credited whole by a change: 2/10s
	// drained, 2.8 s later (0.56 token back), tightened to 2/11s.
	for range 2 {
		b.Take("h", lim(2, 10*time.Second), 1, t0)
	}
	if r := b.Take("h", lim(2, 11*time.Second), 1, t0.Add(2800*time.Millisecond)); r.Allowed {
		t.Fatalf("a tightened limit credited a partial token: %+v", r)
	}
}

// TestBucketsStayBounded: a million distinct keys leave at most the bound
// of buckets; idle buckets are swept; a dropped bucket comes back full.
func TestBucketsStayBounded(t *testing.T) {
	const bound = 1024
	b := New(bound)
	l := lim(2, time.Minute)
	for range 2 {
		b.Take("first", l, 1, t0)
	}
	if r := b.Take("first", l, 1, t0); r.Allowed {
		t.Fatal("the first key's bucket should be empty")
	}
	for i := range 1_000_000 {
		b.Take(fmt.Sprint("key-", i), l, 1, t0.Add(time.Duration(i)*time.Microsecond))
	}
	if n := b.Len(); n > bound+shardCount {
		t.Fatalf("%d buckets for 1,000,000 keys; bound %d", n, bound)
	}
	if r := b.Take("first", l, 1, t0.Add(time.Second)); !r.Allowed || r.Remaining != 1 {
		t.Fatalf("the dropped bucket came back as %+v; want full", r)
	}
	// Everything idle for a minute is swept by the next inserts.
	later := t0.Add(3 * time.Minute)
	for i := range shardCount * sweepEvery * 2 {
		b.Take(fmt.Sprint("new-", i), l, 1, later)
	}
	if n := b.Len(); n > shardCount*sweepEvery*2 {
		t.Fatalf("%d buckets after the old ones went idle; want only the %d new keys'", n, shardCount*sweepEvery*2)
	}
}

func BenchmarkTake(b *testing.B) {
	bk := New(0)
	l := lim(1_000_000_000, time.Second)
	ids := make([]string, 10_000)
	for i := range ids {
		ids[i] = fmt.Sprint("key-", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			bk.Take(ids[i%len(ids)], l, 1, t0)
			i++
		}
	})
}
