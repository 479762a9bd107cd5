package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/admin"
	admincluster "github.com/extauthz/extauthz/cluster"
	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/metrics"
	"github.com/extauthz/extauthz/strictjson"
)

// The replicated writer has the admin's write methods.
var _ admin.Writer = (*admincluster.Writer)(nil)

// clusterBehindWait is how long a member's replication feed waits for a
// revision a sidecar already has (from another member) before it answers
// 503 (retry).
const clusterBehindWait = 5 * time.Second

// raftFlags are the admin's cluster flags. Without --raft-peers the admin
// is one process with one writer, exactly as before the cluster existed.
type raftFlags struct {
	nodeID, addr, bind, peers string
	cert, key, ca             string
}

func (r *raftFlags) register(f *flag.FlagSet) {
	host, _ := os.Hostname()
	f.StringVar(&r.nodeID, "node-id", host, "this admin's id in the cluster (unique, stable across restarts)")
	f.StringVar(&r.addr, "raft-addr", "", "host:port the other admins reach this one's raft port at; it listens on that port on every interface (on an IP literal, on that address)")
	f.StringVar(&r.bind, "raft-bind-addr", "", "host:port the raft port listens on, when not the one --raft-addr implies (a proxy or NAT between the admins); on an IP literal the admin also dials its peers from that address")
	f.StringVar(&r.peers, "raft-peers", "", "initial voters id=host:port,... , the same on every admin; empty: no cluster")
	f.StringVar(&r.cert, "raft-tls-cert-file", "", "PEM certificate of this admin for raft mutual TLS (server and client use; names the host of --raft-addr)")
	f.StringVar(&r.key, "raft-tls-key-file", "", "PEM private key of --raft-tls-cert-file")
	f.StringVar(&r.ca, "raft-tls-ca-file", "", "PEM CA bundle that signs every admin's raft certificate")
}

func (r *raftFlags) enabled() bool { return r.peers != "" }

// problems reports incomplete cluster flags.
func (r *raftFlags) problems() []error {
	if !r.enabled() {
		if r.addr != "" || r.bind != "" || r.cert != "" || r.key != "" || r.ca != "" {
			return []error{errors.New("--raft-addr, --raft-bind-addr and --raft-tls-* need --raft-peers")}
		}
		return nil
	}
	var errs []error
	if _, err := admincluster.ParsePeers(r.peers); err != nil {
		errs = append(errs, fmt.Errorf("--raft-peers: %w", err))
	}
	if r.nodeID == "" {
		errs = append(errs, errors.New("--node-id is required with --raft-peers"))
	}
	if r.addr == "" {
		errs = append(errs, errors.New("--raft-addr is required with --raft-peers"))
	}
	if _, _, err := net.SplitHostPort(r.bind); r.bind != "" && err != nil {
		errs = append(errs, fmt.Errorf("--raft-bind-addr %q: %w", r.bind, err))
	}
	if r.cert == "" || r.key == "" || r.ca == "" {
		errs = append(errs, errors.New("--raft-tls-cert-file, --raft-tls-key-file and --raft-tls-ca-file are required with --raft-peers (raft traffic is mutual TLS)"))
	}
	return errs
}

// bindAddr is where the raft listener binds for an advertised host:port:
// that port on every interface, unless the host is an IP address. A DNS
// name (a StatefulSet pod's) is advertised, not bound, so the listener
// does not wait for the name to resolve.
func bindAddr(advertise string) (string, error) {
	host, port, err := net.SplitHostPort(advertise)
	if err != nil {
		return "", fmt.Errorf("--raft-addr %q: %w", advertise, err)
	}
	if net.ParseIP(host) != nil {
		return advertise, nil
	}
	return net.JoinHostPort("", port), nil
}

// startCluster makes the admin's store the state machine of a raft member.
func (n *node) startCluster() (*admincluster.Writer, error) {
	r := n.cfg.raft
	peers, err := admincluster.ParsePeers(r.peers)
	if err != nil {
		return nil, err
	}
	log := n.log.With().Str("component", "raft").Logger()
	tlsConf, err := admincluster.LoadTLS(r.cert, r.key, r.ca, reloadErrorLogger(log))
	if err != nil {
		return nil, err
	}
	bind := r.bind
	if bind == "" {
		if bind, err = bindAddr(r.addr); err != nil {
			return nil, err
		}
	}
	node, err := admincluster.Start(admincluster.Config{
		ID: r.nodeID, Advertise: r.addr, Bind: bind, Peers: peers,
		Dir: filepath.Join(n.cfg.dataDir, "raft"), TLS: tlsConf, Store: n.store,
		Logger: hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, JSONFormat: true, Output: hclogToZerolog{log}}),
	})
	if err != nil {
		return nil, err
	}
	n.cluster = node
	n.closers = append(n.closers, node.Close)
	if err := registerRaftMetrics(n.reg, node); err != nil {
		return nil, err
	}
	log.Info().Str("node_id", r.nodeID).Str("raft_addr", r.addr).Int("peers", len(peers)).Msg("admin cluster member started")
	return &admincluster.Writer{Node: node}, nil
}

