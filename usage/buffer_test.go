package usage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// sink is a Send that keeps every batch, and returns what retry says.
type sink struct {
	mu      sync.Mutex // guards batches and retry
	batches [][]keystore.Usage
	retry   func([]keystore.Usage) ([]keystore.Usage, error)
}

func (s *sink) send(_ context.Context, batch []keystore.Usage) ([]keystore.Usage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(batch))
	if s.retry != nil {
		return s.retry(batch)
	}
	return nil, nil
}

// sent returns every use sent so far, by key id.
func (s *sink) sent() map[string]keystore.Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]keystore.Usage{}
	for _, b := range s.batches {
		for _, u := range b {
			e := out[u.KeyID]
			e.KeyID, e.Count = u.KeyID, e.Count+u.Count
			if u.LastUsedAt.After(e.LastUsedAt) {
				e.LastUsedAt = u.LastUsedAt
			}
			out[u.KeyID] = e
		}
	}
	return out
}

func (s *sink) flushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.batches)
}

// dropped reads extauthz_usage_dropped_total from reg.
func dropped(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "extauthz_usage_dropped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("extauthz_usage_dropped_total not registered")
	return 0
}

func newBuffer(t *testing.T, opts Options) *Buffer {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRecordCountsEveryUse: concurrent Records over many keys are all
// counted, with the latest time per key, and a Flush empties the buffer.
func TestRecordCountsEveryUse(t *testing.T) {
	s := &sink{}
	b := newBuffer(t, Options{Send: s.send})
	base := time.Unix(1_700_000_000, 0)
	const workers, keys, uses = 8, 100, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range uses {
				for k := range keys {
					b.Record(fmt.Sprint("key", k), base.Add(time.Duration(w*uses+i)*time.Second), false)
				}
			}
		})
	}
	wg.Wait()
	b.Flush(context.Background())
	got := s.sent()
	if len(got) != keys || b.Len() != 0 {
		t.Fatalf("sent %d keys, %d left; want %d, 0", len(got), b.Len(), keys)
	}
	last := base.Add(time.Duration(workers*uses-1) * time.Second)
	for _, u := range got {
		if u.Count != workers*uses || !u.LastUsedAt.Equal(last) {
			t.Errorf("%s: count %d last used %s; want %d, %s", u.KeyID, u.Count, u.LastUsedAt, workers*uses, last)
		}
	}
	b.Flush(context.Background())
	if s.flushes() != 1 {
		t.Errorf("an empty buffer was sent: %d flushes", s.flushes())
	}
}

// TestCapDropsAreCountedAndLoggedOnce: past Max distinct keys, uses of
// further keys are dropped, counted in extauthz_usage_dropped_total, and
// logged in one line at the next flush, not one per use; uses of keys
// already buffered still count.
func TestCapDropsAreCountedAndLoggedOnce(t *testing.T) {
	s := &sink{}
	logs := &keystoretest.LogBuffer{}
	reg := prometheus.NewRegistry()
	b := newBuffer(t, Options{Send: s.send, Max: 2, Logger: zerolog.New(logs), Registerer: reg})
	at := time.Unix(1_700_000_000, 0)
	for range 3 {
		b.Record("a", at, false)
		b.Record("b", at, false)
		b.Record("c", at, false) // over the cap
		b.Record("d", at, false) // over the cap
	}
	if got := dropped(t, reg); got != 6 {
		t.Errorf("extauthz_usage_dropped_total = %v; want 6", got)
	}
	if logs.String() != "" {
		t.Fatalf("logged before the flush: %s", logs.String())
	}
	b.Flush(context.Background())
	if got := s.sent(); len(got) != 2 || got["a"].Count != 3 || got["b"].Count != 3 {
		t.Errorf("sent %+v; want a and b, 3 uses each", got)
	}
	if n := strings.Count(logs.String(), "usage buffer full"); n != 1 || !strings.Contains(logs.String(), `"dropped":6`) {
		t.Errorf("log %q: want one line naming 6 dropped uses", logs.String())
	}
	// The next interval starts afresh: room again, nothing more to log.
	b.Record("c", at, false)
	b.Flush(context.Background())
	if n := strings.Count(logs.String(), "usage buffer full"); n != 1 || s.sent()["c"].Count != 1 {
		t.Errorf("after the cap emptied: %d log lines, c sent %d times; want 1, 1", n, s.sent()["c"].Count)
	}
}

