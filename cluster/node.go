package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/extauthz/extauthz/keystore"
)

// Errors of Apply besides the store's own.
var (
	// ErrNotLeader means this member cannot accept writes: another one
	// leads (Leader names it) or none does. Apply's errors wrap it (and
	// ErrOutcomeUnknown) in an *UnavailableError.
	ErrNotLeader = errors.New("cluster: this member is not the leader")
	// ErrOutcomeUnknown means the write was proposed but leadership was
	// lost before it was known to be committed: it may or may not be in
	// force, and the caller must read before retrying.
	ErrOutcomeUnknown = errors.New("cluster: leadership lost before the write was known to be committed")
	// ErrStoreWithoutLog refuses to start a member whose store was
	// applied from a raft log that its data dir no longer holds; nothing
	// is changed.
	ErrStoreWithoutLog = errors.New("cluster: the store was written by a raft log that the data dir no longer holds; move the store file away and start with an empty data dir: the leader sends this member a snapshot once it is added")
	// ErrSingleNodeStore refuses to start a member other than the first
	// listed peer over a store that a single admin wrote (only the first
	// takes one over, see Start): the data dir is left as it is.
	ErrSingleNodeStore = errors.New("cluster: the data dir holds a single admin's store and no raft state, and only the first member of --raft-peers takes a single admin's store over: list this member first, or give it an empty data dir")
)

// Peer is one voter of the initial configuration.
type Peer struct {
	ID   string
	Addr string // host:port of its raft listener
}

// ParsePeers parses id=host:port,id=host:port. Ids and addresses must be
// unique.
func ParsePeers(s string) ([]Peer, error) {
	var out []Peer
	ids, addrs := map[string]bool{}, map[string]bool{}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("cluster: peer %q is not id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("cluster: peer %s: %w", id, err)
		}
		if ids[id] || addrs[addr] {
			return nil, fmt.Errorf("cluster: peer %s=%s is listed twice", id, addr)
		}
		ids[id], addrs[addr] = true, true
		out = append(out, Peer{ID: id, Addr: addr})
	}
	return out, nil
}

// Config configures Start.
type Config struct {
	ID        string // this member's id, unique and stable
	Advertise string // host:port the others reach this member's raft listener at
	Bind      string // address to listen on; empty means Advertise
	// Peers is the initial voter set, the same on every member. Only its
	// first member, without raft state, bootstraps the cluster with it (and
	// takes over a single admin's store it finds); the others wait for that
	// member's leader to reach them. A member with raft state ignores it
	// (membership then changes through ChangeMembership), so restarting
	// with the same flags is harmless.
	Peers []Peer
	Dir   string          // raft's log store and snapshots
	TLS   *tls.Config     // see LoadTLS
	Store *keystore.Store // the state machine
	// Logger receives raft's own log lines; nil writes warnings and worse
	// to standard error.
	Logger hclog.Logger
	// Raft adjusts raft's configuration (timeouts) after the defaults are set.
	Raft func(*raft.Config)
	// ApplyTimeout bounds the wait to hand a write to raft. Zero means 10 s.
	ApplyTimeout time.Duration
}

// Node is one running member.
type Node struct {
	cfg   Config
	raft  *raft.Raft
	fsm   *fsm
	logs  *raftboltdb.BoltStore
	trans *raft.NetworkTransport
	done  chan struct{}
	wg    sync.WaitGroup

	stream        *streamLayer
	conns         memberConns
	leaderReads   readRounds // leaderReadIndex, shared (readindex.go)
	followerReads readRounds // askReadIndex, shared
	leaderChanges atomic.Uint64
	// barrierTerm is the last term in which this member, leading,
	// committed a barrier (termBarrier): its commit index then covers
	// every earlier acknowledged write. Per term, so that a member elected
	// again never reuses its earlier term's.
	barrierTerm atomic.Uint64
}