// clusterNotReady is the cluster's part of /readyz: a member is ready when
// it knows a leader, has applied what it knows to be committed, and its
// store holds every write the leader acknowledged.
func (n *node) clusterNotReady() error {
	st, err := n.cluster.Status()
	if err != nil {
		return err
	}
	if st.LeaderID == "" {
		return errors.New("no cluster leader")
	}
	if st.AppliedIndex < st.CommitIndex {
		return fmt.Errorf("catching up with the cluster (applied %d of %d)", st.AppliedIndex, st.CommitIndex)
	}
	// Its own commit index says nothing until the leader's log matched
	// its: a member that joined is behind the leader's read index.
	return n.cluster.CaughtUp()
}

// leaderKnown is the replication feed's ServerOptions.Current on a
// cluster member: without a leader (an election, or cut off from the
// others) the member cannot tell whether its store is current.
func (n *node) leaderKnown() error {
	if id, _ := n.cluster.Leader(); id == "" {
		return errors.New("no cluster leader: this admin cannot tell whether it is current; retry")
	}
	return nil
}

// hclogToZerolog turns raft's JSON log lines (hclog) into the process's
// own, at the same level.
type hclogToZerolog struct{ log zerolog.Logger }

func (h hclogToZerolog) Write(b []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		h.log.Info().Msg(strings.TrimSpace(string(b)))
		return len(b), nil
	}
	lvl, err := zerolog.ParseLevel(fmt.Sprint(m["@level"]))
	if err != nil || lvl == zerolog.NoLevel {
		lvl = zerolog.InfoLevel
	}
	ev := h.log.WithLevel(lvl)
	for k, v := range m {
		if !strings.HasPrefix(k, "@") {
			ev = ev.Interface(k, v)
		}
	}
	ev.Msg(fmt.Sprint(m["@message"]))
	return len(b), nil
}

// registerRaftMetrics exports the member's raft state.
func registerRaftMetrics(reg prometheus.Registerer, node *admincluster.Node) error {
	gauge := func(name, help string, v func(m admincluster.Metrics) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return v(node.Metrics()) })
	}
	return metrics.Register(reg, "raft",
		gauge("extauthz_raft_state", "Raft state of this admin: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func(m admincluster.Metrics) float64 { return float64(m.State) }),
		gauge("extauthz_raft_term", "Current raft term.", func(m admincluster.Metrics) float64 { return float64(m.Term) }),
		gauge("extauthz_raft_commit_index", "Highest raft log index known to be committed.", func(m admincluster.Metrics) float64 { return float64(m.CommitIndex) }),
		gauge("extauthz_raft_applied_index", "Highest raft log index applied to this admin's store.", func(m admincluster.Metrics) float64 { return float64(m.AppliedIndex) }),
		gauge("extauthz_raft_last_contact_seconds", "Seconds since this follower last heard from the leader (0 on the leader).", func(m admincluster.Metrics) float64 { return m.LastContact.Seconds() }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "extauthz_raft_leader_changes_total", Help: "Leader changes (a new leader, or none) this admin observed since it started."},
			func() float64 { return float64(node.Metrics().LeaderChanges) }),
	)
}

// clusterRoutes adds the membership routes of an admin cluster member to
// the admin port, for the operator only:
//
//	GET    /api/v1/cluster               every member's state, as each reports it
//	POST   /api/v1/cluster/members       {"id": "...", "addr": "host:port"} adds a voter
//	DELETE /api/v1/cluster/members/{id}  removes a member
//
// A change is made by the leader (forwarded there from a follower).
func (n *node) clusterRoutes(mux *http.ServeMux, adm *admin.Server) {
	status := func(w http.ResponseWriter) {
		view, err := n.cluster.ClusterStatus()
		if err != nil {
			jsonresp.Error(w, http.StatusInternalServerError, "cluster status: "+err.Error())
			return
		}
		leader, _ := n.cluster.Leader()
		jsonresp.Write(w, http.StatusOK, map[string]any{"leader": leader, "members": view})
	}
	change := func(w http.ResponseWriter, id, addr string) {
		if err := n.cluster.ChangeMembership(id, addr); err != nil {
			var ue *admincluster.UnavailableError
			if errors.As(err, &ue) {
				w.Header().Set("Retry-After", "1")
				jsonresp.Error(w, http.StatusServiceUnavailable, ue.Error())
				return
			}
			jsonresp.Error(w, http.StatusConflict, "membership change refused: "+err.Error())
			return
		}
		status(w)
	}
	mux.Handle("GET /api/v1/cluster", adm.OperatorOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { status(w) })))
	mux.Handle("POST /api/v1/cluster/members", adm.OperatorOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		}
		if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, 4096), &req, "request body"); err != nil {
			jsonresp.Error(w, http.StatusBadRequest, err.Error())
			return
		}
		if _, err := admincluster.ParsePeers(req.ID + "=" + req.Addr); err != nil || strings.ContainsAny(req.ID, ",=") {
			jsonresp.Error(w, http.StatusBadRequest, "id and addr (host:port of its raft port) are required")
			return
		}
		change(w, req.ID, req.Addr)
	})))
	mux.Handle("DELETE /api/v1/cluster/members/{id}", adm.OperatorOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		change(w, r.PathValue("id"), "")
	})))
}
