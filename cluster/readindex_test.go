package cluster

import (
	"sync"
	"testing"
	"testing/synctest"
)

// TestReadRoundsNeverServeAnOlderRound: calls that arrive while a round
// is being fetched get the next round's index, never the running one's;
// calls waiting together share one fetch.
func TestReadRoundsNeverServeAnOlderRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rr readRounds
		release := make(chan uint64, 2)
		fetches := 0
		fetch := func() (uint64, error) {
			fetches++
			return <-release, nil
		}
		got := make([]uint64, 6)
		var wg sync.WaitGroup
		wg.Go(func() { got[0], _ = rr.get(fetch) })
		synctest.Wait() // round 1 is being fetched
		for i := 1; i < len(got); i++ {
			wg.Go(func() { got[i], _ = rr.get(fetch) })
		}
		synctest.Wait() // they wait for round 2
		release <- 1
		release <- 2
		wg.Wait()
		if got[0] != 1 {
			t.Fatalf("the first call got %d, want round 1's index", got[0])
		}
		for i, idx := range got[1:] {
			if idx != 2 {
				t.Fatalf("call %d, arrived during round 1, got %d, want round 2's index", i+1, idx)
			}
		}
		if fetches != 2 {
			t.Fatalf("%d fetches for two rounds", fetches)
		}
	})
}
