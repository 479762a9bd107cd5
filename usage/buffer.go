package usage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/metrics"
)

// Defaults of Options.
const (
	DefaultEvery = 10 * time.Second
	// DefaultMax bounds the distinct keys without a quota buffered between
	// two flushes.
	DefaultMax = 100_000
	// DefaultFinalFlush bounds the flush Run makes when its context ends.
	DefaultFinalFlush = 2 * time.Second
)

// SendFunc delivers a batch of usage. It returns what it could not
// deliver and should be tried again (an unreachable admin), which the
// buffer keeps for the next flush, and an error that says why something
// was not delivered; what it neither delivered nor returned is dropped.
type SendFunc func(ctx context.Context, batch []keystore.Usage) (retry []keystore.Usage, err error)

// Options configures New.
type Options struct {
	// Send delivers each flush; required.
	Send SendFunc
	// Every is the interval between flushes; zero means DefaultEvery.
	Every time.Duration
	// Max is the cap on distinct keys without a quota buffered; zero
	// means DefaultMax.
	Max int
	// FinalFlush bounds the last flush, when Run's context ends; zero
	// means DefaultFinalFlush.
	FinalFlush time.Duration
	// Logger receives a line per flush that dropped or failed; the caller
	// names the component.
	Logger zerolog.Logger
	// Registerer, when not nil, gets extauthz_usage_dropped_total.
	Registerer prometheus.Registerer
}

// Buffer accumulates, per key, the latest use and the sum of counts
// between flushes. Record and Flush are safe for concurrent use.
type Buffer struct {
	opts    Options
	log     zerolog.Logger
	dropped prometheus.Counter

	mu      sync.Mutex // guards m, plain and lost
	m       map[string]pending
	plain   int        // the keys of m without a quota, which Max bounds
	lost    uint64     // uses dropped at the cap since the last flush, for its log line
	flushMu sync.Mutex // one flush at a time, so that a retried batch keeps its order
}

// New returns an empty buffer.
func New(opts Options) (*Buffer, error) {
	if opts.Send == nil {
		return nil, fmt.Errorf("usage: a Send function is required")
	}
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Max <= 0 {
		opts.Max = DefaultMax
	}
	if opts.FinalFlush <= 0 {
		opts.FinalFlush = DefaultFinalFlush
	}
	b := &Buffer{
		opts: opts,
		log:  opts.Logger,
		m:    make(map[string]pending),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "extauthz_usage_dropped_total",
			Help: "Uses of keys without a quota not reported because the usage buffer held its maximum of such keys.",
		}),
	}
	if err := metrics.Register(opts.Registerer, "usage", b.dropped); err != nil {
		return nil, err
	}
	return b, nil
}

// NewDiscard returns a buffer whose flushes deliver nowhere, logged and
// counted nowhere: the doors record into it as into any buffer (for
// benchmarks and tests of the decision, or a process that keeps no usage).
func NewDiscard() *Buffer {
	b, err := New(Options{Send: func(context.Context, []keystore.Usage) ([]keystore.Usage, error) { return nil, nil }, Logger: zerolog.Nop()})
	if err != nil {
		panic(err) // New fails only without Send or on a registration, neither of which is here
	}
	return b
}

// pending is a key's buffered usage, and whether the key has a quota.
type pending struct {
	keystore.Usage
	quota bool
}

// Record notes one use of keyID at at. A use of a key with a quota is
// never dropped, and does not count against the cap: the admin subtracts it from the quota, and
// the sidecar's allowance for the key (package quota) comes back only
// when the admin has acknowledged it, so a dropped use would hold that
// allowance for good. Those keys are bounded by the quota ledger instead
// (quota.Options.MaxKeys).
func (b *Buffer) Record(keyID string, at time.Time, quota bool) {
	b.mu.Lock()
	b.merge(keystore.Usage{KeyID: keyID, LastUsedAt: at, Count: 1}, quota)
	b.mu.Unlock()
}

// merge folds u into the buffer; mu is held.
func (b *Buffer) merge(u keystore.Usage, quota bool) {
	if u.KeyID == "" {
		return
	}
	e, ok := b.m[u.KeyID]
	if !ok {
		if !quota {
			if b.plain >= b.opts.Max {
				b.lost += u.Count
				b.dropped.Add(float64(u.Count))
				return
			}
			b.plain++
		}
		b.m[u.KeyID] = pending{u, quota}
		return
	}
	if quota && !e.quota {
		b.plain--
		e.quota = true
	}
	if u.LastUsedAt.After(e.LastUsedAt) {
		e.LastUsedAt = u.LastUsedAt
	}
	e.Count += u.Count
	b.m[u.KeyID] = e
}

// Len returns how many distinct keys are buffered.
func (b *Buffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// Run flushes the buffer every Every until ctx is done, then once more
// within FinalFlush.
func (b *Buffer) Run(ctx context.Context) {
	t := time.NewTicker(b.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.FinalFlush)
			b.Flush(fctx)
			cancel()
			return
		case <-t.C:
			b.Flush(ctx)
		}
	}
}

// Flush hands the buffer to Send and keeps what Send returns for the next
// flush (within the cap).
func (b *Buffer) Flush(ctx context.Context) {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	b.mu.Lock()
	lost := b.lost
	b.lost = 0
	if len(b.m) == 0 {
		b.mu.Unlock()
		b.logLost(lost)
		return
	}
	batch := make([]keystore.Usage, 0, len(b.m))
	var quotas map[string]bool // the keys of batch with a quota, for a retry
	for _, p := range b.m {
		batch = append(batch, p.Usage)
		if p.quota {
			if quotas == nil {
				quotas = make(map[string]bool)
			}
			quotas[p.KeyID] = true
		}
	}
	clear(b.m)
	b.plain = 0
	b.mu.Unlock()
	b.logLost(lost)

	retry, err := b.opts.Send(ctx, batch)
	if len(retry) > 0 {
		b.mu.Lock()
		for _, u := range retry {
			b.merge(u, quotas[u.KeyID])
		}
		b.mu.Unlock()
	}
	switch {
	case err == nil:
	case len(retry) > 0:
		b.log.Debug().Err(err).Int("keys", len(retry)).Msg("usage report failed; kept for the next flush")
	default:
		b.log.Warn().Err(err).Int("keys", len(batch)).Msg("usage report refused")
	}
}

func (b *Buffer) logLost(n uint64) {
	if n > 0 {
		b.log.Warn().Uint64("dropped", n).Int("max_keys", b.opts.Max).Msg("usage buffer full: uses of further keys dropped")
	}
}
