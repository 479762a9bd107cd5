package replication

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// Follower faults that the end-to-end tests in cmd/extauthz cannot reach
// through the binary: clock jumps (the binary uses the real clock) and a
// watch line over MaxLineSize written by a fake admin.

func clockedFollower(t *testing.T, adminURL string, clock *keystoretest.Clock, max time.Duration, mods ...followerOpt) *Follower {
	t.Helper()
	mods = append([]followerOpt{func(o *FollowerOptions) {
		o.MaxStaleness = max
		o.Now = clock.Now
	}}, mods...)
	f, _ := newFollower(t, t.TempDir(), adminURL, mods...)
	return f
}

// clocked is an admin store with one key, its replication server behind a
// front, and a follower of it on a fake clock with MaxStaleness one minute:
// the setup of the clock and staleness tests. The front is in memory, so
// that the tests run in a testing/synctest bubble, where heartbeats and
// backoffs pass on the bubble's clock.
type clocked struct {
	admin *keystore.Store
	key   testKey
	fr    *memFront
	clock *keystoretest.Clock
	f     *Follower
}

func newClocked(t *testing.T) *clocked {
	t.Helper()
	c := &clocked{admin: newAdminStore(t), clock: keystoretest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}
	c.key = createKey(t, c.admin, nil)
	c.fr = newMemFront(t, newServer(t, c.admin))
	client := c.fr.client()
	t.Cleanup(client.CloseIdleConnections)
	c.f = clockedFollower(t, c.fr.url(), c.clock, time.Minute, func(o *FollowerOptions) { o.HTTPClient = client })
	return c
}

// followOnce runs the follower until it holds the admin's state and stops
// its watch: from then on no heartbeat moves its clock reading.
func (c *clocked) followOnce(t *testing.T) {
	t.Helper()
	stop := run(t, c.f)
	caughtUp(t, c.f, c.admin)
	stop()
}

// TestFaultClockJumpForward: a jump past MaxStaleness while nothing
// confirms the replica makes it stale at once (lookups still answer; the
// front doors turn 503), and the next heartbeat makes it current again.
func TestFaultClockJumpForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		k, clock, f := c.key, c.clock, c.f
		c.followOnce(t) // no heartbeat can move the clock reading after this
		if err := f.Healthy(); err != nil {
			t.Fatalf("Healthy() = %v right after following", err)
		}

		clock.Add(time.Minute + time.Second)
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("after a jump past MaxStaleness Healthy() = %v; want ErrStale", err)
		}
		if s := f.Staleness(); s < time.Minute {
			t.Errorf("Staleness() = %v after a 61s jump", s)
		}
		clock.Add(365 * 24 * time.Hour)
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("after a one-year jump Healthy() = %v; want ErrStale", err)
		}
		lookup(t, f, k) // stale is the front doors' decision, not Lookup's

		run(t, f)
		waitFor(t, "a heartbeat to confirm the replica on the new clock", func() bool { return f.Healthy() == nil })
	})
}

// TestFaultClockJumpBackward: a jump back never yields a negative
// staleness or a panic, and the next heartbeat re-anchors staleness on the
// new clock, so the bound applies again from there.
func TestFaultClockJumpBackward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		clock, f := c.clock, c.f
		c.followOnce(t)

		clock.Add(-time.Hour)
		if s := f.Staleness(); s < 0 {
			t.Fatalf("Staleness() = %v after a jump back", s)
		}
		if err := f.Healthy(); err != nil && !errors.Is(err, ErrStale) {
			t.Fatalf("Healthy() = %v after a jump back", err)
		}

		// The admin confirms the replica again: staleness counts from that
		// heartbeat on the new clock, not from the pre-jump reading.
		stop := run(t, f)
		waitFor(t, "a heartbeat on the new clock", func() bool { at, _ := f.replica().LastCurrent(); return !at.After(clock.Now()) })
		stop()
		clock.Add(time.Minute + time.Second)
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("61s after the last heartbeat (post jump) Healthy() = %v; want ErrStale", err)
		}
	})
}

// TestFaultClockJumpBackwardAdminDown: with the admin unreachable, a jump
// back must not extend fail-static by the size of the jump: MaxStaleness
// after the jump is noticed, the replica is stale.
func TestFaultClockJumpBackwardAdminDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		clock, f := c.clock, c.f
		c.followOnce(t) // the admin is gone from here on

		clock.Add(-time.Hour)
		_ = f.Healthy() // the health loop asks every 100ms; this is it noticing the jump
		clock.Add(time.Minute + time.Second)
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("61s after a jump back with no admin, Healthy() = %v (staleness %v); want ErrStale", err, f.Staleness())
		}
	})
}

