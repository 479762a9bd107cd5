package cluster

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/keystore"
)

// Members' own requests on the raft port, told from raft's RPCs (types 0
// to 4) by the first byte of a connection, reqConn, which kept-open
// connections carry (memberconn.go). Each request on it is its kind byte
// and a message, answered with a message, every message a 4-byte
// big-endian length and its bytes.
const (
	reqForward   byte = 0xE7 // an encoded Command for the leader to apply; answered with a wireResult
	reqReadIndex byte = 0xE8 // the leader's read index (empty message); answered with a wireResult
	reqStatus    byte = 0xE9 // the member's Status (empty message), as JSON
	reqMember    byte = 0xEA // a membershipChange for the leader; answered with a wireResult
	reqConn      byte = 0xEB // the first byte of a connection of requests
)

// membershipChange adds (Addr set) or removes a voter.
type membershipChange struct {
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
}

// wireResult is a Result (or a read index) as the leader sends it back.
type wireResult struct {
	Key     *keystore.Key         `json:"key,omitempty"`
	New     *keystore.Key         `json:"new,omitempty"`
	Keys    []*keystore.Key       `json:"keys,omitempty"`
	Project *keystore.Project     `json:"project,omitempty"`
	User    keystore.User         `json:"user"`
	Import  keystore.ImportResult `json:"import"`
	Index   uint64                `json:"index,omitempty"`
	ErrKind string                `json:"err_kind,omitempty"`
	ErrMsg  string                `json:"err_msg,omitempty"`
}

// The store's errors that callers test for cross the wire by name.
var wireErrors = map[string]error{
	"revoked":        keystore.ErrRevoked,
	"not_found":      keystore.ErrNotFound,
	"duplicate_hash": keystore.ErrDuplicateHash,
	"quota_shared":   keystore.ErrQuotaShared,
	"quota_raise":    keystore.ErrQuotaRaise,
}

func errorToWire(err error, w *wireResult) {
	if err == nil {
		return
	}
	w.ErrMsg = err.Error()
	for kind, e := range wireErrors {
		if errors.Is(err, e) {
			w.ErrKind = kind
			return
		}
	}
	var ue *UnavailableError
	switch {
	case errors.Is(err, ErrOutcomeUnknown):
		w.ErrKind = "outcome_unknown"
	case errors.As(err, &ue):
		w.ErrKind = "unavailable"
	default:
		w.ErrKind = "other"
	}
}

func errorFromWire(w *wireResult) error {
	if w.ErrKind == "" {
		return nil
	}
	if e, ok := wireErrors[w.ErrKind]; ok {
		return e
	}
	switch w.ErrKind {
	case "outcome_unknown":
		return unavailable(ErrOutcomeUnknown, "")
	case "unavailable":
		return &UnavailableError{msg: w.ErrMsg, err: ErrNotLeader}
	}
	return errors.New(w.ErrMsg)
}

// maxAnswer bounds an answer read from the leader.
const maxAnswer = MaxCommandSize + 1<<20

func writeMsg(c net.Conn, b []byte) error {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	if _, err := c.Write(n[:]); err != nil {
		return err
	}
	_, err := c.Write(b)
	return err
}

func readMsg(c net.Conn, limit int) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(n[:])
	if int64(size) > int64(limit) {
		return nil, fmt.Errorf("message of %d bytes is over the %d byte limit", size, limit)
	}
	b := make([]byte, size)
	_, err := io.ReadFull(c, b)
	return b, err
}

// answer answers one request of another member; only a leader applies
// or answers a read index, and never forwards again. ok is false for a
// request it cannot parse: the connection is then dropped.
func (n *Node) answer(kind byte, payload []byte) (out []byte, ok bool) {
	var w wireResult
	switch kind {
	case reqForward:
		cmd, err := DecodeCommand(payload)
		if err != nil {
			errorToWire(err, &w)
			break
		}
		r, err := n.applyHere(cmd)
		// The store's log index with cmd applied: the follower waits for
		// its own store to reach it before it answers.
		w.Index = n.fsm.written.Load()
		if r != nil {
			w.Key, w.New, w.Keys, w.Project, w.User, w.Import = r.Key, r.New, r.Keys, r.Project, r.User, r.Import
		}
		errorToWire(err, &w)
	case reqReadIndex:
		idx, err := n.leaderReads.get(n.leaderReadIndex)
		w.Index = idx
		errorToWire(err, &w)
	case reqMember:
		var m membershipChange
		if err := json.Unmarshal(payload, &m); err != nil || m.ID == "" {
			errorToWire(errors.New("cluster: bad membership change"), &w)
			break
		}
		errorToWire(n.changeHere(m), &w)
	case reqStatus:
		st, err := n.Status()
		if err != nil {
			return nil, false
		}
		b, err := json.Marshal(&st)
		return b, err == nil
	default:
		return nil, false
	}
	b, err := json.Marshal(&w)
	return b, err == nil
}

