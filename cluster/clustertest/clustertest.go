package clustertest

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/cluster"
	"github.com/extauthz/extauthz/internal/testnet"
	"github.com/extauthz/extauthz/internal/testpki"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// Member is one running member of a test cluster.
type Member struct {
	ID    string
	Store *keystore.Store // its own store, the state machine it applies
	Node  *cluster.Node
	// Writer proposes through this member (a follower forwards to the
	// leader), stamping commands with the cluster's clock.
	Writer *cluster.Writer
}

// Start runs n members (ids "a", "b", ...) on loopback, their stores on
// a clock of now (nil: time.Now), and returns them once members[0] leads
// and every member knows it. members[0] campaigns first and the others
// only after a long silence, so that it keeps the leadership through a
// test on a loaded machine: a test that writes through another member
// writes through a follower. Everything stops when t ends.
func Start(t testing.TB, n int, now func() time.Time) []*Member {
	t.Helper()
	if now == nil {
		now = time.Now
	}
	dir := t.TempDir()
	ca := testpki.NewCA(t, "raft CA")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	members := make([]*Member, n)
	addrs := make([]string, n)
	var peers []cluster.Peer
	for i := range members {
		addrs[i] = testnet.FreeAddr(t)
		peers = append(peers, cluster.Peer{ID: string(rune('a' + i)), Addr: addrs[i]})
	}
	for i, p := range peers {
		cert, key := ca.WritePeerPair(t, dir, p.ID, "127.0.0.1")
		tlsConf, err := cluster.LoadTLS(cert, key, caFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := keystoretest.OpenAt(t, filepath.Join(dir, p.ID+".db"), keystore.Options{Now: now})
		node, err := cluster.Start(cluster.Config{
			ID: p.ID, Advertise: p.Addr, Peers: peers, Dir: filepath.Join(dir, p.ID+"-raft"),
			TLS: tlsConf, Store: st, Raft: timeouts(i == 0),
			Logger: hclog.New(&hclog.LoggerOptions{Name: p.ID, Level: hclog.Error, Output: logWriter{t}}),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := node.Close(); err != nil {
				t.Errorf("close member %s: %v", p.ID, err)
			}
		})
		members[i] = &Member{ID: p.ID, Store: st, Node: node, Writer: &cluster.Writer{Node: node, Now: now}}
	}
	deadline := time.Now().Add(60 * time.Second)
	for !settled(members) {
		if time.Now().After(deadline) {
			t.Fatal("clustertest: member a does not lead a cluster every member knows")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return members
}

// timeouts has the preferred member campaign after half a second of
// silence and the others after half a minute.
func timeouts(preferred bool) func(*raft.Config) {
	d := 30 * time.Second
	if preferred {
		d = 500 * time.Millisecond
	}
	return func(c *raft.Config) {
		c.HeartbeatTimeout, c.ElectionTimeout = d, d
		c.LeaderLeaseTimeout = 500 * time.Millisecond
	}
}

func settled(members []*Member) bool {
	if !members[0].Node.IsLeader() || members[0].Node.Barrier() != nil {
		return false
	}
	for _, m := range members {
		if id, _ := m.Node.Leader(); id != members[0].ID {
			return false
		}
	}
	return true
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}
