package cluster

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// TestApplyBatchGivesEachEntryItsResult: a batch of committed entries
// with commands that fail (one after a partial write) and a configuration
// entry is applied in one store transaction, each command with its own
// result, and the undecodable entry after them halts the member; after a
// restart raft replays the batch and nothing is applied twice.
func TestApplyBatchGivesEachEntryItsResult(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keystore.db")
	st, err := keystore.Open(path, keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	raw, k1 := newKey(t, "k1", "")
	_, k2 := newKey(t, "k2", "")
	k2.Hash = k1.Hash // taken by k1: the project that brings it must leave nothing
	_, k3 := newKey(t, "k3", "")
	cmds := []*Command{
		{Op: OpCreateKey, Key: k1},
		{Op: OpCreateProject, Project: &keystore.Project{ID: "p1"}, Key: k2},
		{Op: OpRevokeKey, ID: "k1"},
		{Op: OpRevokeKey, ID: "k1"},
		{Op: OpCreateProject, Project: &keystore.Project{ID: "p1"}, Key: k3},
		{Op: OpRevokeKey, ID: "nope"},
		{Op: OpSetUserActive, ID: "u1", Active: true},
	}
	logs := []*raft.Log{{Index: 1, Type: raft.LogConfiguration}}
	for i, c := range cmds {
		c.At, c.Actor = at.Add(time.Duration(i)*time.Second), "op"
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(i + 2), Type: raft.LogCommand, Data: b})
	}
	logs = append(logs, &raft.Log{Index: 9, Type: raft.LogCommand, Data: []byte{commandVersion, '{'}})
	f, err := newFSM(st, stopped, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	out := f.ApplyBatch(logs)
	if len(out) != len(logs) || out[0] != nil {
		t.Fatalf("%d results for %d entries, the configuration's %v", len(out), len(logs), out[0])
	}
	errOf := func(i int) error {
		t.Helper()
		r, ok := out[i].(*Result)
		if !ok {
			t.Fatalf("entry %d: result %T", i, out[i])
		}
		return r.Err
	}
	for i, want := range []error{nil, keystore.ErrDuplicateHash, nil, keystore.ErrRevoked, nil, keystore.ErrNotFound, nil} {
		if got := errOf(i + 1); !errors.Is(got, want) {
			t.Errorf("entry %d (%s): %v, want %v", i+2, cmds[i].Op, got, want)
		}
	}
	if err := errOf(8); !errors.Is(err, ErrHalted) {
		t.Errorf("an undecodable entry: %v, want ErrHalted", err)
	}
	if r := out[3].(*Result); r.Key == nil || r.Key.RevokedAt == nil || !r.Key.RevokedAt.Equal(cmds[2].At) {
		t.Errorf("the revocation's result %+v does not carry its own time", r.Key)
	}
	if n := f.written.Load(); n != 8 {
		t.Errorf("written index %d, want 8 (the last applied entry)", n)
	}
	if st.Revision() != 4 { // k1, its revocation, k3 (the project has none), u1
		t.Errorf("revision %d, want 4", st.Revision())
	}
	if res, err := st.Lookup(keystore.HashKey(raw)); err != nil || res.Key.ID != "k1" {
		t.Fatalf("k1: %+v, %v", res.Key, err)
	}
	if k, err := st.GetKey("k3"); err != nil || k.CreatedAt != cmds[4].At {
		t.Fatalf("k3 of the second project: %+v, %v", k, err)
	}
	before := storeState(t, st)

	// Restart: the store file holds entries up to 8; raft replays them.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = keystore.Open(path, keystore.Options{}); err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if f, err = newFSM(st, stopped, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	out = f.ApplyBatch(logs)
	for i := 1; i <= 7; i++ {
		if err := errOf(i); err != nil {
			t.Errorf("replayed entry %d: %v, want the empty result of an entry already applied", i+1, err)
		}
	}
	if after := storeState(t, st); after != before {
		t.Fatalf("the replay changed the store:\n got %s\nwant %s", after, before)
	}
}

