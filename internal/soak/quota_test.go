package main

import "testing"

// TestQuotaVerdict: an allow is admissible below limit + sidecars ×
// allowance allowed before it, a quota's 429 once the limit is reached
// (counting unanswered checks) or the sidecar allowed its allowance.
func TestQuotaVerdict(t *testing.T) {
	p := newQuotaPool(10)
	for range 4 {
		p.finish("a", true, false)
	}
	if allow, quota := p.verdict("b", p.allowedNow(), 2, 5); !allow || quota {
		t.Fatalf("4 of 10 allowed, none on b: allow %v quota %v; want an allow only", allow, quota)
	}
	p.finish("a", true, false)
	if _, quota := p.verdict("a", p.allowedNow(), 2, 5); !quota {
		t.Fatal("a allowed its allowance of 5: its 429 is admissible")
	}
	for range 4 {
		p.finish("b", false, true)
	}
	if _, quota := p.verdict("b", p.allowedNow(), 2, 5); quota {
		t.Fatal("5 allowed and 4 unanswered of 10: a 429 on b is not admissible")
	}
	p.finish("b", false, true)
	if allow, quota := p.verdict("b", p.allowedNow(), 2, 5); !allow || !quota {
		t.Fatalf("limit reached with the unanswered: allow %v quota %v; want either", allow, quota)
	}
	for range 15 {
		p.finish("b", true, false)
	}
	if allow, _ := p.verdict("b", p.allowedNow(), 2, 5); allow {
		t.Fatal("20 allowed of 10 with 2 × 5 of overshoot: an allow is wrong")
	}
	if allow, _ := p.join().verdict("b", p.allowedNow(), 2, 5); !allow {
		t.Fatal("a rotated key brings its own allowance per sidecar")
	}
}
