package admin

import (
	"fmt"

	"github.com/extauthz/extauthz/keystore"
)

// A key's quota in both dialects (usageLimit, usage_limit): a request
// gives the number of requests allowed, 1000; responses show it as
// {"limit": 1000, "remaining": 412}.

// UsageLimitView is a quota as responses show it.
type UsageLimitView struct {
	Limit     int64 `json:"limit"`
	Remaining int64 `json:"remaining"`
}

func toUsageLimitJSON(q *keystore.Quota) *UsageLimitView {
	if q == nil {
		return nil
	}
	return &UsageLimitView{Limit: q.Limit, Remaining: q.Remaining}
}

// checkUsageLimit validates an optional usage limit given as field.
func checkUsageLimit(fe *fieldErrors, field string, n *int64) *int64 {
	if n == nil {
		return nil
	}
	if err := keystore.CheckUsageLimit(*n); err != nil {
		fe.add(field, "%v", err)
		return nil
	}
	return n
}

// newQuota is the quota a key created with usage limit n starts with.
func newQuota(n *int64) *keystore.Quota {
	if n == nil {
		return nil
	}
	return &keystore.Quota{Limit: *n, Remaining: *n}
}

// checkQuotaAllowed refuses (403) a caller other than the operator a
// change that gives a key more requests than it has left: a new limit
// above the remaining count (a refill), or removing a quota. Setting a
// quota on a key without one, or a lower one, is tightening and the
// holder's to do. field names the request member.
func checkQuotaAllowed(p principal, field string, n *int64, cur *keystore.Quota) error {
	if p.kind == kindOperator || cur == nil {
		return nil
	}
	if n == nil || *n > cur.Remaining {
		return forbidden(fmt.Sprintf("%s: only the operator token may raise or remove a quota (%d of %d remaining)", field, cur.Remaining, cur.Limit))
	}
	return nil
}