// stopped is the stop channel of a member that is shutting down: a halt
// returns at once.
var stopped = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// TestAnEntryItCannotReadHaltsTheMember: a committed command this build
// cannot read (a newer member's, with a field it does not know) stops the
// member at that entry, with the entries before it applied and none after
// it, until it shuts down; a member restarted with a build that reads the
// entry carries on from there. Skipping it would apply the next entries
// over a store that lacks it.
func TestAnEntryItCannotReadHaltsTheMember(t *testing.T) {
	st := keystoretest.Open(t, keystore.Options{})
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	_, k1 := newKey(t, "k1", "")
	_, k2 := newKey(t, "k2", "")
	enc := func(c *Command) []byte {
		t.Helper()
		c.At, c.Actor = at, "op"
		b, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	newer := enc(&Command{Op: OpRevokeKey, ID: "k1"})
	newer = append(newer[:len(newer)-1], []byte(`,"from_a_newer_build":true}`)...)
	logs := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: enc(&Command{Op: OpCreateKey, Key: k1})},
		{Index: 2, Type: raft.LogCommand, Data: newer},
		{Index: 3, Type: raft.LogCommand, Data: enc(&Command{Op: OpCreateKey, Key: k2})},
	}
	stop := make(chan struct{})
	f, err := newFSM(st, stop, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan []any)
	go func() { done <- f.ApplyBatch(logs) }()
	for f.haltErr() == nil {
		select {
		case out := <-done:
			t.Fatalf("the batch was applied past an entry this build cannot read: %v", out)
		case <-time.After(time.Millisecond):
		}
	}
	if err := f.haltErr(); !errors.Is(err, ErrHalted) || !strings.Contains(err.Error(), "log index 2") {
		t.Fatalf("halt: %v", err)
	}
	if _, err := st.GetKey("k1"); err != nil {
		t.Fatalf("k1, before the entry: %v", err)
	}
	if _, err := st.GetKey("k2"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("k2, after the entry, was applied: %v", err)
	}
	if n := f.written.Load(); n != 1 {
		t.Fatalf("written index %d, want 1", n)
	}
	close(stop) // the member shuts down
	out := <-done
	for i := 1; i < 3; i++ {
		if r := out[i].(*Result); !errors.Is(r.Err, ErrHalted) {
			t.Errorf("entry %d: %v, want ErrHalted", i+1, r.Err)
		}
	}

	// Restarted with a build that reads the entry: it carries on.
	logs[1].Data = enc(&Command{Op: OpRevokeKey, ID: "k1"})
	if f, err = newFSM(st, stopped, hclog.NewNullLogger()); err != nil {
		t.Fatal(err)
	}
	for i, r := range f.ApplyBatch(logs) {
		if err := r.(*Result).Err; err != nil {
			t.Fatalf("entry %d after the upgrade: %v", i+1, err)
		}
	}
	if k, err := st.GetKey("k1"); err != nil || k.RevokedAt == nil {
		t.Fatalf("k1 after the upgrade: %+v, %v", k, err)
	}
	if _, err := st.GetKey("k2"); err != nil {
		t.Fatalf("k2 after the upgrade: %v", err)
	}
}

