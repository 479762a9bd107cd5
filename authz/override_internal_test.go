package authz

import "testing"

// TestQueryOverrideCheckAllocatesNothing: a query of parameters whose
// names hold no escape and no "method" costs the override check no
// allocation (it runs on every request); names like payment_method_id are
// not refused, and an override after them is still found.
func TestQueryOverrideCheckAllocatesNothing(t *testing.T) {
	target := "/api/v1/trading-signals?page_size=50&sort_order=desc&limit=10"
	for _, q := range []string{target, target + "&payment_method_id=7&method=card"} {
		if queryOverridesMethod(q) {
			t.Fatalf("%s: refused", q)
		}
	}
	if n := testing.AllocsPerRun(100, func() { queryOverridesMethod(target) }); n != 0 {
		t.Errorf("%v allocations per check of %s; want 0", n, target)
	}
	if !queryOverridesMethod(target + "&%5Fmethod=DELETE") {
		t.Error("an encoded _method after ordinary parameters was not found")
	}
}
