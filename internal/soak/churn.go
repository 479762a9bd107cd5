package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// superScope is the Nexgent policy's super scope.
const superScope = "full_access"

// scopeSets are the scopes of the keys the churn driver creates.
var scopeSets = [][]string{
	{"signals"},
	{"signals", "agents"},
	{"agents"},
	{superScope},
	{"balances", "history"},
}

// churnCounts are the admin changes made, by kind.
type churnCounts struct {
	creates, createsOwned, createsExpiring int
	rotate0, rotateGrace                   int
	revokes                                int
	disables, enables                      int
	refused                                int // a 4xx: the change did not happen
	failed                                 int // transport error or 5xx: outcome unknown
	problems                               []string
}

func (c *churnCounts) total() int {
	return c.creates + c.rotate0 + c.rotateGrace + c.revokes + c.disables + c.enables
}

// churner drives the admin API: one change at a time, each recorded in the
// oracle before it is sent and acknowledged when its answer arrives.
type churner struct {
	o        *oracle
	adminURL string
	token    string
	client   *http.Client
	rng      *rand.Rand

	// targetLive is the number of live keys the driver steers towards.
	targetLive int

	mu     sync.Mutex
	counts churnCounts
	n      int // keys created
}

func (c *churner) snapshot() churnCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.counts
	out.problems = append([]string(nil), c.counts.problems...)
	return out
}

func (c *churner) note(f func(*churnCounts)) {
	c.mu.Lock()
	f(&c.counts)
	c.mu.Unlock()
}

// problem counts a refused or failed change and keeps its first reports.
func (c *churner) problem(failed bool, what string, code int, err error, body []byte) {
	c.note(func(cc *churnCounts) {
		if failed {
			cc.failed++
		} else {
			cc.refused++
		}
		if len(cc.problems) < 10 {
			msg := fmt.Sprintf("%s: status %d %s", what, code, bytes.TrimSpace(body))
			if err != nil {
				msg = fmt.Sprintf("%s: %v", what, err)
			}
			cc.problems = append(cc.problems, msg)
		}
	})
}

// call sends one admin request. code 0 means a transport error.
func (c *churner) call(ctx context.Context, method, path string, body any, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.adminURL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(data, out); err != nil {
			return 0, data, fmt.Errorf("decode %q: %w", data, err)
		}
	}
	return resp.StatusCode, data, nil
}

// run makes a change every interval until ctx ends.
func (c *churner) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.step(ctx)
	}
}

// step picks and makes one change, steering the number of live keys
// towards targetLive.
func (c *churner) step(ctx context.Context) {
	c.o.mu.RLock()
	live := len(c.o.pools[catLive])
	c.o.mu.RUnlock()
	switch {
	case live < c.targetLive/2:
		c.create(ctx)
		return
	case live > 2*c.targetLive:
		c.revoke(ctx)
		return
	}
	switch r := c.rng.IntN(100); {
	case r < 30:
		c.create(ctx)
	case r < 42:
		c.rotate(ctx, 0)
	case r < 54:
		grace := 2 * time.Second
		if c.rng.IntN(3) == 0 {
			grace = 5 * time.Second
		}
		c.rotate(ctx, grace)
	case r < 76:
		c.revoke(ctx)
	default:
		c.toggleUser(ctx)
	}
}

type createdKey struct {
	ID  string `json:"id"`
	Key string `json:"key"`
}

