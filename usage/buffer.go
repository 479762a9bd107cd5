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
	// DefaultMax bounds the distinct keys buffered between two flushes.
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
	// Max is the cap on distinct keys buffered; zero means DefaultMax.
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

	mu      sync.Mutex // guards m and lost
	m       map[string]keystore.Usage
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
		m:    make(map[string]keystore.Usage),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "extauthz_usage_dropped_total",
			Help: "Key uses not reported because the usage buffer held its maximum of distinct keys.",
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

// Record notes one use of keyID at at.
func (b *Buffer) Record(keyID string, at time.Time) {
	b.mu.Lock()
	b.merge(keystore.Usage{KeyID: keyID, LastUsedAt: at, Count: 1})
	b.mu.Unlock()
}

// merge folds u into the buffer; mu is held.
func (b *Buffer) merge(u keystore.Usage) {
	if u.KeyID == "" {
		return
	}
	e, ok := b.m[u.KeyID]
	if !ok {
		if len(b.m) >= b.opts.Max {
			b.lost += u.Count
			b.dropped.Add(float64(u.Count))
			return
		}
		b.m[u.KeyID] = u
		return
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
	for _, u := range b.m {
		batch = append(batch, u)
	}
	clear(b.m)
	b.mu.Unlock()
	b.logLost(lost)

	retry, err := b.opts.Send(ctx, batch)
	if len(retry) > 0 {
		b.mu.Lock()
		for _, u := range retry {
			b.merge(u)
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
