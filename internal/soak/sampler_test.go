package main

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestGrowthPer1000 checks that growthPer1000 averages smoothSamples at each
// end after the baseline, ignores failed scrapes and earlier samples, and
// divides by the revisions between the two means.
func TestGrowthPer1000(t *testing.T) {
	s := &series{name: "admin"}
	s.add(sample{at: 0, anon: 100 << 20, heapGoal: 100 << 20, revision: 0}) // before the baseline
	n := 3 * smoothSamples
	for i := range n {
		at := time.Duration(10+i) * time.Second
		// Per revision 2 KiB of anonymous and 3 KiB of file-backed RSS, 1 KiB
		// of heap goal and 4 KiB of bbolt file; 10 revisions per sample. Every
		// odd sample's anonymous memory is 1 MiB higher (a GC sawtooth),
		// which the means at both ends cancel.
		rev := float64(10 * i)
		x := sample{at: at, revision: 1000 + rev, anon: 8<<20 + int64(2048*rev), file: 20<<20 + int64(3072*rev), heapGoal: 4<<20 + 1024*rev, dbSize: 1<<20 + int64(4096*rev)}
		if i%2 == 1 {
			x.anon += 1 << 20
		}
		s.add(x)
		if i == n-2 {
			s.add(sample{at: at, err: errors.New("scrape failed"), anon: 1 << 40})
		}
	}
	g, ok := s.growthPer1000(10 * time.Second)
	if !ok {
		t.Fatal("no growth computed")
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"anon", g.anon, 2000}, {"file-backed", g.file, 3000}, {"heap goal", g.heapGoal, 1000}, {"bbolt file", g.dbSize, 4000}} {
		if math.Abs(c.got-c.want) > 0.01 {
			t.Errorf("%s: %.2f KiB per 1,000 changes, want %.0f", c.name, c.got, c.want)
		}
	}

	few := &series{name: "sidecar"}
	for i := range 2*smoothSamples - 1 {
		few.add(sample{at: time.Duration(i) * time.Second, revision: float64(i)})
	}
	if _, ok := few.growthPer1000(0); ok {
		t.Error("growth computed from fewer than 2 × smoothSamples samples")
	}
	still := &series{name: "idle"}
	for i := range 2 * smoothSamples {
		still.add(sample{at: time.Duration(i) * time.Second, revision: 7, anon: int64(i)})
	}
	if _, ok := still.growthPer1000(0); ok {
		t.Error("growth computed without any change")
	}
}
