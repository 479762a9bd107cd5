package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/extauthz/extauthz/clip"
	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/strictjson"
)

// A key's rate limit in both dialects (rateLimit, rate_limit): {"limit":
// 100, "duration": "1m"}.

// rateLimitBody is a rate limit as a request gives it; pointers tell a
// missing member from a zero one.
type rateLimitBody struct {
	Limit    *int64  `json:"limit"`
	Duration *string `json:"duration"`
}

// RateLimitView is a rate limit as responses show it.
type RateLimitView struct {
	Limit    int64  `json:"limit"`
	Duration string `json:"duration"`
}

func toRateLimitJSON(l *keystore.RateLimit) *RateLimitView {
	if l == nil {
		return nil
	}
	return &RateLimitView{Limit: l.Limit, Duration: keystore.FormatDuration(l.Duration)}
}

// checkRateLimit validates an optional rate limit given as field and
// returns it (nil when absent or invalid).
func checkRateLimit(fe *fieldErrors, field string, b *rateLimitBody) *keystore.RateLimit {
	if b == nil {
		return nil
	}
	var l keystore.RateLimit
	ok := true
	if b.Limit == nil {
		fe.add(field+".limit", "required")
		ok = false
	} else {
		l.Limit = *b.Limit
	}
	switch {
	case b.Duration == nil:
		fe.add(field+".duration", "required")
		ok = false
	default:
		d, err := keystore.ParseRateLimitDuration(*b.Duration)
		if err != nil {
			fe.add(field+".duration", "must be a duration such as \"1s\", \"1m\", \"1h\" or \"1d\", got %q", clip.String(*b.Duration, 64))
			ok = false
		}
		l.Duration = d
	}
	for _, pr := range l.Problems() {
		if ok || (pr.Field == "limit" && b.Limit != nil) {
			fe.add(field+"."+pr.Field, "%s", pr.Message)
		}
		ok = false
	}
	if !ok {
		return nil
	}
	return &l
}

// keyPatch is the body of a PATCH of a key: a new rate limit (nil: none)
// when rateSet, a new usage limit (nil: none) when quotaSet.
type keyPatch struct {
	rateSet, quotaSet bool
	rate              *keystore.RateLimit
	quota             *int64
}

// readKeyPatch reads the body of a PATCH of a key: members rateField,
// holding a rate limit or null (no limit), and quotaField, holding a
// usage limit or null (no quota); at least one of them.
func readKeyPatch(w http.ResponseWriter, r *http.Request, rateField, quotaField string) (keyPatch, error) {
	var out keyPatch
	body := map[string]jsontext.Value{}
	if _, err := readJSONBody(w, r, &body, false); err != nil {
		return out, err
	}
	var fe fieldErrors
	for name := range body {
		if name != rateField && name != quotaField {
			fe.add(name, "unknown field (only %s and %s can be changed)", rateField, quotaField)
		}
	}
	rv, rateSet := body[rateField]
	qv, quotaSet := body[quotaField]
	if !rateSet && !quotaSet {
		fe.add(rateField, "required, or %s", quotaField)
	}
	if err := fe.err(); err != nil {
		return out, err
	}
	out.rateSet, out.quotaSet = rateSet, quotaSet
	if quotaSet && qv.Kind() != 'n' {
		// Decoded as the one member of an object, so that a wrong type
		// is named as in a create: "usageLimit: must be an integer".
		m := map[string]int64{}
		if err := strictjson.Unmarshal([]byte(`{"`+quotaField+`":`+string(qv)+`}`), &m, quotaField); err != nil {
			return out, badRequest("%s", err.Error())
		}
		n := m[quotaField]
		out.quota = checkUsageLimit(&fe, quotaField, &n)
	}
	if rateSet && rv.Kind() != 'n' {
		var b rateLimitBody
		if err := strictjson.Unmarshal(rv, &b, rateField); err != nil {
			// Name the member as a create does: "rateLimit.limit: ...".
			msg := err.Error()
			member, rest, ok := strings.Cut(msg, ": ")
			switch {
			case strings.HasPrefix(msg, rateField):
			case ok && !strings.ContainsAny(member, `" `):
				msg = rateField + "." + member + ": " + rest
			default:
				msg = rateField + ": " + msg
			}
			return out, badRequest("%s", msg)
		}
		out.rate = checkRateLimit(&fe, rateField, &b)
	}
	return out, fe.err()
}

