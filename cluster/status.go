package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Status is what a member knows of itself and the cluster.
type Status struct {
	ID           string        `json:"id"`
	State        string        `json:"state"` // Leader, Follower, Candidate, Shutdown
	LeaderID     string        `json:"leader_id,omitempty"`
	LeaderAddr   string        `json:"leader_addr,omitempty"`
	Term         uint64        `json:"term"`
	CommitIndex  uint64        `json:"commit_index"`
	AppliedIndex uint64        `json:"applied_index"`
	LastIndex    uint64        `json:"last_index"`
	LastContact  time.Duration `json:"last_contact"` // since the leader was last heard from; zero on the leader
	Members      []Member      `json:"members"`
}

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	Addr     string `json:"addr"`
	Suffrage string `json:"suffrage"` // Voter, Nonvoter, Staging
}

// Status reports this member's view.
func (n *Node) Status() (Status, error) {
	s := Status{
		ID:           n.cfg.ID,
		State:        n.raft.State().String(),
		Term:         n.raft.CurrentTerm(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(),
		LastIndex:    n.raft.LastIndex(),
	}
	s.LeaderID, s.LeaderAddr = n.Leader()
	if n.raft.State() != raft.Leader {
		if t := n.raft.LastContact(); !t.IsZero() {
			s.LastContact = time.Since(t)
		}
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return s, fmt.Errorf("cluster: configuration: %w", err)
	}
	for _, srv := range f.Configuration().Servers {
		s.Members = append(s.Members, Member{ID: string(srv.ID), Addr: string(srv.Address), Suffrage: srv.Suffrage.String()})
	}
	return s, nil
}

// Metrics is what the process exports of its member, read without a
// round trip through raft's main loop.
type Metrics struct {
	State         raft.RaftState // 0 follower, 1 candidate, 2 leader, 3 shutdown
	Term          uint64
	CommitIndex   uint64
	AppliedIndex  uint64
	LastContact   time.Duration // since the leader was last heard from; zero on the leader
	LeaderChanges uint64        // leaders this member observed (a new leader, or none) since it started
}

// Metrics reports this member's counters.
func (n *Node) Metrics() Metrics {
	m := Metrics{
		State: n.raft.State(), Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(),
		AppliedIndex: n.raft.AppliedIndex(), LeaderChanges: n.leaderChanges.Load(),
	}
	if m.State != raft.Leader {
		if t := n.raft.LastContact(); !t.IsZero() {
			m.LastContact = time.Since(t)
		}
	}
	return m
}
