package cluster

import "sync"

// readRounds shares one read index among the calls waiting for one: a
// round fetches an index for every call that arrived before it started,
// and a call that arrives during a round waits for the next (the running
// round may have confirmed the leadership before that call arrived, so
// its index need not cover a write acknowledged just before the call).
// A leader so verifies its leadership once per round, not once per admin
// request, and a follower asks the leader once per round.
type readRounds struct {
	mu      sync.Mutex
	next    *readRound // the round that has not started; calls join it
	running bool       // a goroutine is running rounds
}

type readRound struct {
	done chan struct{}
	idx  uint64
	err  error
}

// get returns the index of the next round to start, fetched with fetch
// (the same function at every call on one readRounds).
func (rr *readRounds) get(fetch func() (uint64, error)) (uint64, error) {
	rr.mu.Lock()
	if rr.next == nil {
		rr.next = &readRound{done: make(chan struct{})}
	}
	r := rr.next
	if !rr.running {
		rr.running = true
		go rr.run(fetch)
	}
	rr.mu.Unlock()
	<-r.done
	return r.idx, r.err
}

// run runs rounds until no call waits.
func (rr *readRounds) run(fetch func() (uint64, error)) {
	for {
		rr.mu.Lock()
		r := rr.next
		rr.next = nil
		if r == nil {
			rr.running = false
			rr.mu.Unlock()
			return
		}
		rr.mu.Unlock()
		r.idx, r.err = fetch()
		close(r.done)
	}
}
