package backoff

import (
	"testing"
	"time"
)

// TestCappedAndJittered: every pause lies in [d/2, d] of its nominal d,
// which starts at Base, doubles, and stops at Max.
func TestCappedAndJittered(t *testing.T) {
	b := Backoff{Base: 100 * time.Millisecond, Max: time.Second}
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, n := range nominal {
		n *= time.Millisecond
		d := b.Next()
		if b.cur != n {
			t.Fatalf("step %d: nominal pause %v; want %v", i, b.cur, n)
		}
		if d < n/2 || d > n {
			t.Fatalf("step %d: pause %v outside [%v, %v]", i, d, n/2, n)
		}
	}
	for range 20 {
		if d := b.Next(); d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("capped pause %v outside [500ms, 1s]", d)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond || d < 50*time.Millisecond {
		t.Errorf("after Reset: %v; want within [50ms, 100ms]", d)
	}
}

// TestJitterSpreads: the pauses are not all the same.
func TestJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		b := Backoff{Base: time.Second, Max: time.Second}
		seen[b.Next()] = true
	}
	if len(seen) < 10 {
		t.Errorf("50 first pauses took %d distinct values; want jitter", len(seen))
	}
}

// TestBaseEqualsMax is the follower's case of a MaxBackoff below the
// default base: Base is min(100ms, Max).
func TestBaseEqualsMax(t *testing.T) {
	b := Backoff{Base: 50 * time.Millisecond, Max: 50 * time.Millisecond}
	for range 10 {
		if d := b.Next(); d < 25*time.Millisecond || d > 50*time.Millisecond {
			t.Fatalf("pause %v outside [25ms, 50ms]", d)
		}
	}
}
