package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// storeState is everything replication and the admin API read of a store.
func storeState(t *testing.T, st *keystore.Store) string {
	t.Helper()
	keys, err := st.ListKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	var changes []keystore.Change
	if err := st.Changes(0, 0, func(c keystore.Change) error { changes = append(changes, c); return nil }); err != nil {
		t.Fatal(err)
	}
	for i, c := range changes {
		if c.Revision != uint64(i+1) {
			t.Fatalf("change log has revision %d at position %d", c.Revision, i)
		}
	}
	audit, err := st.Audit(time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	u, err := st.GetUser("u1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]any{
		"store_id": st.StoreID(), "revision": st.Revision(), "keys": keys,
		"changes": changes, "audit": audit, "user": u,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sameState fails unless every running member holds the same state.
func sameState(t *testing.T, nodes []*testNode) string {
	t.Helper()
	caughtUp(t, nodes)
	var want string
	for _, tn := range nodes {
		if tn.store == nil {
			continue
		}
		got := storeState(t, tn.store)
		if want == "" {
			want = got
			continue
		}
		if got != want {
			t.Fatalf("member %s differs:\n got %s\nwant %s", tn.id, got, want)
		}
	}
	return want
}

// newKey mints a raw key and returns it with its record.
func newKey(t *testing.T, id, user string) (string, *keystore.Key) {
	t.Helper()
	raw, err := keystore.Mint("ek_", "abcdefghijklmnopqrstuvwxyz0123456789", 32)
	if err != nil {
		t.Fatal(err)
	}
	return raw, &keystore.Key{ID: id, Hash: keystore.HashKey(raw), Prefix: keystore.DisplayPrefix(raw), Scopes: []string{"read"}, UserID: user}
}

// workload writes every kind of command through the leader and returns
// the raw keys it minted.
func workload(t *testing.T, nodes []*testNode, tag string, n int) []string {
	t.Helper()
	var raws []string
	for i := range n {
		raw, k := newKey(t, fmt.Sprintf("%s-%d", tag, i), "u1")
		raws = append(raws, raw)
		write(t, nodes, func(w *Writer) error { return w.CreateKey(k, "op") })
		if k.CreatedAt.IsZero() || k.CreatedBy != "op" {
			t.Fatalf("create did not return the stored record: %+v", k)
		}
	}
	write(t, nodes, func(w *Writer) error { _, err := w.RevokeKey(tag+"-0", "op"); return err })
	write(t, nodes, func(w *Writer) error {
		_, err := w.SetKeyRateLimit(tag+"-2", &keystore.RateLimit{Limit: 5, Duration: time.Minute}, "op")
		return err
	})
	rawNext, next := newKey(t, tag+"-next", "u1")
	raws = append(raws, rawNext)
	write(t, nodes, func(w *Writer) error { _, err := w.RotateKey(tag+"-1", next, time.Hour, "op"); return err })
	rawImp, imp := newKey(t, tag+"-imp", "")
	raws = append(raws, rawImp)
	write(t, nodes, func(w *Writer) error {
		res, err := w.ImportKeys([]*keystore.Key{imp, next}, "op")
		if err == nil && (res.Imported != 1 || len(res.Skipped) != 1) {
			err = fmt.Errorf("import result %+v", res)
		}
		return err
	})
	rawProj, first := newKey(t, tag+"-first", "")
	raws = append(raws, rawProj)
	write(t, nodes, func(w *Writer) error {
		return w.CreateProject(&keystore.Project{ID: tag + "-proj", Name: "P"}, first, "op")
	})
	write(t, nodes, func(w *Writer) error {
		return w.RecordUsage([]keystore.Usage{{KeyID: tag + "-2", LastUsedAt: time.Now(), Count: 3}})
	})
	write(t, nodes, func(w *Writer) error { _, err := w.SetUserActive("u1", false, "op"); return err })
	write(t, nodes, func(w *Writer) error { _, err := w.SetUserActive("u1", true, "op"); return err })
	return raws
}

// noRawKeys fails if any file under the members' directories holds a raw key.
func noRawKeys(t *testing.T, nodes []*testNode, raws []string) {
	t.Helper()
	var dirs []string
	for _, tn := range nodes {
		dirs = append(dirs, tn.dir)
	}
	if files := keystoretest.NoRawKeysInFiles(t, dirs, raws); files < 3*len(nodes) {
		t.Fatalf("searched only %d files", files)
	}
}

func TestThreeMembersHoldTheSameStore(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	l := leader(t, nodes)
	raws := workload(t, nodes, "k", 10)

	// The store's own errors come back unchanged.
	w := &Writer{Node: l.node}
	if _, err := w.RevokeKey("k-0", "op"); !errors.Is(err, keystore.ErrRevoked) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("second revoke: %v, want ErrRevoked", err)
	}
	state := sameState(t, nodes)
	for _, tn := range nodes {
		k, err := tn.store.GetKey("k-0")
		if err != nil || !k.Revoked() {
			t.Fatalf("%s: k-0 is not revoked: %v", tn.id, err)
		}
		if ok, _ := tn.store.Adopted(); !ok {
			t.Fatalf("%s did not adopt the cluster's store id", tn.id)
		}
		if err := tn.node.Snapshot(); err != nil {
			t.Fatalf("snapshot %s: %v", tn.id, err)
		}
	}
	if !bytes.Contains([]byte(state), []byte(`"k-9"`)) {
		t.Fatal("the state does not hold the created keys")
	}
	for _, tn := range nodes {
		if k, err := tn.store.GetKey("k-2"); err != nil || k.RateLimit == nil || k.RateLimit.Limit != 5 {
			t.Fatalf("%s: k-2's rate limit did not replicate: %+v, %v", tn.id, k, err)
		}
	}
	// A follower forwards writes to the leader: the answer is the
	// leader's, the store's errors arrive as the same sentinels, and after
	// WaitReadIndex the follower's own store has the change.
	var f *testNode
	for _, tn := range nodes {
		if !tn.node.IsLeader() {
			f = tn
			break
		}
	}
	fw := &Writer{Node: f.node}
	rawF, kf := newKey(t, "via-follower", "u1")
	raws = append(raws, rawF)
	if err := fw.CreateKey(kf, "op"); err != nil {
		t.Fatalf("create through follower %s: %v", f.id, err)
	}
	if kf.CreatedAt.IsZero() || kf.CreatedBy != "op" {
		t.Fatalf("forwarded create did not return the stored record: %+v", kf)
	}
	if err := f.node.WaitReadIndex(); err != nil {
		t.Fatal(err)
	}
	if got, err := f.store.GetKey("via-follower"); err != nil || !got.CreatedAt.Equal(kf.CreatedAt) {
		t.Fatalf("follower's store after WaitReadIndex: %+v, %v", got, err)
	}
	if _, err := fw.RevokeKey("k-0", "op"); !errors.Is(err, keystore.ErrRevoked) {
		t.Fatalf("second revoke through the follower: %v, want ErrRevoked", err)
	}
	if _, err := fw.RevokeKey("nope", "op"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("revoke of an unknown key through the follower: %v, want ErrNotFound", err)
	}
	sameState(t, nodes)
	noRawKeys(t, nodes, raws)
}

func TestRestartAppliesNothingTwiceAndSnapshotsCatchUp(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, func(c *raft.Config) {
		fastRaft(c)
		c.TrailingLogs = 4 // a snapshot drops the log, so a lagging member must install one
		c.SnapshotThreshold = 1 << 30
		c.SnapshotInterval = time.Hour
	})
	raws := workload(t, nodes, "a", 3)
	before := sameState(t, nodes)

	// A member restarted with its raft state replays its log over a store
	// file that already holds it: nothing may be applied twice.
	l := leader(t, nodes)
	f := follower(nodes, l)
	f.stop(t)
	f.start(t)
	if got := sameState(t, nodes); got != before {
		t.Fatalf("after a restart:\n got %s\nwant %s", got, before)
	}

	// A member that misses more than the leader keeps of its log catches
	// up from a snapshot (Restore).
	f.stop(t)
	raws = append(raws, workload(t, nodes, "b", 5)...)
	l = leader(t, nodes)
	if err := l.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	f.start(t)
	after := sameState(t, nodes)
	if after == before {
		t.Fatal("the second workload changed nothing")
	}
	noRawKeys(t, nodes, raws)
}

// TestTheFirstPeerTakesOverASingleAdminsStore: a single admin's data dir
// becomes the first member of a new cluster of three with every record,
// the same revisions and store id on every member. The two empty members,
// started first, cannot elect a leader without it (they never bootstrap).
// A member listed later with a single admin's store is refused and keeps it.
func TestTheFirstPeerTakesOverASingleAdminsStore(t *testing.T) {
	ca := newTestCA(t)
	nodes := make([]*testNode, 3)
	var peers []Peer
	for i := range nodes {
		id := string(rune('a' + i))
		nodes[i] = &testNode{id: id, addr: freeAddr(t), dir: t.TempDir(), tls: ca.member(t, id)}
		peers = append(peers, Peer{ID: id, Addr: nodes[i].addr})
	}
	for _, tn := range nodes {
		tn.peers = peers
	}
	t.Cleanup(func() {
		for _, tn := range nodes {
			tn.stop(t)
		}
	})
	// The single admin's store, written as a lone admin writes it.
	single := func(tn *testNode) (storeID string, rev uint64, raws []string) {
		st, err := keystore.Open(filepath.Join(tn.dir, "keystore.db"), keystore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if _, err := st.SetUserActive("u1", true, "op"); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			raw, k := newKey(t, fmt.Sprintf("old-%d", i), "u1")
			raws = append(raws, raw)
			if err := st.CreateKey(k, "op"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := st.RevokeKey("old-0", "op"); err != nil {
			t.Fatal(err)
		}
		return st.StoreID(), st.Revision(), raws
	}

	// Listed second, a single admin's store is refused and left as it is.
	single(nodes[1])
	st, err := keystore.Open(filepath.Join(nodes[1].dir, "keystore.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(Config{ID: "b", Advertise: nodes[1].addr, Peers: peers, Dir: filepath.Join(nodes[1].dir, "raft"), TLS: nodes[1].tls, Store: st})
	if !errors.Is(err, ErrSingleNodeStore) {
		t.Fatalf("start of the second peer over a single admin's store: %v", err)
	}
	if got, err := st.GetKey("old-1"); err != nil || got.ID != "old-1" {
		t.Fatalf("the refused start lost a key: %v", err)
	}
	st.Close()
	nodes[1].dir = t.TempDir()

	storeID, rev, raws := single(nodes[0])
	// The empty members first: each reaches its election timeout and
	// gives up for want of a configuration; neither ever leads.
	var refused [2]keystoretest.LogBuffer
	for i, tn := range nodes[1:] {
		tn.logs = &refused[i]
		tn.start(t)
	}
	eventually(t, "b and c reach their election timeout without a configuration (or elect a leader)", func() bool {
		for _, tn := range nodes[1:] {
			if id, _ := tn.node.Leader(); id != "" {
				return true
			}
		}
		return strings.Contains(refused[0].String(), "no known peers, aborting election") &&
			strings.Contains(refused[1].String(), "no known peers, aborting election")
	})
	for _, tn := range nodes[1:] {
		if id, _ := tn.node.Leader(); id != "" || tn.node.IsLeader() {
			t.Fatalf("%s knows leader %q without the member that has the keys", tn.id, id)
		}
	}

	nodes[0].start(t)
	if l := leader(t, nodes); l != nodes[0] {
		t.Fatalf("%s leads; only a can", l.id)
	}
	state := sameState(t, nodes)
	for _, tn := range nodes {
		if tn.store.StoreID() != storeID || tn.store.Revision() != rev {
			t.Fatalf("%s: store id %s at revision %d; want the single admin's %s at %d", tn.id, tn.store.StoreID(), tn.store.Revision(), storeID, rev)
		}
		for i := range 3 {
			k, err := tn.store.GetKey(fmt.Sprintf("old-%d", i))
			if err != nil || k.Revoked() != (i == 0) {
				t.Fatalf("%s: old-%d: %+v, %v", tn.id, i, k, err)
			}
		}
	}
	// The cluster goes on from there, through a follower too.
	raw, k := newKey(t, "new", "u1")
	raws = append(raws, raw)
	if err := (&Writer{Node: nodes[2].node}).CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	if after := sameState(t, nodes); after == state || nodes[1].store.Revision() != rev+1 {
		t.Fatalf("the write after the takeover: revision %d, want %d", nodes[1].store.Revision(), rev+1)
	}
	// A restart of the first member keeps its state and bootstraps nothing.
	nodes[0].stop(t)
	nodes[0].start(t)
	sameState(t, nodes)
	noRawKeys(t, nodes, raws)
}

// TestAnInterruptedTakeoverIsTakenOverAgain: a first member that died
// between the takeover's two writes (store id adopted at index 1, no
// snapshot yet) takes its store over again on restart.
func TestAnInterruptedTakeoverIsTakenOverAgain(t *testing.T) {
	ca := newTestCA(t)
	tn := &testNode{id: "a", addr: freeAddr(t), dir: t.TempDir(), tls: ca.member(t, "a")}
	tn.peers = []Peer{{ID: "a", Addr: tn.addr}}
	st, err := keystore.Open(filepath.Join(tn.dir, "keystore.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, k := newKey(t, "old", "")
	if err := st.CreateKey(k, "op"); err != nil {
		t.Fatal(err)
	}
	id, rev := st.StoreID(), st.Revision()
	if _, err := st.Applied(1, time.Now()).AdoptStoreID(id); err != nil {
		t.Fatal(err)
	}
	st.Close()
	tn.start(t)
	t.Cleanup(func() { tn.stop(t) })
	leader(t, []*testNode{tn})
	if got, err := tn.store.GetKey("old"); err != nil || got.ID != "old" || tn.store.StoreID() != id || tn.store.Revision() != rev {
		t.Fatalf("after the second takeover: %+v, %v, store %s at %d; want %s at %d", got, err, tn.store.StoreID(), tn.store.Revision(), id, rev)
	}
}

// TestAMemberWhoseDataDirIsLostRejoinsEmpty: a member replaced with an
// empty data dir under its id and address (a StatefulSet pod whose volume
// was lost) needs no membership change: the leader, which still lists it,
// sends it the state. The first listed member too: it bootstraps, but its
// log of one configuration entry cannot win an election, and it ends with
// the cluster's store, not a new one.
func TestAMemberWhoseDataDirIsLostRejoinsEmpty(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	workload(t, nodes, "r", 3)
	want := sameState(t, nodes)
	for i, id := range map[int]string{2: "r-2", 0: "r-imp"} {
		tn := nodes[i]
		tn.stop(t)
		tn.dir = t.TempDir()
		write(t, nodes, func(w *Writer) error { _, err := w.RevokeKey(id, "op"); return err })
		tn.start(t)
		if got := sameState(t, nodes); got == want {
			t.Fatalf("%s: the revocation made while it was away is missing", tn.id)
		}
		want = sameState(t, nodes)
		if k, err := tn.store.GetKey(id); err != nil || !k.Revoked() {
			t.Fatalf("%s after rejoining empty: %+v, %v", tn.id, k, err)
		}
	}
}

func TestWithoutQuorumWritesAndReadsAreUnavailable(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	workload(t, nodes, "q", 3)
	caughtUp(t, nodes)
	l := leader(t, nodes)
	var alone *testNode
	for _, tn := range nodes {
		if tn != l && alone == nil {
			alone = tn
			continue
		}
		tn.stop(t)
	}
	// Whatever the member still believes about a leader, it gets no
	// quorum: every write and every read index fails as the cluster's.
	_, k := newKey(t, "lost", "")
	var ue *UnavailableError
	if err := (&Writer{Node: alone.node}).CreateKey(k, "op"); !errors.As(err, &ue) {
		t.Fatalf("write without quorum: %v, want an UnavailableError", err)
	}
	if err := alone.node.WaitReadIndex(); !errors.As(err, &ue) {
		t.Fatalf("read index without quorum: %v, want an UnavailableError", err)
	}
	if _, err := alone.store.GetKey("lost"); !errors.Is(err, keystore.ErrNotFound) {
		t.Fatalf("a write without quorum reached the store: %v", err)
	}
}

func TestMembershipAndStatusFromAnyMember(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 3, nil)
	workload(t, nodes, "m", 3)
	l := leader(t, nodes)
	f := follower(nodes, l)
	view, err := f.node.ClusterStatus()
	if err != nil {
		t.Fatal(err)
	}
	leaders := 0
	for _, m := range view {
		if m.Status == nil {
			t.Fatalf("member %s: %s", m.ID, m.Error)
		}
		if m.Status.State == "Leader" {
			leaders++
		}
	}
	if len(view) != 3 || leaders != 1 {
		t.Fatalf("status of %d members with %d leaders: %+v", len(view), leaders, view)
	}

	// A fourth member starts without peers (it waits to be added), is
	// added through a follower, and catches up.
	d := &testNode{id: "d", addr: freeAddr(t), dir: t.TempDir(), tls: ca.member(t, "d")}
	d.start(t)
	t.Cleanup(func() { d.stop(t) })
	if err := f.node.ChangeMembership("d", d.addr); err != nil {
		t.Fatalf("add through a follower: %v", err)
	}
	all := append(append([]*testNode{}, nodes...), d)
	sameState(t, all)
	if err := f.node.ChangeMembership("d", ""); err != nil {
		t.Fatalf("remove through a follower: %v", err)
	}
	eventually(t, "d is no longer a member", func() bool {
		st, err := l.node.Status()
		return err == nil && len(st.Members) == 3
	})
}

func TestAStoreWhoseRaftLogIsGoneIsRefused(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 1, nil)
	workload(t, nodes, "g", 3)
	tn := nodes[0]
	tn.stop(t)
	if err := os.RemoveAll(filepath.Join(tn.dir, "raft")); err != nil {
		t.Fatal(err)
	}
	st, err := keystore.Open(filepath.Join(tn.dir, "keystore.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	before := storeState(t, st)
	_, err = Start(Config{ID: tn.id, Advertise: tn.addr, Peers: tn.peers, Dir: filepath.Join(tn.dir, "raft"), TLS: tn.tls, Store: st})
	if !errors.Is(err, ErrStoreWithoutLog) {
		t.Fatalf("start over a store without its raft log: %v", err)
	}
	if storeState(t, st) != before {
		t.Fatal("the refused start changed the store")
	}
}
