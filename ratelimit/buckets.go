package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/extauthz/extauthz/keystore"
)

// DefaultMaxBuckets bounds the buckets of one process when New is given
// no bound: at ~200 bytes a bucket, 262,144 buckets are ~50 MiB.
const DefaultMaxBuckets = 1 << 18

const shardCount = 64

// sweepEvery is the least number of new buckets between two sweeps of a
// shard's idle (full) buckets.
const sweepEvery = 64

// evictSample is how many buckets of a full shard are looked at to pick
// the one to drop.
const evictSample = 8

// Buckets holds the token buckets of the keys with a rate limit. It is
// safe for concurrent use.
type Buckets struct {
	seed     maphash.Seed
	perShard int
	shards   [shardCount]shard
}

type shard struct {
	mu      sync.Mutex
	m       map[string]*bucket
	inserts int // buckets created since the last sweep
}

// bucket is one key's bucket. Every field is guarded by its shard's mutex,
// so a bucket is never dropped while a request is taking from it.
type bucket struct {
	lim   *rate.Limiter
	limit keystore.RateLimit
	// last is the latest request time the bucket has seen. A request
	// stamped earlier (its clock read before another's, its lock taken
	// after) is taken at last instead: rate.Limiter would otherwise
	// credit the refill between the two times twice.
	last time.Time
}

// Result is the outcome of Take.
type Result struct {
	// Allowed reports whether the request's tokens were taken.
	Allowed bool
	// Remaining is the number of whole tokens left.
	Remaining int64
	// Reset is the time until the bucket is full again.
	Reset time.Duration
	// RetryAfter is, on a refusal, the time until the bucket holds the
	// request's cost; zero when allowed.
	RetryAfter time.Duration
}

// New returns an empty set of buckets holding at most max buckets (0:
// DefaultMaxBuckets).
func New(max int) *Buckets {
	if max <= 0 {
		max = DefaultMaxBuckets
	}
	b := &Buckets{seed: maphash.MakeSeed(), perShard: max/shardCount + 1}
	for i := range b.shards {
		b.shards[i].m = make(map[string]*bucket)
	}
	return b
}

// Take takes cost tokens at time now from the bucket of key id, whose
// limit is l (which must be valid: see keystore.RateLimit.Validate). A
// cost above the limit takes the whole bucket; a cost of 0 takes nothing
// and is always allowed. When l differs from the limit the bucket was
// made for, the bucket is remade for l with the tokens already used
// carried over: raising a limit gives the difference at once, lowering it
// may leave none.
func (b *Buckets) Take(id string, l keystore.RateLimit, cost int64, now time.Time) Result {
	if cost > l.Limit {
		cost = l.Limit
	}
	s := &b.shards[maphash.String(b.seed, id)%shardCount]
	s.mu.Lock()
	defer s.mu.Unlock()
	bk := s.m[id]
	switch {
	case bk == nil:
		bk = s.insert(id, l, now, b.perShard)
	case bk.limit != l:
		bk.remake(l, now)
	}
	if now.Before(bk.last) {
		now = bk.last
	}
	bk.last = now
	res := Result{Allowed: cost == 0 || bk.lim.AllowN(now, int(cost))}
	tokens := bk.lim.TokensAt(now)
	res.Remaining = int64(math.Floor(tokens))
	res.Reset = timeFor(l, float64(l.Limit)-tokens)
	if !res.Allowed {
		res.RetryAfter = timeFor(l, float64(cost)-tokens)
	}
	return res
}

// Len returns the number of buckets held.
func (b *Buckets) Len() int {
	n := 0
	for i := range b.shards {
		s := &b.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func newBucket(l keystore.RateLimit, now time.Time) *bucket {
	per := rate.Limit(float64(l.Limit) / l.Duration.Seconds())
	lim := rate.NewLimiter(per, int(l.Limit))
	lim.SetBurstAt(now, int(l.Limit)) // starts full at now, not at the wall clock
	return &bucket{lim: lim, limit: l, last: now}
}

// remake replaces bk's limiter with one for l, carrying the tokens used
// over.
func (bk *bucket) remake(l keystore.RateLimit, now time.Time) {
	if now.Before(bk.last) {
		now = bk.last
	}
	// Rounded up: a partly refilled token is not credited as a whole one.
	used := math.Ceil(float64(bk.limit.Limit) - bk.lim.TokensAt(now))
	next := newBucket(l, now)
	if used = min(used, float64(l.Limit)); used > 0 {
		next.lim.AllowN(now, int(used))
	}
	*bk = *next
}

// insert adds a full bucket for id, first dropping idle buckets (every
// sweepEvery inserts or half the shard's size, whichever is more) and, in
// a shard at its bound, one bucket of a sample.
func (s *shard) insert(id string, l keystore.RateLimit, now time.Time, bound int) *bucket {
	s.inserts++
	if s.inserts >= max(sweepEvery, len(s.m)/2) {
		s.inserts = 0
		for k, bk := range s.m {
			if bk.full(now) {
				delete(s.m, k)
			}
		}
	}
	if len(s.m) >= bound {
		var victim string
		var oldest time.Time
		n := 0
		for k, bk := range s.m { // map iteration starts at a random place
			if bk.full(now) {
				victim = k
				break
			}
			if victim == "" || bk.last.Before(oldest) {
				victim, oldest = k, bk.last
			}
			if n++; n == evictSample {
				break
			}
		}
		delete(s.m, victim)
	}
	bk := newBucket(l, now)
	s.m[id] = bk
	return bk
}

// full reports whether bk has been idle long enough to have refilled
// completely, so that dropping it changes nothing.
func (bk *bucket) full(now time.Time) bool {
	return now.Sub(bk.last) >= bk.limit.Duration
}

// timeFor returns how long a bucket limited by l takes to refill tokens
// (0 for none), to the microsecond: the float arithmetic of the tokens
// would otherwise make 10 s into 10.000000001 s, and a Retry-After of 11.
func timeFor(l keystore.RateLimit, tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(math.Round(tokens/float64(l.Limit)*float64(l.Duration)/1e3)) * time.Microsecond
}