// TestFaultCatchUpIsNotCurrent: after an outage, changes replayed by the
// catch-up are old news. Until a heartbeat says the replica is current, a
// replica that was stale stays stale, even though changes are applied:
// the revocation it still lacks may be the next line.
func TestFaultCatchUpIsNotCurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClocked(t)
		admin, k, fr, clock, f := c.admin, c.key, c.fr, c.clock, c.f
		run(t, f)
		caughtUp(t, f, admin)

		fr.set(nil) // outage
		since := admin.Revision()
		createKey(t, admin, nil)
		if _, err := admin.RevokeKey(k.key.ID, "tester"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "staleness beyond the bound", func() bool {
			clock.Add(30 * time.Second)
			return errors.Is(f.Healthy(), ErrStale)
		})

		// A fake admin (the outside world) that replays the first change of
		// the catch-up and then stalls: no revocation, no heartbeat.
		var first atomic.Bool
		fr.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != PathWatch || !first.CompareAndSwap(false, true) {
				<-r.Context().Done()
				return
			}
			var line []byte
			err := admin.Changes(since, 1, func(c keystore.Change) error {
				rl, err := recordOf(c, true)
				if err == nil {
					line, err = appendLine(nil, rl)
				}
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write(line)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}))
		waitFor(t, "the first catch-up change applied", func() bool { return f.Revision() == since+1 })
		if res := lookup(t, f, k); res.Key.Revoked() {
			t.Fatal("revocation applied; the fake admin should have held it back")
		}
		if err := f.Healthy(); !errors.Is(err, ErrStale) {
			t.Fatalf("mid catch-up, still missing the revocation, Healthy() = %v; want ErrStale", err)
		}
	})
}

// paddedLine encodes change c as a watch line of exactly size bytes
// (newline included), using an unknown field the decoder ignores.
func paddedLine(t *testing.T, c keystore.Change, size int) []byte {
	t.Helper()
	rl, err := recordOf(c, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rl)
	if err != nil {
		t.Fatal(err)
	}
	head := append(b[:len(b)-1:len(b)-1], `,"pad":"`...)
	const tail = "\"}\n"
	n := size - len(head) - len(tail)
	if n < 0 {
		t.Fatalf("line of %d bytes cannot be padded to %d", len(head)+len(tail), size)
	}
	line := append(head, strings.Repeat("x", n)...)
	line = append(line, tail...)
	if len(line) != size {
		t.Fatalf("padded line is %d bytes, want %d", len(line), size)
	}
	return line
}

// TestFaultWatchLineTooLong: a fake admin sends a genuine change padded to
// exactly MaxLineSize (accepted and applied), then a forged next change one
// byte over the limit that would add an unknown key. The follower drops the
// stream without applying it, reconnects from its revision, and never needs
// a new snapshot.
func TestFaultWatchLineTooLong(t *testing.T) {
	admin := newAdminStore(t)
	revoked := createKey(t, admin, nil)
	live := createKey(t, admin, nil)
	srv := newServer(t, admin)
	fr := newFront(t, srv)
	logs := &keystoretest.LogBuffer{}
	f, reg := newFollower(t, t.TempDir(), fr.url(), func(o *FollowerOptions) { o.Logger = zerolog.New(logs) })
	run(t, f)
	caughtUp(t, f, admin)

	fr.set(nil) // the follower is cut off while the admin revokes a key
	if _, err := admin.RevokeKey(revoked.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	head := admin.Revision()
	var genuine keystore.Change
	if err := admin.Changes(head-1, 1, func(c keystore.Change) error { genuine = c; return nil }); err != nil {
		t.Fatal(err)
	}
	rawU, _ := keystore.Mint("nex_", alphanumeric, 32)
	forged := keystore.Change{Revision: head + 1, Key: &keystore.Key{
		ID: "forged", Hash: keystore.HashKey(rawU), Prefix: keystore.DisplayPrefix(rawU),
		Scopes: []string{"full_access"}, CreatedAt: time.Now().UTC(),
	}}
	atLimit := paddedLine(t, genuine, MaxLineSize)
	overLimit := paddedLine(t, forged, MaxLineSize+1)

	// The fake admin: the first watch gets the two padded lines and then
	// silence; later ones are served by the real server, after recording
	// what the follower held when it came back.
	var watches atomic.Int32
	var revAtReturn atomic.Uint64
	var forgedAtReturn atomic.Bool
	fr.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathWatch {
			srv.ServeHTTP(w, r)
			return
		}
		switch watches.Add(1) {
		case 1:
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Write(atLimit)
			w.Write(overLimit)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
			return
		case 2:
			// The follower is blocked on this request: its state is settled.
			revAtReturn.Store(f.Revision())
			_, err := f.Lookup(keystore.HashKey(rawU))
			forgedAtReturn.Store(err == nil)
		}
		srv.ServeHTTP(w, r)
	}))

	waitFor(t, "the follower to drop the stream and come back", func() bool { return watches.Load() >= 2 })
	if forgedAtReturn.Load() {
		t.Fatal("the over-long forged line was applied")
	}
	if got := revAtReturn.Load(); got != head {
		t.Fatalf("follower came back at revision %d; want %d (the at-limit line applied, the over-long one not)", got, head)
	}
	caughtUp(t, f, admin)
	if res := lookup(t, f, revoked); !res.Key.Revoked() {
		t.Error("the genuine at-limit change (a revocation) was not applied")
	}
	if res := lookup(t, f, live); res.Key.Revoked() {
		t.Error("live key revoked")
	}
	if !notFound(f, testKey{raw: rawU}) {
		t.Error("forged key present after catching up")
	}
	if got := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); got != 1 {
		t.Errorf("snapshots taken = %v; want 1 (a dropped stream resumes the watch)", got)
	}
	if !strings.Contains(logs.String(), "longer than") {
		t.Errorf("no log line names the over-long line:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), rawU) {
		t.Error("raw key in logs")
	}
}