// setQuota stores the new usage limit n of k for p: a caller other than
// the operator may only lower it, and that is checked again as the change
// is applied, against the count left then (uses reported after k was read
// are not given back).
func (s *Server) setQuota(p principal, k *keystore.Key, n *int64, field string) (*keystore.Key, error) {
	if p.kind == kindOperator {
		return s.writer.SetKeyQuota(k.ID, n, p.actor())
	}
	out, err := s.writer.LowerKeyQuota(k.ID, n, p.actor())
	if errors.Is(err, keystore.ErrQuotaRaise) {
		return nil, forbidden(field + ": only the operator token may raise or remove a quota (the key has fewer requests left)")
	}
	return out, err
}

// applyKeyPatch checks that p may make the change c to k, stores it and
// answers with show(updated key).
func (s *Server) applyKeyPatch(w http.ResponseWriter, r *http.Request, p principal, k *keystore.Key, c keyPatch, rateField, quotaField string, show func(*keystore.Key) any) error {
	if c.rateSet {
		if err := checkLimitAllowed(p, rateField, c.rate, k.RateLimit, s.policy()); err != nil {
			return err
		}
	}
	if c.quotaSet {
		if err := checkQuotaAllowed(p, quotaField, c.quota, k.Quota); err != nil {
			return err
		}
	}
	var err error
	if c.rateSet {
		k, err = s.writer.SetKeyRateLimit(k.ID, c.rate, p.actor())
	}
	if err == nil && c.quotaSet {
		k, err = s.setQuota(p, k, c.quota, quotaField)
	}
	if errors.Is(err, keystore.ErrRevoked) || errors.Is(err, keystore.ErrNotFound) {
		return notFound(msgKeyNotFound)
	}
	if err != nil {
		return err
	}
	s.logChange(r, p, "key.update", http.StatusOK, k)
	jsonresp.Write(w, http.StatusOK, show(k))
	return nil
}

// updateKey is PATCH /api/v1/api-keys/{id}: {"rateLimit": {...} | null,
// "usageLimit": N | null}.
func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := readKeyPatch(w, r, "rateLimit", "usageLimit")
	if err != nil {
		return err
	}
	k, err := s.ownLiveKey(r, p)
	if err != nil {
		return err
	}
	return s.applyKeyPatch(w, r, p, k, c, "rateLimit", "usageLimit", func(k *keystore.Key) any { return toNexKey(k) })
}

// updateProjectKey is PATCH /api/v1/projects/{pid}/api-keys/{kid}:
// {"rate_limit": {...} | null, "usage_limit": N | null}, with the write
// permission.
func (s *Server) updateProjectKey(w http.ResponseWriter, r *http.Request, p principal) error {
	pid, err := s.projectID(r, p, permWrite)
	if err != nil {
		return err
	}
	c, err := readKeyPatch(w, r, "rate_limit", "usage_limit")
	if err != nil {
		return err
	}
	k, err := s.projectKey(r, pid)
	if err != nil {
		return err
	}
	return s.applyKeyPatch(w, r, p, k, c, "rate_limit", "usage_limit", func(k *keystore.Key) any { return toNGKey(k) })
}

// looser reports whether l allows more than cur: a larger burst or a
// higher sustained rate. A nil limit is unlimited.
func looser(l, cur *keystore.RateLimit) bool {
	switch {
	case cur == nil:
		return false
	case l == nil:
		return true
	}
	// l.Limit/l.Duration > cur.Limit/cur.Duration in integers: limits are
	// at most 1e9 and durations at most a day in seconds, far inside int64.
	return l.Limit > cur.Limit || l.Limit*int64(cur.Duration.Seconds()) > cur.Limit*int64(l.Duration.Seconds())
}

// checkLimitAllowed refuses (403) a caller other than the operator a limit
// looser than the one that applies to the key now (its own, else the
// policy's default): users and project keys may tighten their keys'
// limits, never lift them, so a limit the operator set or the policy
// gives holds. field names the request member.
func checkLimitAllowed(p principal, field string, l, cur *keystore.RateLimit, pol *policy.Policy) error {
	if p.kind == kindOperator {
		return nil
	}
	if cur == nil {
		cur = pol.DefaultRateLimit()
	}
	if looser(l, cur) {
		return forbidden(field + ": only the operator token may set a limit looser than " + cur.String())
	}
	return nil
}
