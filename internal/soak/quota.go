package main

import "sync"

// The oracle's model of the keys' quotas. A quota is shared by the keys of
// one rotation (a rotated key carries the remaining count, and a key in
// its grace period shares it with its successor), so the oracle counts the
// allowed checks of the pool, over every sidecar, and per sidecar.
//
// With sidecars sidecars each allowed at most allowance uses of each key
// the admin has not subtracted (docs/ratelimits.md, "Quotas"):
//
//   - an allow is admissible while fewer than limit + sidecars × allowance
//     × (keys of the pool) checks of the pool were allowed before it
//     started;
//   - a quota's 429 is admissible once the pool's allowed checks (with
//     those that ended in an error, which may have been allowed) reach
//     the limit, or once the sidecar answering allowed at least allowance
//     of them (its allowance may be spent, waiting for an acknowledged
//     report).

type quotaPool struct {
	limit int64
	keys  int64 // keys of the rotation, each with its own allowance per sidecar

	mu        sync.Mutex
	allowed   int64 // checks answered allow
	maybe     int64 // checks without an answer: may have been allowed
	perTarget map[string]int64
}

func newQuotaPool(limit int64) *quotaPool {
	return &quotaPool{limit: limit, keys: 1, perTarget: map[string]int64{}}
}

// join adds a rotation's new key to the pool.
func (p *quotaPool) join() *quotaPool {
	if p != nil {
		p.mu.Lock()
		p.keys++
		p.mu.Unlock()
	}
	return p
}

// allowedNow returns the checks of the pool answered allow so far.
func (p *quotaPool) allowedNow() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.allowed
}

// verdict says whether a check on target, which started when allowedAtStart
// checks of the pool had been allowed, may be allowed and may be refused by
// the quota, given sidecars processes each with allowance.
func (p *quotaPool) verdict(target string, allowedAtStart int64, sidecars, allowance int64) (canAllow, canQuota bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	canAllow = allowedAtStart < p.limit+sidecars*allowance*p.keys
	canQuota = p.allowed+p.maybe >= p.limit || p.perTarget[target] >= allowance
	return canAllow, canQuota
}

// finish records a check's answer: allowed, or without one.
func (p *quotaPool) finish(target string, allowed, unknown bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case allowed:
		p.allowed++
		p.perTarget[target]++
	case unknown:
		p.maybe++
	}
}