// ask sends one request to the leader and returns its answer.
func (n *Node) ask(kind byte, payload []byte) (*wireResult, error) {
	id, addr := n.Leader()
	if addr == "" {
		return nil, unavailable(ErrNotLeader, "")
	}
	return n.askAt(id, addr, kind, payload)
}

func (n *Node) askAt(id, addr string, kind byte, payload []byte) (*wireResult, error) {
	b, err := n.askRaw(id, addr, kind, payload, 2*n.cfg.ApplyTimeout+firstByteTimeout)
	if err != nil {
		return nil, err
	}
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("cluster: the answer of %s: %w", id, err)
	}
	return &w, nil
}

// forward has the leader apply c, and returns once this member's store
// holds it too (the leader's log index with c applied), as Writer
// promises: a follower's answer that names its own revision (a usage
// report's) then covers the write.
func (n *Node) forward(c *Command, b []byte) (*Result, error) {
	w, err := n.ask(reqForward, b)
	if err != nil {
		return nil, err
	}
	r := &Result{Key: w.Key, New: w.New, Keys: w.Keys, Project: w.Project, User: w.User, Import: w.Import, Err: errorFromWire(w)}
	if r.Err != nil {
		return r, r.Err
	}
	if err := n.waitApplied(w.Index); err != nil {
		// Committed, but this member cannot show it yet: the caller must
		// check before it writes again.
		return nil, unavailable(fmt.Errorf("%w: applied by the leader, not yet here: %w", ErrOutcomeUnknown, err), "")
	}
	return r, nil
}

// leaderReadIndex is, on the leader, the log index of the last change in
// its store file, once it has committed an entry of its own term (the
// barrier after its election: every write acknowledged by an earlier
// leader is then applied here) and confirmed with a quorum that it still
// leads. Every write acknowledged before the call is at or below it. It is
// not raft's commit index: barriers and no-op entries never reach the
// store, so a follower could wait for them for ever.
func (n *Node) leaderReadIndex() (uint64, error) {
	if n.raft.State() != raft.Leader {
		id, _ := n.Leader()
		return 0, unavailable(ErrNotLeader, id)
	}
	term := n.raft.CurrentTerm()
	if n.barrierTerm.Load() != term {
		if err := n.termBarrier(); err != nil {
			return 0, unavailable(err, "")
		}
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return 0, unavailable(fmt.Errorf("cluster: verify leadership: %w", err), "")
	}
	if err := n.applyCommitted(); err != nil {
		return 0, err
	}
	idx := n.fsm.written.Load()
	if n.raft.CurrentTerm() != term || n.barrierTerm.Load() != term {
		return 0, unavailable(errors.New("cluster: leadership changed during a read"), "")
	}
	return idx, nil
}

