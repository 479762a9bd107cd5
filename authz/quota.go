package authz

import (
	"strconv"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// QuotaPolicyName names the quota's item of the RateLimit fields, beside
// RateLimitPolicyName's: `"quota";q=1000` (no window: a quota does not
// refill with time).
const QuotaPolicyName = "quota"

// Reasons of a quota's 429.
const (
	// ReasonQuotaExhausted: the key's quota is spent as replicated.
	ReasonQuotaExhausted = "quota_exhausted"
	// ReasonQuotaAllowance: this sidecar allowed its whole allowance of
	// the key's uses since its last acknowledged usage report.
	ReasonQuotaAllowance = "quota_allowance"
)

// reasonQuotaReread marks a decision that read the key's record before the
// quota ledger dropped settled entries (quota.Result.Stale): Check decides
// again, once, with the revision and the record read anew. Nothing is
// taken before the quota, so the first decision left nothing to undo.
const reasonQuotaReread = "quota_reread"

// Quota is the state of a quota'd key after a check: its limit and the
// remaining count as this process knows it.
type Quota struct {
	Limit, Remaining int64
	// RetryAfter, on a denial by the local allowance, is how long until
	// the next usage report may give it back; zero on an exhausted quota,
	// where only a refill helps.
	RetryAfter time.Duration
}

// Quotaed reports whether d's key has a quota; the Quota fields are then
// set.
func (d *Decision) Quotaed() bool { return d.Quota.Limit > 0 }

// ShowLimitFields reports whether d carries RateLimit header fields for
// the client: its key has a rate limit or a quota, and the policy shows
// them.
func (d *Decision) ShowLimitFields() bool { return d.ShowLimit && (d.Limited() || d.Quotaed()) }

// appendQuotaPolicy appends the quota's RateLimit-Policy item to b, after
// a ", " when b holds the rate limit's: its quota, no window.
func (d *Decision) appendQuotaPolicy(b []byte) []byte {
	return d.appendQuotaItem(b, ";q=", d.Quota.Limit)
}

// appendQuotaState appends the quota's RateLimit item to b: the
// remaining count, and no reset time.
func (d *Decision) appendQuotaState(b []byte) []byte {
	return d.appendQuotaItem(b, ";r=", d.Quota.Remaining)
}

// appendQuotaItem appends `"quota"` with the one parameter param and its
// value v to the list b, when d's key has a quota.
func (d *Decision) appendQuotaItem(b []byte, param string, v int64) []byte {
	if !d.Quotaed() {
		return b
	}
	if len(b) > 0 {
		b = append(b, ", "...)
	}
	b = append(b, `"`+QuotaPolicyName+`"`...)
	b = append(b, param...)
	return strconv.AppendInt(b, v, 10)
}

// takeQuota takes one use of k's quota; k has one. It returns false,
// with d set to the quota's 429, when the use is refused. rev is the
// replica's revision read before k was looked up.
func (a *Authorizer) takeQuota(d *Decision, st *state, k *keystore.Key, rev uint64) bool {
	d.ShowLimit = st.pol.RateLimitHeaders()
	r := a.quota.Take(k.ID, k.Quota, rev)
	d.Quota = Quota{Limit: k.Quota.Limit, Remaining: r.Remaining}
	if r.Allowed {
		return true
	}
	d.Kind, d.Status, d.Body, d.Strip = RateLimited, statusTooManyRequests, st.rateLimited, false
	switch {
	case r.Exhausted:
		d.Reason = ReasonQuotaExhausted
	case r.Stale:
		d.Reason, d.Quota.RetryAfter = reasonQuotaReread, a.quotaRetry
	default:
		d.Reason, d.Quota.RetryAfter = ReasonQuotaAllowance, a.quotaRetry
	}
	return false
}