// Start opens the raft state in cfg.Dir, listens on cfg.Bind and joins or
// bootstraps the cluster.
func Start(cfg Config) (*Node, error) {
	if cfg.ID == "" || cfg.Advertise == "" || cfg.Dir == "" || cfg.Store == nil {
		return nil, errors.New("cluster: a node needs an id, a raft address, a data dir and a store")
	}
	if cfg.Bind == "" {
		cfg.Bind = cfg.Advertise
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	}
	listed, sameAddr := hasPeer(cfg.Peers, cfg.ID, cfg.Advertise)
	first := listed && cfg.Peers[0].ID == cfg.ID
	if listed && !sameAddr {
		return nil, fmt.Errorf("cluster: the peers list this member, %s, at another address than %s", cfg.ID, cfg.Advertise)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = cfg.Logger
	// The store file is the state: it is fsynced with its applied index
	// at every entry, so raft restores no snapshot over it on start.
	rc.NoSnapshotRestoreOnStart = true
	batchRaft(rc)
	if cfg.Raft != nil {
		cfg.Raft(rc)
	}
	n := &Node{cfg: cfg, done: make(chan struct{})}
	var err error
	if n.fsm, err = newFSM(cfg.Store, n.done, cfg.Logger); err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot store: %w", err)
	}
	if err := n.catchUpFromSnapshot(snaps); err != nil {
		return nil, err
	}
	if n.logs, err = raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.Dir, "raft.db")}); err != nil {
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	logs, err := raft.NewLogCache(512, n.logs)
	if err != nil {
		n.logs.Close()
		return nil, fmt.Errorf("cluster: raft log: %w", err)
	}
	stream, err := listenTLS(cfg.Bind, cfg.Advertise, cfg.TLS)
	if err != nil {
		n.logs.Close()
		return nil, err
	}
	n.stream = stream
	stream.serve = n.serveMember
	// MaxRPCsInFlight 1 turns raft's pipelined replication off: with it,
	// a leader whose follower refused an AppendEntries could block its
	// replication goroutine on a channel nobody reads, and its Shutdown
	// never returned (seen in the fault rounds; hashicorp/raft#612).
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: stream, MaxPool: 3, MaxRPCsInFlight: 1, Timeout: 10 * time.Second, Logger: cfg.Logger})
	has, err := raft.HasExistingState(logs, n.logs, snaps)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: raft state: %w", err)
	}
	// Bootstrap. The danger is a quorum of members without the keys: with
	// a single admin's store on one member and two empty ones, the two
	// empty ones are a quorum of three, and had they a configuration they
	// could elect a leader whose history lacks every key, then overwrite
	// the store that has them. So only the first listed peer ever
	// bootstraps; a member without raft state has no configuration, and
	// raft never lets a member without one campaign: until the first
	// member's leader reaches them, the others cannot elect anyone. The
	// first member bootstraps with every listed peer as a voter:
	//   - from an empty store, with raft's own bootstrap (a configuration
	//     entry at index 1);
	//   - from a single admin's store (records, no raft state), by taking
	//     it over: a snapshot at index 1, term 1, holding the store as it
	//     is (records, revisions, store id) and the configuration. The
	//     raft log is empty, so the leader sends every other member that
	//     snapshot before any entry: no member holds a history without
	//     those records. The store id is the single admin's: the first
	//     leader proposes it (watchLeadership), and it can only be this
	//     member, the only one with a configuration.
	// A member listed later with a single admin's store is refused
	// (ErrSingleNodeStore), as its records would be overwritten.
	takeOver := false
	if !has {
		adopted, err := cfg.Store.Adopted()
		if err != nil {
			n.closeStores()
			return nil, fmt.Errorf("cluster: %w", err)
		}
		single := cfg.Store.Revision() > 0 && !adopted
		if single && !first {
			n.closeStores()
			return nil, ErrSingleNodeStore
		}
		// A takeover interrupted between its two writes (applied index 1,
		// no snapshot yet) is taken over again: index 1 is the takeover's.
		single = single || (first && adopted && n.fsm.inFile.Load() == 1)
		// A store applied from a raft log this dir no longer holds: a new
		// log would restart its indexes, and entries at or below the
		// store's applied index would be taken as already applied.
		if !single && n.fsm.inFile.Load() > 0 {
			n.closeStores()
			return nil, ErrStoreWithoutLog
		}
		if single {
			if err := n.takeOver(snaps); err != nil {
				n.closeStores()
				return nil, err
			}
			takeOver = true
		}
	}
	if n.raft, err = raft.NewRaft(rc, n.fsm, logs, n.logs, snaps, n.trans); err != nil {
		n.closeStores()
		return nil, fmt.Errorf("cluster: start raft: %w", err)
	}
	if !has && first && !takeOver {
		if err := n.raft.BootstrapCluster(initialConfiguration(cfg.Peers)).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.Close()
			return nil, fmt.Errorf("cluster: bootstrap: %w", err)
		}
	}
	go stream.acceptLoop()
	observed := make(chan raft.Observation, 16)
	n.raft.RegisterObserver(raft.NewObserver(observed, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	}))
	n.wg.Add(2)
	go n.watchLeadership()
	go func() {
		defer n.wg.Done()
		for {
			select {
			case <-n.done:
				return
			case <-observed:
				n.leaderChanges.Add(1)
				n.conns.dropIdle() // a connection to a member that went away may look alive
			}
		}
	}()
	return n, nil
}

