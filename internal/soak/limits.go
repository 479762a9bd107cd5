package main

import (
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// The oracle's model of the per-key rate limits. Each sidecar has its own
// bucket per key (limit tokens, refilled evenly, every check costs 1), and
// a check takes a token at some unknown instant of its span [s, e]. For a
// check of a limited key on one sidecar the oracle bounds the tokens the
// bucket can hold when it is evaluated:
//
//   - at most: only the allowed checks that ended before s took tokens,
//     each as early as it could (its start), and the check is evaluated at
//     e;
//   - at least: every check that may have come first (started before e,
//     and allowed or still without an answer) took a token as late as it
//     could (its end, but not after s), and the check is evaluated at s.
//
// Taking later and evaluating earlier only ever leaves fewer tokens, so a
// 429 is admissible exactly when the fewest tokens are under 1, and an
// allow when the most are at least 1.

type takeState uint8

const (
	takePending takeState = iota // no answer (yet): may have taken a token
	takeAllowed
	takeNone // refused for another reason, or a 429: took nothing
)

type bucketTake struct {
	s, e  time.Time
	state takeState
}

type takeKey struct{ target, keyID string }

// takes are the checks of limited keys, per sidecar and key.
type takes struct {
	mu     sync.Mutex
	m      map[takeKey][]*bucketTake
	pruned map[takeKey]time.Time // checks that ended before this are forgotten
}

// keepFor is how many durations of a key's limit its finished checks are
// remembered. What came before is taken as leaving the bucket anywhere
// from empty (for the fewest tokens) to full (for the most): lenient, and
// the memory of a long run stays bounded.
const keepFor = 20

// begin records a check of k on target starting at s; nil for a key
// without a limit.
func (ts *takes) begin(target string, k *key, s time.Time) *bucketTake {
	if k == nil || k.limit == nil {
		return nil
	}
	tk := &bucketTake{s: s}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = map[takeKey][]*bucketTake{}
	}
	id := takeKey{target, k.id}
	list := ts.m[id]
	if cut := s.Add(-keepFor * k.limit.Duration); len(list) > 0 && !list[0].e.IsZero() && list[0].e.Before(cut) {
		kept := list[:0]
		for _, o := range list {
			if o.state == takePending || !o.e.Before(cut) {
				kept = append(kept, o)
			}
		}
		list = kept
		if ts.pruned == nil {
			ts.pruned = map[takeKey]time.Time{}
		}
		ts.pruned[id] = cut
	}
	ts.m[id] = append(list, tk)
	return tk
}

// finish records the end of tk's check and whether it took a token.
// Without an answer (a transport error) it stays pending.
func (ts *takes) finish(tk *bucketTake, e time.Time, st takeState) {
	if tk == nil {
		return
	}
	ts.mu.Lock()
	tk.e, tk.state = e, st
	ts.mu.Unlock()
}

// verdict says whether tk's check of k on target, which ended at e, may be
// allowed by the bucket and may be refused with 429.
func (ts *takes) verdict(target string, k *key, tk *bucketTake, e time.Time) (canAllow, canLimit bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var early, late []time.Time // consumption instants for the most and the fewest tokens
	id := takeKey{target, k.id}
	for _, o := range ts.m[id] {
		if o == tk || o.state == takeNone || !o.s.Before(e) {
			continue
		}
		if o.state == takeAllowed && !o.e.IsZero() && !o.e.After(tk.s) {
			early = append(early, o.s)
		}
		at := o.e
		if at.IsZero() || at.After(tk.s) {
			at = tk.s
		}
		late = append(late, at)
	}
	from, pruned := ts.pruned[id]
	most := bucketTokens(*k.limit, float64(k.limit.Limit), from, early, e)
	start := float64(k.limit.Limit)
	if pruned {
		start = 0
	}
	fewest := bucketTokens(*k.limit, start, from, late, tk.s)
	// The sidecar's float arithmetic may land a hair off a whole token.
	const eps = 1e-6
	return most >= 1-eps, fewest < 1+eps
}

// bucketTokens returns the tokens of a bucket limited by l that held start
// tokens at from (zero: before the first take), after one token was taken
// at each of at (any order), at time t.
func bucketTokens(l keystore.RateLimit, start float64, from time.Time, at []time.Time, t time.Time) float64 {
	sorted := append([]time.Time(nil), at...)
	for i := 1; i < len(sorted); i++ { // insertion sort: a key's checks are few
		for j := i; j > 0 && sorted[j].Before(sorted[j-1]); j-- {
			sorted[j], sorted[j-1] = sorted[j-1], sorted[j]
		}
	}
	n := float64(l.Limit)
	rate := n / l.Duration.Seconds()
	tokens, last := start, from
	for _, c := range sorted {
		if !last.IsZero() && c.After(last) {
			tokens = min(n, tokens+c.Sub(last).Seconds()*rate)
		}
		tokens = max(0, tokens-1)
		if last.IsZero() || c.After(last) {
			last = c
		}
	}
	if !last.IsZero() && t.After(last) {
		tokens = min(n, tokens+t.Sub(last).Seconds()*rate)
	}
	return tokens
}