// applyCommitted waits until this member's store applied every command
// committed now. raft hands committed entries to each member's state
// machine asynchronously, so a follower may apply an entry before the
// leader that committed it: the leader's store alone is no read index (a
// read on that follower saw a revocation that a later read through the
// leader did not; the fault rounds found it).
func (n *Node) applyCommitted() error {
	commit := n.raft.CommitIndex()
	// The last command at or below commit: barriers, no-ops and
	// configuration entries never reach the store. An index no longer in
	// the log is in a snapshot, which is applied already.
	var last uint64
	for i := commit; i > n.fsm.seen.Load(); i-- {
		var l raft.Log
		if err := n.logs.GetLog(i, &l); err != nil {
			break
		}
		if l.Type == raft.LogCommand {
			last = i
			break
		}
	}
	deadline := time.Now().Add(n.cfg.ApplyTimeout)
	for n.fsm.seen.Load() < last {
		if err := n.fsm.haltErr(); err != nil {
			return unavailable(err, "")
		}
		if time.Now().After(deadline) {
			return unavailable(fmt.Errorf("cluster: the leader's store is at log index %d of its committed %d", n.fsm.seen.Load(), last), "")
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// termBarrier commits a barrier in the current term and records that
// term, unless the term changed meanwhile: the leader's commit index then
// covers every write acknowledged in earlier terms.
func (n *Node) termBarrier() error {
	term := n.raft.CurrentTerm()
	if err := n.Barrier(); err != nil {
		return err
	}
	if n.raft.CurrentTerm() != term {
		return errors.New("cluster: leadership changed during the barrier")
	}
	n.barrierTerm.Store(term)
	return nil
}

// askReadIndex asks the leader for its read index.
func (n *Node) askReadIndex() (uint64, error) {
	w, err := n.ask(reqReadIndex, nil)
	if err != nil {
		return 0, err
	}
	return w.Index, errorFromWire(w)
}

// WaitReadIndex returns once this member has applied every write
// acknowledged (by any member) before the call: reads from its store then
// see them. A follower asks the leader for its read index; without a
// leader it fails with an *UnavailableError. Concurrent calls share
// rounds (readRounds).
func (n *Node) WaitReadIndex() error {
	if servesStaleReads {
		return nil
	}
	idx, err := n.readIndex()
	if err != nil {
		return err
	}
	return n.waitApplied(idx)
}

// waitApplied returns once this member's store holds log index idx, or
// fails with an *UnavailableError after ApplyTimeout.
func (n *Node) waitApplied(idx uint64) error {
	deadline := time.Now().Add(n.cfg.ApplyTimeout)
	// raft's AppliedIndex counts entries handed to the state machine, not
	// applied by it: wait for the store's own.
	for n.fsm.written.Load() < idx {
		if time.Now().After(deadline) {
			return unavailable(fmt.Errorf("cluster: this member's store is at log index %d of the leader's %d", n.fsm.written.Load(), idx), "")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// CaughtUp reports, without waiting, whether this member's store holds
// every write acknowledged before the call (the leader's read index): a
// member that just joined knows a leader long before the leader's snapshot
// or log reached its store, and must not serve sidecars its empty store
// meanwhile.
func (n *Node) CaughtUp() error {
	if err := n.fsm.haltErr(); err != nil {
		return err
	}
	idx, err := n.readIndex()
	if err != nil {
		return err
	}
	if at := n.fsm.written.Load(); at < idx {
		return fmt.Errorf("catching up with the leader (store at log index %d of %d)", at, idx)
	}
	return nil
}

// readIndex is the leader's read index, asked of the leader by a
// follower. Concurrent calls share rounds (readRounds).
func (n *Node) readIndex() (uint64, error) {
	if n.raft.State() == raft.Leader {
		return n.leaderReads.get(n.leaderReadIndex)
	}
	return n.followerReads.get(n.askReadIndex)
}

// changeHere makes a membership change on this member, which must lead.
func (n *Node) changeHere(m membershipChange) error {
	var err error
	if m.Addr != "" {
		err = n.AddVoter(m.ID, m.Addr)
	} else {
		err = n.RemoveServer(m.ID)
	}
	if errors.Is(err, ErrNotLeader) {
		id, _ := n.Leader()
		return unavailable(ErrNotLeader, id)
	}
	return err
}

// ChangeMembership adds the voter id at addr (addr not empty) or removes
// id, through a raft configuration change made by the leader (forwarded
// there from a follower).
func (n *Node) ChangeMembership(id, addr string) error {
	m := membershipChange{ID: id, Addr: addr}
	if n.raft.State() == raft.Leader {
		return n.changeHere(m)
	}
	b, err := json.Marshal(&m)
	if err != nil {
		return err
	}
	w, err := n.ask(reqMember, b)
	if err != nil {
		return err
	}
	return errorFromWire(w)
}

// statusTimeout bounds the wait for one member's Status.
const statusTimeout = 3 * time.Second

// MemberStatus is one member's Status as it reports it, or why it could
// not be asked.
type MemberStatus struct {
	Member
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// ClusterStatus asks every member of the configuration for its Status
// over the raft port.
func (n *Node) ClusterStatus() ([]MemberStatus, error) {
	self, err := n.Status()
	if err != nil {
		return nil, err
	}
	out := make([]MemberStatus, len(self.Members))
	var wg sync.WaitGroup
	for i, m := range self.Members {
		out[i].Member = m
		if m.ID == self.ID {
			out[i].Status = &self
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := n.askRaw(m.ID, m.Addr, reqStatus, nil, statusTimeout)
			if err != nil {
				out[i].Error = "unreachable"
				return
			}
			var st Status
			if err := json.Unmarshal(b, &st); err != nil {
				out[i].Error = "bad answer"
				return
			}
			out[i].Status = &st
		}()
	}
	wg.Wait()
	return out, nil
}