// TestConcurrentWritesThroughEveryMember: 16 writers on the three
// members at once, so that the leader batches their entries, each
// creating keys and revoking each twice; every write gets its own answer
// (one revocation of a key succeeds, the other is ErrRevoked), and every
// member ends with the same store, also after a restart.
func TestConcurrentWritesThroughEveryMember(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	leader(t, nodes)
	const writers, each = 16, 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	revoked, problems := map[string]int{}, []string{}
	for w := range writers {
		tn := nodes[w%len(nodes)]
		wg.Go(func() {
			wr := &Writer{Node: tn.node}
			for i := range each {
				_, k := newKey(t, fmt.Sprintf("w%d-%d", w, i), "u1")
				if err := untilLeaderKnown(func() error { return wr.CreateKey(k, "op") }); err != nil {
					mu.Lock()
					problems = append(problems, fmt.Sprintf("create %s: %v", k.ID, err))
					mu.Unlock()
					continue
				}
				for range 2 {
					_, err := wr.RevokeKey(k.ID, "op")
					mu.Lock()
					switch {
					case err == nil:
						revoked[k.ID]++
					case !errors.Is(err, keystore.ErrRevoked):
						problems = append(problems, fmt.Sprintf("revoke %s: %v", k.ID, err))
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if len(problems) > 0 {
		t.Fatalf("%d writes failed, first: %s", len(problems), problems[0])
	}
	if len(revoked) != writers*each {
		t.Fatalf("%d keys revoked, want %d", len(revoked), writers*each)
	}
	for id, n := range revoked {
		if n != 1 {
			t.Fatalf("%s revoked %d times", id, n)
		}
	}
	write(t, nodes, func(w *Writer) error { _, err := w.SetUserActive("u1", true, "op"); return err })
	state := sameState(t, nodes)
	for _, tn := range nodes {
		if got := tn.store.Revision(); got != 2*writers*each+1 {
			t.Fatalf("%s at revision %d, want %d", tn.id, got, 2*writers*each+1)
		}
	}
	f := follower(nodes, leader(t, nodes))
	f.stop(t)
	f.start(t)
	if got := sameState(t, nodes); got != state {
		t.Fatalf("after a restart:\n got %s\nwant %s", got, state)
	}
}

// TestLeaderChangeDropsIdleConnections: a follower that forwarded writes
// keeps its connection to the leader open; once that leader is gone and
// another elected, the connection is dropped (reused after the old
// leader came back at its address, it would give a write an unknown
// outcome).
func TestLeaderChangeDropsIdleConnections(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	l := leader(t, nodes)
	f := follower(nodes, l)
	_, k := newKey(t, "k1", "")
	if err := untilLeaderKnown(func() error { return (&Writer{Node: f.node}).CreateKey(k, "op") }); err != nil {
		t.Fatal(err)
	}
	if f.node.conns.idleTo(l.addr) == 0 {
		t.Fatal("the follower kept no connection to the leader")
	}
	l.stop(t)
	leader(t, nodes)
	eventually(t, "the follower drops its connection to the old leader", func() bool { return f.node.conns.idleTo(l.addr) == 0 })
}

// follower returns a running member of nodes other than l.
func follower(nodes []*testNode, l *testNode) *testNode {
	for _, tn := range nodes {
		if tn != l && tn.node != nil {
			return tn
		}
	}
	return nil
}

// TestStatusAfterAMemberRestarts: a member's kept-open connection to a
// follower that restarted is dead; asking the status again goes over a
// new one instead of reporting the follower unreachable. (On loopback the
// dead connection fails the request's write; over a slower network the
// write can succeed and the read fail, which is retried the same way for
// questions.)
func TestStatusAfterAMemberRestarts(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	l := leader(t, nodes)
	f := follower(nodes, l)
	reachable := func() bool {
		view, err := l.node.ClusterStatus()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range view {
			if m.ID == f.id {
				return m.Error == ""
			}
		}
		t.Fatalf("%s is not in the status", f.id)
		return false
	}
	if !reachable() || l.node.conns.idleTo(f.addr) == 0 {
		t.Fatal("no kept-open connection to the follower after a status")
	}
	f.stop(t)
	f.start(t)
	eventually(t, f.id+" rejoins", func() bool { _, err := f.node.askReadIndex(); return err == nil })
	if !reachable() {
		t.Fatalf("%s, restarted, is reported unreachable", f.id)
	}
}

// untilLeaderKnown runs fn again while it fails with ErrNotLeader (a
// member that does not know the leader yet: nothing was proposed).
func untilLeaderKnown(fn func() error) error {
	for {
		err := fn()
		if !errors.Is(err, ErrNotLeader) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