// create makes a key: sometimes owned by an active user, sometimes with an
// expiry a few seconds ahead.
func (c *churner) create(ctx context.Context) {
	scopes := scopeSets[c.rng.IntN(len(scopeSets))]
	c.mu.Lock()
	c.n++
	n := c.n
	c.mu.Unlock()
	body := map[string]any{"name": fmt.Sprintf("soak-%d", n), "scopes": scopes}
	var owner *user
	if c.rng.IntN(2) == 0 {
		c.o.mu.RLock()
		var active []*user
		for _, u := range c.o.users {
			if u.active {
				active = append(active, u)
			}
		}
		c.o.mu.RUnlock()
		if len(active) > 0 {
			owner = active[c.rng.IntN(len(active))]
			body["userId"] = owner.id
		}
	}
	var limit *keystore.RateLimit
	if c.rng.IntN(5) == 0 { // small enough for the load to reach it
		limit = &keystore.RateLimit{Limit: int64(1 + c.rng.IntN(3)), Duration: time.Second}
		body["rateLimit"] = map[string]any{"limit": limit.Limit, "duration": "1s"}
	}
	var quota *quotaPool
	if limit == nil && c.rng.IntN(4) == 0 { // small enough for the load to spend it
		quota = newQuotaPool(int64(20 + c.rng.IntN(60)))
		body["usageLimit"] = quota.limit
	}
	var expAt time.Time
	if c.rng.IntN(10) == 0 {
		expAt = time.Now().Add(time.Duration(3000+c.rng.IntN(5000)) * time.Millisecond).Truncate(time.Millisecond)
		body["expiresAt"] = expAt.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	send := time.Now()
	var out createdKey
	code, data, err := c.call(ctx, http.MethodPost, "/api/v1/api-keys", body, &out)
	ack := time.Now()
	if ctx.Err() != nil {
		return
	}
	if err != nil || code/100 != 2 || out.Key == "" {
		c.problem(err != nil || code >= 500 || code/100 == 2, "create", code, err, data)
		return
	}
	k := &key{n: n, id: out.ID, raw: out.Key, scopes: scopes, owner: owner, expiring: !expAt.IsZero(), limit: limit, quota: quota,
		events: []keyEvent{{kind: evCreate, send: send, ack: ack, expAt: expAt}}}
	c.o.mu.Lock()
	c.o.keys = append(c.o.keys, k)
	c.o.rebuild()
	c.o.mu.Unlock()
	c.note(func(cc *churnCounts) {
		cc.creates++
		if owner != nil {
			cc.createsOwned++
		}
		if !expAt.IsZero() {
			cc.createsExpiring++
		}
	})
}

// pickKey draws a key of one of the categories, or nil.
func (c *churner) pickKey(cats ...category) *key {
	c.o.mu.RLock()
	defer c.o.mu.RUnlock()
	var all []*key
	for _, cat := range cats {
		all = append(all, c.o.pools[cat]...)
	}
	if len(all) == 0 {
		return nil
	}
	return all[c.rng.IntN(len(all))]
}

// begin records a key change as pending before its request is sent; it
// returns the event's index and a function that undoes the record.
func (c *churner) begin(k *key, ev keyEvent, setIntent func()) (int, func()) {
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	prevRevoked, prevExpiring := k.revoked, k.expiring
	ev.send = time.Now()
	k.events = append(k.events, ev)
	i := len(k.events) - 1
	setIntent()
	c.o.rebuild()
	return i, func() {
		c.o.mu.Lock()
		defer c.o.mu.Unlock()
		k.events = append(k.events[:i], k.events[i+1:]...)
		k.revoked, k.expiring = prevRevoked, prevExpiring
		c.o.rebuild()
	}
}

func (c *churner) acked(k *key, i int, at time.Time) {
	c.o.mu.Lock()
	k.events[i].ack = at
	c.o.mu.Unlock()
}

// rotate replaces a live key: grace 0 revokes the old key at once, a grace
// period expires it at the end of the period.
func (c *churner) rotate(ctx context.Context, grace time.Duration) {
	old := c.pickKey(catLive)
	if old == nil {
		c.create(ctx)
		return
	}
	ev := keyEvent{kind: evRevoke}
	if grace > 0 {
		ev = keyEvent{kind: evExpire, grace: grace}
	}
	i, undo := c.begin(old, ev, func() {
		if grace > 0 {
			old.expiring = true
		} else {
			old.revoked = true
		}
	})
	send := old.events[i].send
	c.mu.Lock()
	c.n++
	n := c.n
	c.mu.Unlock()
	var out createdKey
	code, data, err := c.call(ctx, http.MethodPost, "/api/v1/api-keys/"+old.id+"/rotate",
		map[string]any{"gracePeriod": grace.String()}, &out)
	ack := time.Now()
	if ctx.Err() != nil {
		return
	}
	switch {
	case err != nil || code >= 500:
		// Outcome unknown: the old key's change stays pending forever
		// (either answer is accepted for it); the new key is never used.
		c.problem(true, "rotate", code, err, data)
		return
	case code != http.StatusCreated || out.Key == "":
		undo()
		c.problem(false, "rotate", code, err, data)
		return
	}
	c.acked(old, i, ack)
	k := &key{n: n, id: out.ID, raw: out.Key, scopes: old.scopes, owner: old.owner, limit: old.limit, quota: old.quota.join(), // rotation keeps the limit and shares the quota
		events: []keyEvent{{kind: evCreate, send: send, ack: ack}}}
	c.o.mu.Lock()
	c.o.keys = append(c.o.keys, k)
	c.o.rebuild()
	c.o.mu.Unlock()
	c.note(func(cc *churnCounts) {
		if grace > 0 {
			cc.rotateGrace++
		} else {
			cc.rotate0++
		}
	})
}

// revoke deletes a key that is not revoked yet.
func (c *churner) revoke(ctx context.Context) {
	k := c.pickKey(catLive, catLive, catExpiring, catDisabled)
	if k == nil {
		return
	}
	i, undo := c.begin(k, keyEvent{kind: evRevoke}, func() { k.revoked = true })
	code, data, err := c.call(ctx, http.MethodDelete, "/api/v1/api-keys/"+k.id, nil, nil)
	ack := time.Now()
	if ctx.Err() != nil {
		return
	}
	switch {
	case err != nil || code >= 500:
		c.problem(true, "revoke", code, err, data)
		return
	case code != http.StatusOK:
		undo()
		c.problem(false, "revoke", code, err, data)
		return
	}
	c.acked(k, i, ack)
	c.note(func(cc *churnCounts) { cc.revokes++ })
}

// toggleUser deactivates an active user or reactivates an inactive one.
func (c *churner) toggleUser(ctx context.Context) {
	c.o.mu.Lock()
	u := c.o.users[c.rng.IntN(len(c.o.users))]
	prev := u.active
	u.active = !prev
	u.events = append(u.events, userEvent{send: time.Now(), active: !prev})
	i := len(u.events) - 1
	c.o.rebuild()
	c.o.mu.Unlock()

	code, data, err := c.call(ctx, http.MethodPut, "/api/v1/users/"+u.id, map[string]any{"active": !prev}, nil)
	ack := time.Now()
	if ctx.Err() != nil {
		return
	}
	switch {
	case err != nil || code >= 500:
		c.problem(true, "user", code, err, data)
		return
	case code != http.StatusOK:
		c.o.mu.Lock()
		u.events = append(u.events[:i], u.events[i+1:]...)
		u.active = prev
		c.o.rebuild()
		c.o.mu.Unlock()
		c.problem(false, "user", code, err, data)
		return
	}
	c.o.mu.Lock()
	u.events[i].ack = ack
	c.o.mu.Unlock()
	c.note(func(cc *churnCounts) {
		if prev {
			cc.disables++
		} else {
			cc.enables++
		}
	})
}
