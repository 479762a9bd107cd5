package main

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// check runs one check of k on target over [s, e] through the model: the
// verdict, then the outcome recorded.
func check(ts *takes, target string, k *key, s, e float64, allowed bool) (canAllow, canLimit bool) {
	tk := ts.begin(target, k, at(s))
	canAllow, canLimit = ts.verdict(target, k, tk, at(e))
	st := takeNone
	if allowed {
		st = takeAllowed
	}
	ts.finish(tk, at(e), st)
	return canAllow, canLimit
}

// TestOracleRateLimit: with checks one after the other, a key limited to
// 2/1s may be allowed exactly twice, then only 429; a token is back after
// 0.5 s; each sidecar has its own bucket.
func TestOracleRateLimit(t *testing.T) {
	var ts takes
	k := &key{id: "k", limit: &keystore.RateLimit{Limit: 2, Duration: time.Second}}
	for i, w := range []struct {
		s, e               float64
		allowed            bool
		canAllow, canLimit bool
	}{
		{0.00, 0.01, true, true, false},
		{0.02, 0.03, true, true, false},
		{0.04, 0.05, false, false, true}, // empty: only 429
		{0.30, 0.31, false, false, true}, // 0.52 s of refill at most... no: ~0.5 token
		{0.60, 0.61, true, true, false},  // a token back (taken at 0.00..0.03 plus 0.5 s)
		{0.62, 0.63, false, false, true},
	} {
		a, l := check(&ts, "sidecar-1", k, w.s, w.e, w.allowed)
		if a != w.canAllow || l != w.canLimit {
			t.Errorf("check %d over [%g, %g]: allow %v, 429 %v; want %v, %v", i+1, w.s, w.e, a, l, w.canAllow, w.canLimit)
		}
	}
	if a, l := check(&ts, "sidecar-2", k, 0.62, 0.63, true); !a || l {
		t.Errorf("another sidecar's bucket: allow %v, 429 %v; want a full bucket", a, l)
	}
	// Overlapping checks: either answer may be right while the order is unknown.
	var ov takes
	first := ov.begin("s", k, at(0))
	second := ov.begin("s", k, at(0))
	third := ov.begin("s", k, at(0))
	ov.finish(first, at(0.1), takeAllowed)
	ov.finish(second, at(0.1), takeAllowed)
	if a, l := ov.verdict("s", k, third, at(0.1)); !a || !l {
		t.Errorf("a third check overlapping two allowed ones: allow %v, 429 %v; want both admissible", a, l)
	}
	// An unlimited key has no model.
	if ov.begin("s", &key{id: "free"}, at(0)) != nil {
		t.Error("a key without a limit was modelled")
	}
}

// TestOracleRateLimitPrunes: a long run keeps only the recent checks of a
// key, and the answers stay admissible.
func TestOracleRateLimitPrunes(t *testing.T) {
	var ts takes
	k := &key{id: "k", limit: &keystore.RateLimit{Limit: 1, Duration: time.Second}}
	for i := range 1000 {
		s := float64(i) * 1.1 // one check every 1.1 s: always a full token
		if a, _ := check(&ts, "s", k, s, s+0.01, true); !a {
			t.Fatalf("check %d at %gs refused by the model", i, s)
		}
	}
	if n := len(ts.m[takeKey{"s", "k"}]); n > keepFor+2 {
		t.Fatalf("%d checks remembered; want about %d", n, keepFor)
	}
}
