package replication

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
)

// Retention defaults applied by RunCompactor.
const (
	// DefaultRetentionKeep is the number of newest change-log entries kept
	// when RetentionOptions has neither Keep nor MaxAge.
	DefaultRetentionKeep = 100_000
	// DefaultCompactEvery is the compaction interval when Every is zero.
	DefaultCompactEvery = time.Minute
)

// RetentionOptions bound the change log a watch can resume from. A
// follower whose revision fell out of it takes a new snapshot.
type RetentionOptions struct {
	// Keep is how many of the newest entries are always kept. Zero, with
	// MaxAge also zero, means DefaultRetentionKeep; negative means no
	// count bound (MaxAge alone decides; both unbounded disables
	// compaction).
	Keep int
	// MaxAge drops entries older than this even within Keep. Zero means no
	// age bound.
	MaxAge time.Duration
	// Every is the interval between compactions; zero means
	// DefaultCompactEvery.
	Every time.Duration
}

// RunCompactor compacts store's change log at once and then every
// opts.Every until ctx is done. Errors are logged and retried at the next
// tick; it never returns before ctx is done.
func RunCompactor(ctx context.Context, store *keystore.Store, opts RetentionOptions, log zerolog.Logger) {
	if opts.Keep == 0 && opts.MaxAge <= 0 {
		opts.Keep = DefaultRetentionKeep
	}
	if opts.Keep < 0 {
		opts.Keep = 0
	}
	if opts.Every <= 0 {
		opts.Every = DefaultCompactEvery
	}
	if opts.Keep == 0 && opts.MaxAge <= 0 {
		log.Info().Msg("change-log compaction disabled")
		<-ctx.Done()
		return
	}
	t := time.NewTicker(opts.Every)
	defer t.Stop()
	for {
		n, err := store.Compact(opts.Keep, opts.MaxAge)
		switch {
		case err != nil:
			log.Warn().Err(err).Msg("change-log compaction failed")
		case n > 0:
			oldest, _ := store.OldestRevision()
			log.Info().Int("removed", n).Uint64("oldest", oldest).Msg("change log compacted")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
