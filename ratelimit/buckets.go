package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// DefaultMaxBuckets bounds the buckets of one process when New is given
// no bound: at ~90 bytes a bucket, 262,144 buckets are ~23 MiB.
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
	mu sync.Mutex
	m  map[string]int32 // key id -> its bucket in slab
	// slab holds the buckets; free lists its slots of dropped buckets.
	slab    []bucket
	free    []int32
	inserts int // buckets created since the last sweep
}

// bucket is one key's token bucket, held by value in its shard's slab and
// guarded by the shard's mutex, so a bucket is never dropped while a
// request is taking from it. Thousands of active keys thus add no objects
// for the garbage collector to trace, only the shard's map and slab (two
// objects per bucket, a rate.Limiter and its holder, cost a limited check
// ~1 µs of marking in the sidecar's CPU profile).
type bucket struct {
	limit keystore.RateLimit
	// tokens is the bucket's content at last, at most limit.Limit.
	tokens float64
	// last is the latest request time the bucket has seen. A request
	// stamped earlier (its clock read before another's, its lock taken
	// after) is taken at last instead, so the refill between the two
	// times is never credited twice.
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
		b.shards[i].m = make(map[string]int32)
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
	i, ok := s.m[id]
	if !ok {
		i = s.insert(id, l, now, b.perShard)
	}
	bk := &s.slab[i]
	if bk.limit != l {
		*bk = bk.remade(l, now)
	}
	tokens := bk.refill(now)
	res := Result{Allowed: tokens >= float64(cost)}
	if res.Allowed {
		tokens -= float64(cost)
	} else {
		res.RetryAfter = timeFor(l, float64(cost)-tokens)
	}
	bk.tokens = tokens
	res.Remaining = int64(math.Floor(tokens))
	res.Reset = timeFor(l, float64(l.Limit)-tokens)
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

// newBucket is a full bucket for l at now.
func newBucket(l keystore.RateLimit, now time.Time) bucket {
	return bucket{limit: l, tokens: float64(l.Limit), last: now}
}

// refill moves bk to now (or keeps it at its latest time, if now is
// earlier) and returns its tokens then: those it held plus the refill,
// N/D tokens a second, up to N.
func (bk *bucket) refill(now time.Time) float64 {
	if now.After(bk.last) {
		perSecond := float64(bk.limit.Limit) / bk.limit.Duration.Seconds()
		bk.tokens = min(float64(bk.limit.Limit), bk.tokens+now.Sub(bk.last).Seconds()*perSecond)
		bk.last = now
	}
	return bk.tokens
}

// remade returns bk made again for l, with the tokens used carried over.
func (bk bucket) remade(l keystore.RateLimit, now time.Time) bucket {
	// Rounded up: a partly refilled token is not credited as a whole one.
	used := math.Ceil(float64(bk.limit.Limit) - bk.refill(now))
	next := newBucket(l, bk.last)
	next.tokens -= max(0, min(used, float64(l.Limit)))
	return next
}

// insert adds a full bucket for id and returns its slot, first dropping
// idle buckets (every sweepEvery inserts or half the shard's size,
// whichever is more) and, in a shard at its bound, one bucket of a sample.
func (s *shard) insert(id string, l keystore.RateLimit, now time.Time, bound int) int32 {
	s.inserts++
	if s.inserts >= max(sweepEvery, len(s.m)/2) {
		s.inserts = 0
		for k, i := range s.m {
			if s.slab[i].full(now) {
				s.drop(k, i)
			}
		}
	}
	if len(s.m) >= bound {
		var victim string
		var slot int32
		var oldest time.Time
		n := 0
		for k, i := range s.m { // map iteration starts at a random place
			bk := &s.slab[i]
			if bk.full(now) {
				victim, slot = k, i
				break
			}
			if victim == "" || bk.last.Before(oldest) {
				victim, slot, oldest = k, i, bk.last
			}
			if n++; n == evictSample {
				break
			}
		}
		s.drop(victim, slot)
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
		s.slab[i] = newBucket(l, now)
	} else {
		i = int32(len(s.slab))
		s.slab = append(s.slab, newBucket(l, now))
	}
	s.m[id] = i
	return i
}

// drop removes the bucket of id, in slot i.
func (s *shard) drop(id string, i int32) {
	delete(s.m, id)
	s.free = append(s.free, i)
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
