package main

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestHistIndexRoundTrip(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 255, 256, 257, 511, 512, 1000, 123456789, 1 << 40, 1<<62 + 12345} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("index(%d) = %d out of range", v, i)
		}
		if up := histUpper(i); up < v || (v >= histLinear && float64(up-v) > float64(v)/histSub) {
			t.Fatalf("upper(index(%d)) = %d: not within precision", v, up)
		}
		if i > 0 && histUpper(i-1) >= v {
			t.Fatalf("value %d also fits bucket %d", v, i-1)
		}
		if i < prev {
			t.Fatalf("index not monotonic at %d", v)
		}
		prev = i
	}
}

func TestHistQuantiles(t *testing.T) {
	h := NewHistogram()
	r := rand.New(rand.NewPCG(1, 2))
	var vals []int64
	for range 100000 {
		v := int64(r.ExpFloat64() * 1e6)
		vals = append(vals, v)
		h.Record(time.Duration(v))
	}
	slices.Sort(vals)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.Quantile(q))
		if got < want || float64(got-want) > float64(want)/histSub+1 {
			t.Errorf("q%.3f = %d, want ~%d", q, got, want)
		}
	}
	if h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("max = %v", h.Max())
	}
	o := NewHistogram()
	o.Merge(h)
	if o.Count() != h.Count() || o.Quantile(0.99) != h.Quantile(0.99) {
		t.Error("merge changed the distribution")
	}
}