// initialConfiguration makes every listed peer a voter.
func initialConfiguration(peers []Peer) raft.Configuration {
	var conf raft.Configuration
	for _, p := range peers {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.Addr)})
	}
	return conf
}

// takeOver makes a single admin's store the state of a new cluster: the
// store adopts its own store id as the cluster's at log index 1, then a
// snapshot at index 1 of term 1 (where raft's own bootstrap writes its
// configuration entry) holds a copy of it and the initial configuration.
// Raft starts from it without restoring it (the store is already that
// state) and sends it to every member it adds, whose store then is at
// index 1 too: a member still without it is behind every read index.
func (n *Node) takeOver(snaps raft.SnapshotStore) error {
	st := n.cfg.Store
	if _, err := st.Applied(1, time.Now()).AdoptStoreID(st.StoreID()); err != nil {
		return fmt.Errorf("cluster: take over the store: %w", err)
	}
	n.fsm.inFile.Store(1)
	n.fsm.written.Store(1)
	sink, err := snaps.Create(raft.SnapshotVersionMax, 1, 1, initialConfiguration(n.cfg.Peers), 1, n.trans)
	if err != nil {
		return fmt.Errorf("cluster: take over the store: %w", err)
	}
	if err := (&fsmSnapshot{store: n.cfg.Store}).Persist(sink); err != nil {
		return fmt.Errorf("cluster: take over the store: %w", err)
	}
	n.cfg.Logger.Info("took over a single admin's store as the first state of a new cluster", "revision", n.cfg.Store.Revision(), "store_id", n.cfg.Store.StoreID())
	return nil
}

func hasPeer(peers []Peer, id, addr string) (listed, sameAddr bool) {
	for _, p := range peers {
		if p.ID == id {
			return true, p.Addr == addr
		}
	}
	return false, false
}

// catchUpFromSnapshot restores the newest snapshot into a store file that
// is behind it (a store file lost or replaced beside its raft state).
func (n *Node) catchUpFromSnapshot(snaps *raft.FileSnapshotStore) error {
	list, err := snaps.List()
	if err != nil || len(list) == 0 {
		return err
	}
	if list[0].Index <= n.fsm.inFile.Load() {
		return nil
	}
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("cluster: open snapshot %s: %w", list[0].ID, err)
	}
	return n.fsm.Restore(rc)
}

