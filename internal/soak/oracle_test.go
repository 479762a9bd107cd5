package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// at is t0 plus seconds.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

type want struct{ valid, invalid bool }

func (w want) String() string { return fmt.Sprintf("valid=%v invalid=%v", w.valid, w.invalid) }

func checkExpect(t *testing.T, o *oracle, k *key, cases map[[2]float64]want) {
	t.Helper()
	for span, w := range cases {
		v, i := o.expect(k, at(span[0]), at(span[1]))
		if got := (want{v, i}); got != w {
			t.Errorf("check over [%gs, %gs]: %v, want %v\n%s", span[0], span[1], got, w, o.history(k))
		}
	}
}

func TestOracleRevoke(t *testing.T) {
	o := newOracle(2*time.Second, 500*time.Millisecond, t0, 1)
	k := &key{id: "k", raw: "nex_0123456789", events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1)},
		{kind: evRevoke, send: at(10), ack: at(10.1)},
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{0.05, 0.06}:  {true, true},  // creation not yet replicated
		{5, 5.01}:     {true, false}, // live
		{9.9, 9.99}:   {true, false}, // ended before the revoke was sent
		{9.99, 10.01}: {true, true},  // overlaps the send
		{10.05, 11}:   {true, true},
		{12.0, 12.01}: {true, true},  // ack + bound = 12.1 not reached at the start
		{12.1, 12.11}: {false, true}, // started at ack + bound
		{30, 30.01}:   {false, true},
	})
}

func TestOraclePendingChangeIsUncertainForever(t *testing.T) {
	o := newOracle(2*time.Second, 0, t0, 1)
	k := &key{id: "k", raw: "nex_0123456789", events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1)},
		{kind: evRevoke, send: at(10)}, // no answer
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{5, 5.01}:    {true, false},
		{100, 100.1}: {true, true},
	})
}

func TestOracleRotationGrace(t *testing.T) {
	o := newOracle(2*time.Second, 500*time.Millisecond, t0, 1)
	k := &key{id: "k", raw: "nex_0123456789", events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1)},
		{kind: evExpire, grace: 2 * time.Second, send: at(10), ack: at(10.1)}, // expires in [12, 12.1]
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{9, 9.01}:     {true, false},
		{11, 11.01}:   {true, false}, // the rotation may or may not be replicated, but the key is in its grace
		{11.4, 11.6}:  {true, true},  // within the slack before the earliest expiry
		{12.5, 12.51}: {true, true},  // within the slack after the latest expiry
		{12.6, 12.61}: {false, true},
		{60, 60.01}:   {false, true},
	})
}

func TestOracleRotationGraceCapsEarlierExpiry(t *testing.T) {
	o := newOracle(time.Second, 0, t0, 1)
	k := &key{id: "k", raw: "nex_0123456789", events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1), expAt: at(5)},
		{kind: evExpire, grace: 10 * time.Second, send: at(1), ack: at(1.1)}, // min(5, 11..11.1) = 5
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{4, 4.9}: {true, false},
		{5, 5.1}: {false, true},
	})
}

func TestOracleCreateWithExpiry(t *testing.T) {
	o := newOracle(2*time.Second, 250*time.Millisecond, t0, 1)
	k := &key{id: "k", raw: "nex_0123456789", events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1), expAt: at(5)},
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{3, 3.01}:   {true, false},
		{4.8, 4.9}:  {true, true},
		{5.2, 5.21}: {true, true},
		{5.3, 5.31}: {false, true},
	})
}

func TestOracleOwner(t *testing.T) {
	o := newOracle(2*time.Second, 0, t0, 1)
	u := o.users[0]
	u.events = []userEvent{
		{send: at(10), ack: at(10.1), active: false},
		{send: at(20), ack: at(20.1), active: true},
	}
	k := &key{id: "k", raw: "nex_0123456789", owner: u, events: []keyEvent{
		{kind: evCreate, send: at(0), ack: at(0.1)},
	}}
	checkExpect(t, o, k, map[[2]float64]want{
		{5, 5.01}:   {true, false},
		{11, 11.01}: {true, true},
		{13, 13.01}: {false, true},
		{19, 20.01}: {true, true}, // overlaps the re-enable's send
		{23, 23.01}: {true, false},
	})
	// A revoked key stays invalid whatever its owner does.
	k.events = append(k.events, keyEvent{kind: evRevoke, send: at(1), ack: at(1.1)})
	checkExpect(t, o, k, map[[2]float64]want{
		{23, 23.01}: {false, true},
	})
}

func TestOracleUnknownKey(t *testing.T) {
	o := newOracle(time.Second, 0, t0, 1)
	v, i := o.expect(nil, at(1), at(2))
	if v || !i {
		t.Fatalf("unknown key: valid=%v invalid=%v", v, i)
	}
}

func TestOraclePickAndCategories(t *testing.T) {
	o := newOracle(time.Second, 0, t0, 2)
	o.users[1].active = false
	o.keys = []*key{
		{id: "live", raw: "nex_live"},
		{id: "revoked", raw: "nex_revoked", revoked: true},
		{id: "expiring", raw: "nex_expiring", expiring: true},
		{id: "disabled", raw: "nex_disabled", owner: o.users[1]},
	}
	o.rebuild()
	seen := map[category]bool{}
	rng := newTestRand()
	for range 2000 {
		k, raw, cat := o.pick(rng)
		seen[cat] = true
		if cat == catUnknown {
			if k != nil || len(raw) != 36 {
				t.Fatalf("unknown pick: %v %q", k, raw)
			}
			continue
		}
		if k.category() != cat || k.raw != raw {
			t.Fatalf("picked %s as %s", k.id, categoryNames[cat])
		}
	}
	if len(seen) != int(numCategories) {
		t.Fatalf("categories seen: %v", seen)
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 17\n"+
			"go_goroutines_other 3\nprocess_resident_memory_bytes 2.5165824e+07\nextauthz_store_revision{a=\"b\"} 9\nextauthz_store_revision 42\n")
	}))
	defer srv.Close()
	m, err := scrape(context.Background(), srv.Client(), srv.URL, "go_goroutines", "process_resident_memory_bytes", "extauthz_store_revision")
	if err != nil {
		t.Fatal(err)
	}
	if m["go_goroutines"] != 17 || m["process_resident_memory_bytes"] != 25165824 || m["extauthz_store_revision"] != 42 {
		t.Fatalf("scraped %v", m)
	}
	if _, err := scrape(context.Background(), srv.Client(), srv.URL, "no_such_metric"); err == nil {
		t.Fatal("missing metric: no error")
	}
}

func TestNum(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4321: "-4,321"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %q, want %q", n, got, want)
		}
	}
}

func newTestRand() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }
