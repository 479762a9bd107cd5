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
