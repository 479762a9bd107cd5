package authz

import (
	"sync"

	"github.com/extauthz/extauthz/keystore"
)

// maxCachedResponses bounds each front door's allow cache. A full cache is
// emptied, so it must hold the keys a busy sidecar sees between two
// changes: at 4,096, a sidecar answering 10,000 distinct keys rebuilt the
// answer for most checks (13 % of its CPU at c=64, and the garbage). An
// entry is ~0.3 KiB (gRPC) or ~0.5 KiB (forwardAuth), so a full cache is
// ~20-35 MiB.
const maxCachedResponses = 1 << 16

// allowKey identifies an allow answer: it depends only on the key record,
// on which credential headers to strip and on the rate limit that applies
// (the key's own or, changed with the policy, the default).
type allowKey struct {
	id      string
	sources uint8
	strip   bool
	limit   keystore.RateLimit
}

// AllowCache keeps what a front door answers to an allowed check, built
// once per key and store revision.
// A new revision, or a full cache, starts an empty one, so it never holds
// more than the keys used since the last change. An entry also remembers
// the record it was built from: the store's lookup cache keeps a record's
// pointer stable until the next revision, and a different pointer means
// the record may have changed.
type AllowCache[T any] struct {
	a     *Authorizer
	build func(*Decision) (T, bool) // false: do not cache

	mu sync.RWMutex // guards re and m
	re uint64       // the store revision m was built at
	m  map[allowKey]allowEntry[T]
}

type allowEntry[T any] struct {
	key *keystore.Key
	v   T
}

// NewAllowCache returns a cache of a's allow answers; build makes the answer
// for an allowed decision with a key, and reports whether it may be cached.
func NewAllowCache[T any](a *Authorizer, build func(*Decision) (T, bool)) *AllowCache[T] {
	return &AllowCache[T]{a: a, build: build, m: make(map[allowKey]allowEntry[T])}
}

// Get returns the answer for an allow decision with a key.
func (c *AllowCache[T]) Get(d *Decision) T {
	var rev uint64
	if c.a.keys != nil {
		rev = c.a.keys.Revision()
	}
	k := allowKey{d.Key.ID, d.Sources, d.Strip, d.Limit.RateLimit}
	c.mu.RLock()
	e, ok := c.m[k]
	current := rev == c.re
	c.mu.RUnlock()
	if current && ok && e.key == d.Key {
		return e.v
	}
	dc := *d // build's argument escapes: copying here keeps the caller's d on its stack
	v, cache := c.build(&dc)
	if !cache {
		return v
	}
	c.mu.Lock()
	if rev != c.re || len(c.m) >= maxCachedResponses {
		c.re = rev
		clear(c.m)
	}
	if rev == c.re {
		c.m[k] = allowEntry[T]{d.Key, v}
	}
	c.mu.Unlock()
	return v
}

// Len reports the number of entries.
func (c *AllowCache[T]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