// watchLeadership has a new leader propose its store id, so that every
// member holds the same one (the first proposal applied wins; see
// keystore.Store.AdoptStoreID).
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case leader := <-n.raft.LeaderCh():
			if !leader {
				continue
			}
			if err := n.termBarrier(); err != nil {
				n.cfg.Logger.Warn("barrier after election", "error", err)
				continue
			}
			if ok, err := n.cfg.Store.Adopted(); err != nil || ok {
				continue
			}
			if _, err := n.Apply(&Command{Op: OpAdoptStoreID, At: time.Now(), StoreID: n.cfg.Store.StoreID()}); err != nil {
				n.cfg.Logger.Warn("propose the store id", "error", err)
			}
		}
	}
}

// Apply has c committed and applied: proposed here on the leader, which
// returns once it applied it, or forwarded to the leader over the raft
// port from a follower (which returns the leader's Result; its own store
// has the change once it applied that entry, see WaitReadIndex). It
// returns the store's error as the error too, beside the Result.
func (n *Node) Apply(c *Command) (*Result, error) {
	b, err := c.Encode()
	if err != nil {
		return nil, err
	}
	if n.raft.State() != raft.Leader {
		return n.forward(c, b)
	}
	r, err := n.applyBytes(c.Op, b)
	if errors.Is(err, ErrNotLeader) { // raft refused it before the log had it
		return n.forward(c, b)
	}
	return r, err
}

// applyHere proposes c on this member only.
func (n *Node) applyHere(c *Command) (*Result, error) {
	b, err := c.Encode()
	if err != nil {
		return nil, err
	}
	return n.applyBytes(c.Op, b)
}

func (n *Node) applyBytes(op Op, b []byte) (*Result, error) {
	f := n.raft.Apply(b, n.cfg.ApplyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			id, _ := n.Leader()
			return nil, unavailable(ErrNotLeader, id)
		case errors.Is(err, raft.ErrLeadershipLost):
			return nil, unavailable(fmt.Errorf("%w: %v", ErrOutcomeUnknown, err), "")
		}
		return nil, unavailable(fmt.Errorf("cluster: %s: %w", op, err), "")
	}
	r, _ := f.Response().(*Result)
	if r == nil {
		return nil, fmt.Errorf("cluster: %s: no result from the state machine", op)
	}
	return r, r.Err
}

// Barrier waits until every entry committed before it is applied here. A
// leader that answers a read after it sees its own and every earlier
// acknowledged write.
func (n *Node) Barrier() error {
	if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("cluster: barrier: %w", err)
	}
	return nil
}

// Leader returns the id and raft address of the leader this member knows
// of; empty when it knows none.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this member leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// AddVoter adds a member (or changes its address) through a raft
// configuration change; only the leader can.
func (n *Node) AddVoter(id, addr string) error {
	return n.membership(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.ApplyTimeout))
}

// RemoveServer removes a member through a raft configuration change; only
// the leader can.
func (n *Node) RemoveServer(id string) error {
	return n.membership(n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.ApplyTimeout))
}

func (n *Node) membership(f raft.IndexFuture) error {
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return ErrNotLeader
		}
		return fmt.Errorf("cluster: membership change: %w", err)
	}
	return nil
}

// Snapshot makes raft take a snapshot now (and compact its log).
func (n *Node) Snapshot() error { return n.raft.Snapshot().Error() }

// Close leaves the cluster's traffic (not its membership) and closes the
// raft state. The store stays open.
func (n *Node) Close() error {
	select {
	case <-n.done:
		return nil
	default:
	}
	close(n.done)
	n.conns.close()
	err := n.raft.Shutdown().Error()
	n.wg.Wait()
	return errors.Join(err, n.closeStores())
}

func (n *Node) closeStores() error {
	var errs []error
	if n.trans != nil {
		errs = append(errs, n.trans.Close())
	}
	if n.logs != nil {
		errs = append(errs, n.logs.Close())
	}
	return errors.Join(errs...)
}