// TestFlushKeepsWhatSendReturns: what Send could not deliver is merged
// back and sent at the next flush, with the uses recorded meanwhile; what
// Send refuses without returning it is dropped and logged.
func TestFlushKeepsWhatSendReturns(t *testing.T) {
	s := &sink{}
	logs := &keystoretest.LogBuffer{}
	b := newBuffer(t, Options{Send: s.send, Logger: zerolog.New(logs)})
	at := time.Unix(1_700_000_000, 0)
	s.retry = func(batch []keystore.Usage) ([]keystore.Usage, error) { return batch, errors.New("admin unreachable") }
	b.Record("a", at, false)
	b.Flush(context.Background())
	if b.Len() != 1 {
		t.Fatalf("%d keys kept after a failed send; want 1", b.Len())
	}
	b.Record("a", at.Add(time.Second), false)
	s.retry = nil
	b.Flush(context.Background())
	if b.Len() != 0 {
		t.Fatalf("%d keys left after a good send", b.Len())
	}
	s.mu.Lock()
	last := s.batches[len(s.batches)-1]
	s.mu.Unlock()
	if len(last) != 1 || last[0].Count != 2 || !last[0].LastUsedAt.Equal(at.Add(time.Second)) {
		t.Errorf("resent %+v; want a with 2 uses, last at +1s", last)
	}

	s.retry = func([]keystore.Usage) ([]keystore.Usage, error) { return nil, errors.New("usage report refused") }
	b.Record("b", at, false)
	b.Flush(context.Background())
	if b.Len() != 0 || !strings.Contains(logs.String(), "usage report refused") {
		t.Errorf("refused batch: %d keys kept, log %q; want dropped and logged", b.Len(), logs.String())
	}
}

// TestQuotaUsesPassTheCap: the uses of a key with a quota are kept past
// the cap, at the flush and in a batch Send returns, since the sidecar's
// allowance for the key comes back only when the admin acknowledges them.
func TestQuotaUsesPassTheCap(t *testing.T) {
	s := &sink{}
	reg := prometheus.NewRegistry()
	b := newBuffer(t, Options{Send: s.send, Max: 1, Logger: zerolog.Nop(), Registerer: reg})
	at := time.Unix(1_700_000_000, 0)
	b.Record("a", at, false)
	b.Record("b", at, false) // over the cap
	b.Record("q", at, true)  // over the cap, with a quota
	b.Record("q", at, false)
	if got := dropped(t, reg); got != 1 {
		t.Errorf("extauthz_usage_dropped_total = %v; want 1 (b)", got)
	}
	s.retry = func(batch []keystore.Usage) ([]keystore.Usage, error) { return batch, errors.New("admin unreachable") }
	b.Flush(context.Background()) // a and q come back: the cap is full again
	b.Record("c", at, false)      // over the cap
	b.Record("r", at, true)       // over the cap, with a quota
	s.retry = nil
	b.Flush(context.Background())
	s.mu.Lock()
	last := s.batches[len(s.batches)-1]
	s.mu.Unlock()
	got := map[string]uint64{}
	for _, u := range last {
		got[u.KeyID] = u.Count
	}
	if len(got) != 3 || got["a"] != 1 || got["q"] != 2 || got["r"] != 1 {
		t.Errorf("sent %v after the retry; want a 1, q 2, r 1", got)
	}
	if got := dropped(t, reg); got != 2 {
		t.Errorf("extauthz_usage_dropped_total = %v; want 2 (b and c)", got)
	}
}

// TestRunFlushesEveryIntervalAndAtTheEnd: Run sends the buffer once per
// Every, nothing while it is empty, and once more when its context ends.
func TestRunFlushesEveryIntervalAndAtTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &sink{}
		b := newBuffer(t, Options{Send: s.send, Every: 10 * time.Second})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { b.Run(ctx); close(done) }()
		at := time.Now()

		b.Record("a", at, false)
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if s.flushes() != 0 {
			t.Fatalf("%d flushes before the interval", s.flushes())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s.flushes() != 1 || s.sent()["a"].Count != 1 {
			t.Fatalf("after one interval: %d flushes, %+v; want 1 with a", s.flushes(), s.sent())
		}
		time.Sleep(30 * time.Second) // nothing recorded: nothing sent
		synctest.Wait()
		if s.flushes() != 1 {
			t.Fatalf("%d flushes of an empty buffer", s.flushes()-1)
		}

		b.Record("b", at, false)
		cancel()
		<-done
		if s.flushes() != 2 || s.sent()["b"].Count != 1 {
			t.Fatalf("final flush: %d flushes, %+v; want b sent at the end", s.flushes(), s.sent())
		}
	})
}

func TestNewRequiresSend(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Send succeeded")
	}
}
