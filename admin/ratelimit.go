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

// patchRateLimit reads the body of a PATCH of a key: one member, field,
// holding a rate limit or null (no limit). It returns the new limit.
func patchRateLimit(w http.ResponseWriter, r *http.Request, field string) (*keystore.RateLimit, error) {
	body := map[string]jsontext.Value{}
	if _, err := readJSONBody(w, r, &body, false); err != nil {
		return nil, err
	}
	var fe fieldErrors
	for name := range body {
		if name != field {
			fe.add(name, "unknown field (only %s can be changed)", field)
		}
	}
	v, ok := body[field]
	switch {
	case !ok:
		fe.add(field, "required")
	case v.Kind() == 'n':
		return nil, fe.err()
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	var b rateLimitBody
	if err := strictjson.Unmarshal(v, &b, field); err != nil {
		// Name the member as a create does: "rateLimit.limit: ...".
		msg := err.Error()
		member, rest, ok := strings.Cut(msg, ": ")
		switch {
		case strings.HasPrefix(msg, field):
		case ok && !strings.ContainsAny(member, `" `):
			msg = field + "." + member + ": " + rest
		default:
			msg = field + ": " + msg
		}
		return nil, badRequest("%s", msg)
	}
	l := checkRateLimit(&fe, field, &b)
	return l, fe.err()
}

// setRateLimit stores k's new limit and answers with show(updated key).
func (s *Server) setRateLimit(w http.ResponseWriter, r *http.Request, p principal, k *keystore.Key, l *keystore.RateLimit, show func(*keystore.Key) any) error {
	k, err := s.writer.SetKeyRateLimit(k.ID, l, p.actor())
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

// updateKey is PATCH /api/v1/api-keys/{id}: {"rateLimit": {...} | null}.
func (s *Server) updateKey(w http.ResponseWriter, r *http.Request, p principal) error {
	l, err := patchRateLimit(w, r, "rateLimit")
	if err != nil {
		return err
	}
	k, err := s.ownLiveKey(r, p)
	if err != nil {
		return err
	}
	if err := checkLimitAllowed(p, "rateLimit", l, k.RateLimit, s.policy()); err != nil {
		return err
	}
	return s.setRateLimit(w, r, p, k, l, func(k *keystore.Key) any { return toNexKey(k) })
}

// updateProjectKey is PATCH /api/v1/projects/{pid}/api-keys/{kid}:
// {"rate_limit": {...} | null}, with the write permission.
func (s *Server) updateProjectKey(w http.ResponseWriter, r *http.Request, p principal) error {
	pid, err := s.projectID(r, p, permWrite)
	if err != nil {
		return err
	}
	l, err := patchRateLimit(w, r, "rate_limit")
	if err != nil {
		return err
	}
	k, err := s.projectKey(r, pid)
	if err != nil {
		return err
	}
	if err := checkLimitAllowed(p, "rate_limit", l, k.RateLimit, s.policy()); err != nil {
		return err
	}
	return s.setRateLimit(w, r, p, k, l, func(k *keystore.Key) any { return toNGKey(k) })
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
