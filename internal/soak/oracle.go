package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// The oracle knows, for every key the churn driver made, every change the
// admin acknowledged (or was asked for), and so which decisions a sidecar may
// give at any moment.
//
// A change has two instants: send (just before its request went out) and ack
// (just after its answer arrived; zero while pending, and forever when the
// outcome is unknown because the request failed in transit). For a check
// that started at s and ended at e:
//
//   - a change with ack + bound ≤ s must be visible (it is "definite");
//   - a change with send ≥ e cannot be visible;
//   - any other change may or may not be visible.
//
// The churn driver is the only writer and waits for each answer before the
// next change, so a key's changes are in revision order and the sidecar's
// state is always a prefix of them: the admissible states are the definite
// prefix plus any number of the uncertain changes that follow, in order.
// Keys and their owners are judged independently, which admits a few mixed
// states the sidecar could not show (lenient, never a false "wrong").

// evKind is what a change does to a key.
type evKind uint8

const (
	evCreate evKind = iota // the key exists (with expAt when it was created with an expiry)
	evRevoke               // revoked (DELETE, or rotation with gracePeriod 0s)
	evExpire               // rotation with a grace period: expires at about send+grace..ack+grace
)

type keyEvent struct {
	kind      evKind
	send, ack time.Time // ack zero: no answer (yet)
	expAt     time.Time // evCreate: the expiresAt sent (zero: none)
	grace     time.Duration
}

// keyState is a key as a sidecar may hold it. An expiry instant is only known
// to lie in [expLo, expHi] (expHiOpen: no upper bound yet).
type keyState struct {
	exists, revoked bool
	hasExp          bool
	expLo, expHi    time.Time
	expHiOpen       bool
}

func (st keyState) apply(ev keyEvent) keyState {
	switch ev.kind {
	case evCreate:
		st.exists = true
		if !ev.expAt.IsZero() {
			st.hasExp, st.expLo, st.expHi, st.expHiOpen = true, ev.expAt, ev.expAt, false
		}
	case evRevoke:
		st.revoked = true
	case evExpire:
		// The admin sets min(old expiry, now+grace), now ∈ [send, ack].
		lo, hi, open := ev.send.Add(ev.grace), ev.ack.Add(ev.grace), ev.ack.IsZero()
		if !st.hasExp {
			st.hasExp, st.expLo, st.expHi, st.expHiOpen = true, lo, hi, open
			break
		}
		if lo.Before(st.expLo) {
			st.expLo = lo
		}
		switch {
		case st.expHiOpen && !open:
			st.expHi, st.expHiOpen = hi, false
		case !st.expHiOpen && !open && hi.Before(st.expHi):
			st.expHi = hi
		}
	}
	return st
}

// validity says whether a check evaluated at some instant of [s, e] may find
// the key valid and may find it invalid. slack widens the expiry window.
func (st keyState) validity(s, e time.Time, slack time.Duration) (canValid, canInvalid bool) {
	if !st.exists || st.revoked {
		return false, true
	}
	if !st.hasExp {
		return true, false
	}
	if e.Before(st.expLo.Add(-slack)) {
		return true, false
	}
	if !st.expHiOpen && !s.Before(st.expHi.Add(slack)) {
		return false, true
	}
	return true, true
}

// admissible returns the key states a check over [s, e] may see.
func admissible(events []keyEvent, s, e time.Time, bound time.Duration) []keyState {
	var st keyState
	var out []keyState
	uncertain := false
	for _, ev := range events {
		if !uncertain && !ev.ack.IsZero() && !s.Before(ev.ack.Add(bound)) {
			st = st.apply(ev)
			continue
		}
		if !ev.send.Before(e) {
			break
		}
		if !uncertain {
			out = append(out, st)
			uncertain = true
		}
		st = st.apply(ev)
		out = append(out, st)
	}
	if !uncertain {
		out = append(out, st)
	}
	return out
}

type userEvent struct {
	send, ack time.Time
	active    bool
}

// userActivity says whether a check over [s, e] may see the user active and
// may see it inactive. A user is active until deactivated.
func userActivity(events []userEvent, s, e time.Time, bound time.Duration) (canActive, canInactive bool) {
	active := true
	uncertain := false
	mark := func(a bool) {
		if a {
			canActive = true
		} else {
			canInactive = true
		}
	}
	for _, ev := range events {
		if !uncertain && !ev.ack.IsZero() && !s.Before(ev.ack.Add(bound)) {
			active = ev.active
			continue
		}
		if !ev.send.Before(e) {
			break
		}
		if !uncertain {
			mark(active)
			uncertain = true
		}
		active = ev.active
		mark(active)
	}
	if !uncertain {
		mark(active)
	}
	return canActive, canInactive
}

// category is how the load generator picks keys, from the churn driver's
// latest intent (not from what a sidecar shows at the moment).
type category uint8

const (
	catLive     category = iota // not revoked, no expiry, owner (if any) active
	catRevoked                  // revoked by DELETE or by a rotation with grace 0s
	catExpiring                 // retired by a rotation with a grace period, or created with a short expiry
	catDisabled                 // owner deactivated
	catUnknown                  // well-formed, never issued
	numCategories
)

var categoryNames = [numCategories]string{"live", "revoked", "expiring/expired", "owner disabled", "unknown"}

