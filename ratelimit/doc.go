// Package ratelimit keeps one token bucket per key id, for the per-key rate
// limits a sidecar enforces by itself.
//
// A key limited to N requests per duration D has a bucket of N tokens,
// refilled evenly at N/D tokens per second; a request takes its route's cost in tokens or is
// refused. Buckets exist only for keys used recently: a bucket idle for
// its whole duration has refilled completely, so it is dropped and a new,
// full one takes its place on the key's next request, which is exactly
// the same bucket. Only when more keys are active at once than the bound
// given to New is a bucket that is not yet full dropped (the least
// recently used of a small sample); that key then starts again with a
// full bucket. Each sidecar has its own buckets: N sidecars serving one
// key allow it up to N times its limit.
//
// The clock is the caller's: Take is given the time of the request, so
// tests step a fake clock and nothing here reads the time itself.
package ratelimit
