package authz

import (
	"strconv"
	"time"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/ratelimit"
)

// The rate-limit response header fields, lower-case as both doors send
// them. RateLimit-Policy and RateLimit are those of the IETF httpapi
// working group's draft-ietf-httpapi-ratelimit-headers-10.
const (
	HeaderRetryAfter      = "retry-after"
	HeaderRateLimitPolicy = "ratelimit-policy"
	HeaderRateLimit       = "ratelimit"
)

// RateLimitPolicyName names the one quota policy of the RateLimit fields:
// the key's own limit.
const RateLimitPolicyName = "key"

const statusTooManyRequests = 429

// Limit is the state of a limited key's bucket after a check.
type Limit struct {
	keystore.RateLimit
	ratelimit.Result
}

// Limited reports whether d's key has a rate limit; the Limit fields are
// then set.
func (d *Decision) Limited() bool { return d.Limit.RateLimit.Limit > 0 }

// RateLimitPolicyValue is the RateLimit-Policy field of d's key:
// `"key";q=100;w=60` (quota and window in seconds) for its rate limit,
// then `"quota";q=1000` for its quota.
func (d *Decision) RateLimitPolicyValue() string {
	return string(d.AppendRateLimitPolicy(make([]byte, 0, 40)))
}

// AppendRateLimitPolicy appends RateLimitPolicyValue to b.
func (d *Decision) AppendRateLimitPolicy(b []byte) []byte {
	if d.Limited() {
		b = append(b, `"`+RateLimitPolicyName+`";q=`...)
		b = strconv.AppendInt(b, d.Limit.RateLimit.Limit, 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, int64(d.Limit.Duration/time.Second), 10)
	}
	return d.appendQuotaPolicy(b)
}

// RateLimitValue is the RateLimit field of d's key after the request:
// `"key";r=42;t=18`, the whole tokens left and the seconds until the
// bucket is full again (rounded up), then `"quota";r=412`, the quota's
// remaining count.
func (d *Decision) RateLimitValue() string {
	return string(d.AppendRateLimit(make([]byte, 0, 40)))
}

// AppendRateLimit appends RateLimitValue to b.
func (d *Decision) AppendRateLimit(b []byte) []byte {
	if d.Limited() {
		b = append(b, `"`+RateLimitPolicyName+`";r=`...)
		b = strconv.AppendInt(b, d.Limit.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(d.Limit.Reset), 10)
	}
	return d.appendQuotaState(b)
}

// RetryAfterValue is the Retry-After field of a 429: the seconds until the
// bucket holds the request's cost, rounded up, at least 1; for a quota's
// 429 the seconds until the next usage report, or "" (no field) when the
// quota is exhausted and waiting does not help.
func (d *Decision) RetryAfterValue() string {
	if d.Reason == ReasonQuotaExhausted || (d.Reason == ReasonQuotaAllowance && d.Quota.RetryAfter <= 0) {
		return ""
	}
	if d.Reason == ReasonQuotaAllowance {
		return strconv.FormatInt(max(1, ceilSeconds(d.Quota.RetryAfter)), 10)
	}
	return strconv.FormatInt(max(1, ceilSeconds(d.Limit.RetryAfter)), 10)
}

func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// keyLimit returns the limit that applies to k: its own, else the
// policy's default, else nil.
func keyLimit(pol *policy.Policy, k *keystore.Key) *keystore.RateLimit {
	if k.RateLimit != nil {
		return k.RateLimit
	}
	return pol.DefaultRateLimit()
}

// limit takes the route's cost from k's bucket. It returns false when the
// request is over the limit. A limit that is not valid (the admin never
// writes one) refuses every request rather than lift the limit.
func (a *Authorizer) limit(d *Decision, pol *policy.Policy, route *policy.Route, k *keystore.Key, now time.Time) bool {
	l := keyLimit(pol, k)
	if l == nil {
		return true
	}
	d.ShowLimit = pol.RateLimitHeaders()
	if !l.Valid() {
		d.Limit = Limit{RateLimit: keystore.RateLimit{Limit: 1, Duration: keystore.MaxRateLimitDuration}}
		d.Limit.RetryAfter, d.Limit.Reset = keystore.MaxRateLimitDuration, keystore.MaxRateLimitDuration
		return false
	}
	d.Limit = Limit{RateLimit: *l, Result: a.buckets.Take(k.ID, *l, route.RequestCost(), now)}
	return d.Limit.Allowed
}