// loadMix is the share of checks per category (of those with keys).
var loadMix = [numCategories]int{catLive: 50, catRevoked: 15, catExpiring: 10, catDisabled: 10, catUnknown: 15}

type user struct {
	id     string
	events []userEvent
	active bool // latest intent
}

type key struct {
	n      int // creation order, for reports
	id     string
	raw    string
	scopes []string
	owner  *user
	events []keyEvent
	limit  *keystore.RateLimit // the key's rate limit, set at creation; nil: none
	quota  *quotaPool          // the key's quota, set at creation, shared by its rotations; nil: none

	// latest intent
	revoked  bool
	expiring bool
}

func (k *key) category() category {
	switch {
	case k.revoked:
		return catRevoked
	case k.expiring:
		return catExpiring
	case k.owner != nil && !k.owner.active:
		return catDisabled
	}
	return catLive
}

// grants says whether the key's scopes admit a route needing scope.
func (k *key) grants(scope string) bool {
	return slices.Contains(k.scopes, superScope) || slices.Contains(k.scopes, scope)
}

type oracle struct {
	bound, slack time.Duration
	t0           time.Time

	mu      sync.RWMutex
	keys    []*key
	users   []*user
	pools   [numCategories][]*key
	unknown []string

	takes takes // the checks of limited keys, per sidecar

	// sidecars and quotaAllowance bound a quota's overshoot (quotaPool).
	sidecars, quotaAllowance int64
}

func newOracle(bound, slack time.Duration, t0 time.Time, users int) *oracle {
	o := &oracle{bound: bound, slack: slack, t0: t0}
	for i := range users {
		o.users = append(o.users, &user{id: fmt.Sprintf("soak-user-%d", i+1), active: true})
	}
	for range 256 {
		o.unknown = append(o.unknown, randomKey())
	}
	return o
}

// randomKey is a well-formed Nexgent key (nex_ + 32 alphanumerics) that was
// never issued: 190 bits of randomness.
func randomKey() string {
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	b.WriteString("nex_")
	for range 32 {
		b.WriteByte(alnum[rand.IntN(len(alnum))])
	}
	return b.String()
}

// rebuild recomputes the load pools; o.mu is held for writing.
func (o *oracle) rebuild() {
	for c := range o.pools {
		o.pools[c] = o.pools[c][:0]
	}
	for _, k := range o.keys {
		c := k.category()
		o.pools[c] = append(o.pools[c], k)
	}
}

// pick draws a key for one check: a known key, or (k == nil) an unknown raw key.
func (o *oracle) pick(rng *rand.Rand) (k *key, raw string, cat category) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	total := 0
	for c, w := range loadMix {
		if category(c) == catUnknown || len(o.pools[c]) > 0 {
			total += w
		}
	}
	r := rng.IntN(total)
	for c, w := range loadMix {
		if category(c) != catUnknown && len(o.pools[c]) == 0 {
			continue
		}
		if r < w {
			cat = category(c)
			break
		}
		r -= w
	}
	if cat == catUnknown {
		return nil, o.unknown[rng.IntN(len(o.unknown))], catUnknown
	}
	p := o.pools[cat]
	k = p[rng.IntN(len(p))]
	return k, k.raw, cat
}

// expect returns whether a check of k over [s, e] may find it valid and may
// find it invalid. k == nil is an unknown key: never valid.
func (o *oracle) expect(k *key, s, e time.Time) (canValid, canInvalid bool) {
	if k == nil {
		return false, true
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, st := range admissible(k.events, s, e, o.bound) {
		v, i := st.validity(s, e, o.slack)
		canValid = canValid || v
		canInvalid = canInvalid || i
	}
	if k.owner != nil {
		act, inact := userActivity(k.owner.events, s, e, o.bound)
		canValid = canValid && act
		canInvalid = canInvalid || inact
	}
	return canValid, canInvalid
}

// history describes a key's changes relative to the start of the run, for
// the report of a wrong decision.
func (o *oracle) history(k *key) string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	rel := func(t time.Time) string {
		if t.IsZero() {
			return "none"
		}
		return fmt.Sprintf("%.3fs", t.Sub(o.t0).Seconds())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "key #%d id=%s prefix=%s scopes=%v", k.n, k.id, k.raw[:8], k.scopes)
	if k.limit != nil {
		fmt.Fprintf(&b, " rate limit %s", k.limit)
	}
	if k.quota != nil {
		fmt.Fprintf(&b, " quota %d (%d allowed so far)", k.quota.limit, k.quota.allowedNow())
	}
	for _, ev := range k.events {
		switch ev.kind {
		case evCreate:
			fmt.Fprintf(&b, "; create sent %s ack %s", rel(ev.send), rel(ev.ack))
			if !ev.expAt.IsZero() {
				fmt.Fprintf(&b, " expiresAt %s", rel(ev.expAt))
			}
		case evRevoke:
			fmt.Fprintf(&b, "; revoke sent %s ack %s", rel(ev.send), rel(ev.ack))
		case evExpire:
			fmt.Fprintf(&b, "; rotate(grace %v) sent %s ack %s", ev.grace, rel(ev.send), rel(ev.ack))
		}
	}
	if u := k.owner; u != nil {
		fmt.Fprintf(&b, "; owner %s", u.id)
		for _, ev := range u.events {
			fmt.Fprintf(&b, " [active=%v sent %s ack %s]", ev.active, rel(ev.send), rel(ev.ack))
		}
	}
	return b.String()
}
