package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is a capped exponential backoff with jitter: the first pause is
// about Base, each further one about twice the last, at most Max; every
// pause is drawn uniformly from [d/2, d] around its nominal d, so that many
// clients failing at once do not retry in step. Set Base and Max
// (0 < Base <= Max); Reset starts again from Base. A Backoff is not safe
// for concurrent use.
type Backoff struct {
	Base, Max time.Duration
	cur       time.Duration // the nominal pause last returned; 0 after Reset
}

// Next returns the next pause.
func (b *Backoff) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Base
	} else {
		b.cur *= 2
	}
	if b.cur > b.Max {
		b.cur = b.Max
	}
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

// Reset makes the next pause about Base again, as after a success.
func (b *Backoff) Reset() { b.cur = 0 }
