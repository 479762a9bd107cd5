package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/extauthz/extauthz/internal/testnet"
)

// The admin cluster under faults, over three real processes: 16 clients
// create, read and revoke keys through random members while fault rounds
// kill, pause and partition members; the history of calls and returns is
// checked linearizable with porcupine against a model of the key set (the
// method of etcd's robustness tests), and every member must end with the
// same records, revisions and change log.

// raftProxy is a TCP proxy in front of one member's raft port: the address
// the others know it by. Each member binds and dials from its own loopback
// IP (--raft-bind-addr), so the proxy tells the dialling member by the
// connection's source IP and can cut chosen (source, destination) pairs.
type raftProxy struct {
	ln       net.Listener
	dst      string            // this proxy's member
	upstream string            // its real raft listener
	byIP     map[string]string // source IP -> member id
	net      *raftNet
}

// raftNet is the set of proxies and the pairs currently cut.
type raftNet struct {
	mu    sync.Mutex
	cut   map[[2]string]bool
	conns map[[2]string][]net.Conn
}

func (rn *raftNet) blocked(src, dst string) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	return rn.cut[[2]string{src, dst}]
}

// partition cuts id from every other member in both directions and
// closes their open connections.
func (rn *raftNet) partition(id string, others []string) {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	for _, o := range others {
		for _, pair := range [][2]string{{id, o}, {o, id}} {
			rn.cut[pair] = true
			for _, c := range rn.conns[pair] {
				c.Close()
			}
			delete(rn.conns, pair)
		}
	}
}

func (rn *raftNet) heal() {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	rn.cut = map[[2]string]bool{}
}

func (rn *raftNet) track(pair [2]string, cs ...net.Conn) bool {
	rn.mu.Lock()
	defer rn.mu.Unlock()
	if rn.cut[pair] {
		return false
	}
	rn.conns[pair] = append(rn.conns[pair], cs...)
	return true
}

func (p *raftProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			src := p.byIP[host]
			pair := [2]string{src, p.dst}
			if src == "" || p.net.blocked(src, p.dst) {
				c.Close()
				return
			}
			up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
			if err != nil {
				c.Close()
				return
			}
			if !p.net.track(pair, c, up) {
				c.Close()
				up.Close()
				return
			}
			go func() { io.Copy(up, c); up.Close() }()
			io.Copy(c, up)
			c.Close()
		}()
	}
}

// haCluster is three admin processes whose raft traffic goes through a
// raftProxy each.
type haCluster struct {
	t         *testing.T
	ids       []string
	dirs      []string
	args      [][]string
	env       []string
	token     string
	replToken string
	net       *raftNet

	mu    sync.Mutex
	procs []*proc
}

func newHACluster(t *testing.T, exe string) *haCluster {
	dir := t.TempDir()
	policy := copyPolicy(t, dir, "nexgent.yaml")
	hc := &haCluster{t: t, ids: []string{"a", "b", "c"}, token: "operator-token-for-tests-0123456789", replToken: "replication-token-for-tests-42",
		net: &raftNet{cut: map[[2]string]bool{}, conns: map[[2]string][]net.Conn{}}}
	adminTok := writeFile(t, dir, "admin-token", hc.token+"\n")
	replTok := writeFile(t, dir, "replication-token", hc.replToken+"\n")
	ca := raftPKI(t, dir, hc.ids)
	byIP := map[string]string{}
	var peers []string
	var binds []string
	for i, id := range hc.ids {
		ip := fmt.Sprintf("127.0.0.%d", 11+i) // all of 127/8 is loopback on Linux
		byIP[ip] = id
		binds = append(binds, testnet.FreeAddrOn(t, ip))
	}
	for i, id := range hc.ids {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		p := &raftProxy{ln: ln, dst: id, upstream: binds[i], byIP: byIP, net: hc.net}
		go p.serve()
		peers = append(peers, id+"="+ln.Addr().String())
		hc.dirs = append(hc.dirs, filepath.Join(dir, id))
		hc.args = append(hc.args, []string{"admin", "--data-dir", hc.dirs[i], "--policy", policy, "--admin-token-file", adminTok,
			"--replication-token-file", replTok, "--admin-addr", "127.0.0.1:0", "--node-id", id,
			"--raft-addr", ln.Addr().String(), "--raft-bind-addr", binds[i],
			"--raft-tls-cert-file", filepath.Join(dir, id+".pem"), "--raft-tls-key-file", filepath.Join(dir, id+"-key.pem"),
			"--raft-tls-ca-file", ca})
	}
	hc.env = []string{"EXTAUTHZ_RAFT_PEERS=" + strings.Join(peers, ",")}
	for i := range hc.ids {
		hc.procs = append(hc.procs, startProc(t, exe, hc.env, hc.args[i]...))
	}
	for i := range hc.ids {
		hc.waitReady(i)
	}
	return hc
}

func (hc *haCluster) url(i int) string {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.procs[i].url("admin")
}

func (hc *haCluster) proc(i int) *proc {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.procs[i]
}

func (hc *haCluster) restart(i int, exe string) {
	p := startProc(hc.t, exe, hc.env, hc.args[i]...)
	hc.mu.Lock()
	hc.procs[i] = p
	hc.mu.Unlock()
}

func (hc *haCluster) waitReady(i int) {
	eventually(hc.t, hc.ids[i]+" ready", func() bool {
		code, _ := tryJSON("GET", hc.url(i)+"/readyz", "", nil, nil)
		return code == 200
	})
}

// raftState reads member i's extauthz_raft_state (2: leader); -1 when it
// does not answer.
func (hc *haCluster) raftState(i int) int {
	resp, err := lzClient.Get(hc.url(i) + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "extauthz_raft_state "); ok {
			var s int
			fmt.Sscan(v, &s)
			return s
		}
	}
	return -1
}

// leaderAmong waits until exactly one of members leads and returns it.
func (hc *haCluster) leaderAmong(members ...int) int {
	l := -1
	eventually(hc.t, "a leader", func() bool {
		l = -1
		for _, i := range members {
			if hc.raftState(i) == 2 {
				if l >= 0 {
					return false
				}
				l = i
			}
		}
		return l >= 0
	})
	return l
}

func (hc *haCluster) others(i int) []int {
	var out []int
	for j := range hc.ids {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// keyOp is an operation's input: what was called on which key (a create's
// id is in its output).
type keyOp struct {
	kind string // create, get, revoke
	id   string
}

// keyResult is an operation's output.
type keyResult struct {
	id      string // a create's key
	ok      bool   // create 201, get 200 (live), revoke 200
	unknown bool   // a revoke answered neither 200 nor 404: it may or may not be in force
}

const (
	keyAbsent = iota
	keyLive
	keyRevoked
)

// keySetModel: keys are independent (the history is partitioned by id);
// a key is absent, live after its create, revoked after its first
// revocation. GET answers 200 for a live key only; DELETE answers 200 when
// it revoked a live key and 404 otherwise.
var keySetModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		for _, op := range h {
			id := op.Input.(keyOp).id
			if id == "" {
				id = op.Output.(keyResult).id
			}
			by[id] = append(by[id], op)
		}
		out := make([][]porcupine.Operation, 0, len(by))
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return keyAbsent },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int), input.(keyOp), output.(keyResult)
		switch in.kind {
		case "create":
			return s == keyAbsent, keyLive
		case "get":
			return out.ok == (s == keyLive), s
		case "revoke":
			switch {
			case out.unknown && s == keyLive:
				return true, keyRevoked
			case out.unknown:
				return true, s
			case out.ok:
				return s == keyLive, keyRevoked
			}
			return s != keyLive, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(keyOp), output.(keyResult)
		return fmt.Sprintf("%s(%s) -> ok=%v unknown=%v", in.kind, in.id+out.id, out.ok, out.unknown)
	},
}

// history is the workload's record of operations.
type history struct {
	mu      sync.Mutex
	start   time.Time
	ops     []porcupine.Operation
	ids     []string        // keys whose create answered 201
	raws    []string        // their raw keys
	revoked map[string]bool // keys a revocation answered 200 for
	tried   map[string]bool // keys any revocation was sent for
	answers map[string]int  // "POST 201", "GET error", ...: counts, for the log
}

func (h *history) answered(method string, code int, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := fmt.Sprintf("%s %d", method, code)
	if err != nil {
		a = method + " error"
	}
	h.answers[a]++
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(client int, in keyOp, out keyResult, call, ret int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if out.unknown {
		ret = 1 << 62 // it may take effect at any time after its call
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret})
}

// randomID picks one of the recent keys, so that clients collide on them.
func (h *history) randomID(r *rand.Rand) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ids) == 0 {
		return ""
	}
	return h.ids[len(h.ids)-1-r.IntN(min(len(h.ids), 8))]
}

// lzClient bounds a call to a stopped (SIGSTOP) member.
var lzClient = &http.Client{Timeout: 15 * time.Second}

// client runs one client's loop until stop is closed. A create that did
// not answer 201 is left out (its key id is never learnt, so no other
// operation names it); a read that did not answer 200 or 404 had no effect
// and is left out; a revocation that did not answer is of unknown outcome.
func (h *history) client(id int, hc *haCluster, stop <-chan struct{}) {
	r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	failed := false
	for {
		select {
		case <-stop:
			return
		default:
		}
		if failed {
			// A member down or without a leader answers at once: spare
			// the CPU (the pause is no part of any check).
			time.Sleep(10 * time.Millisecond)
		}
		failed = true
		node := hc.url(r.IntN(len(hc.ids)))
		call := h.now()
		switch p := r.IntN(10); {
		case p < 4:
			var k createdKey
			code, err := clientJSON(lzClient, "POST", node+"/api/v1/api-keys", hc.token, map[string]any{"name": "lz", "scopes": []string{"signals"}}, &k)
			h.answered("POST", code, err)
			failed = code != 201
			if err == nil && code == 201 && k.ID != "" {
				h.add(id, keyOp{kind: "create"}, keyResult{id: k.ID, ok: true}, call, h.now())
				h.mu.Lock()
				h.ids, h.raws = append(h.ids, k.ID), append(h.raws, k.Key)
				h.mu.Unlock()
			}
		case p < 7:
			kid := h.randomID(r)
			if kid == "" {
				continue
			}
			code, err := clientJSON(lzClient, "GET", node+"/api/v1/api-keys/"+kid, hc.token, nil, nil)
			h.answered("GET", code, err)
			failed = code != 200 && code != 404
			if err == nil && (code == 200 || code == 404) {
				h.add(id, keyOp{kind: "get", id: kid}, keyResult{ok: code == 200}, call, h.now())
			}
		default:
			kid := h.randomID(r)
			if kid == "" {
				continue
			}
			h.mu.Lock()
			h.tried[kid] = true
			h.mu.Unlock()
			code, err := clientJSON(lzClient, "DELETE", node+"/api/v1/api-keys/"+kid, hc.token, nil, nil)
			h.answered("DELETE", code, err)
			failed = code != 200 && code != 404
			switch {
			case err == nil && (code == 200 || code == 404):
				h.add(id, keyOp{kind: "revoke", id: kid}, keyResult{ok: code == 200}, call, h.now())
				if code == 200 {
					h.mu.Lock()
					h.revoked[kid] = true
					h.mu.Unlock()
				}
			default:
				h.add(id, keyOp{kind: "revoke", id: kid}, keyResult{unknown: true}, call, 0)
			}
		}
	}
}

// Fault kinds of a round.
const (
	faultKillLeader = iota
	faultKillFollower
	faultPauseLeader
	faultPartitionLeader
	faultKinds
)

// runFaults runs 16 clients through the given fault rounds and returns
// their history. exe restarts killed members.
func runFaults(t *testing.T, hc *haCluster, exe string, rounds []int) *history {
	h := &history{start: time.Now(), revoked: map[string]bool{}, tried: map[string]bool{}, answers: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() { h.client(i, hc, stop) })
	}
	all := []int{0, 1, 2}
	// Load before each fault: wait for a few acknowledged creates (an
	// observed state, not a duration).
	loaded := func() {
		h.mu.Lock()
		n := len(h.ids)
		h.mu.Unlock()
		eventually(t, "writes between faults", func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return len(h.ids) >= n+20
		})
	}
	for round, kind := range rounds {
		loaded()
		l := hc.leaderAmong(all...)
		switch kind {
		case faultKillLeader:
			t.Logf("round %d: SIGKILL of the leader %s, then a restart", round, hc.ids[l])
			hc.proc(l).stop(t, syscall.SIGKILL)
			hc.leaderAmong(hc.others(l)...)
			hc.restart(l, exe)
		case faultKillFollower:
			f := hc.others(l)[rand.IntN(2)]
			t.Logf("round %d: SIGKILL of the follower %s, then a restart", round, hc.ids[f])
			hc.proc(f).stop(t, syscall.SIGKILL)
			loaded()
			hc.restart(f, exe)
		case faultPauseLeader:
			t.Logf("round %d: SIGSTOP of the leader %s until another leads, then SIGCONT", round, hc.ids[l])
			p := hc.proc(l)
			_ = p.cmd.Process.Signal(syscall.SIGSTOP)
			hc.leaderAmong(hc.others(l)...)
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
		case faultPartitionLeader:
			t.Logf("round %d: the leader %s partitioned from the others (raft proxies) until they elect another, then healed", round, hc.ids[l])
			hc.net.partition(hc.ids[l], []string{hc.ids[hc.others(l)[0]], hc.ids[hc.others(l)[1]]})
			hc.leaderAmong(hc.others(l)...)
			loaded() // writes on the majority while the old leader is cut off and still answers reads
			hc.net.heal()
		}
		for i := range all {
			hc.waitReady(i)
		}
	}
	loaded()
	close(stop)
	wg.Wait()
	t.Logf("answers: %v", h.answers)
	return h
}

// randomRounds returns n fault rounds: every kind once in a random order,
// then random kinds.
func randomRounds(n int) []int {
	out := rand.Perm(faultKinds)
	for len(out) < n {
		out = append(out, rand.IntN(faultKinds))
	}
	return out
}

// checkLinearizable checks h with porcupine and writes the visualization
// of an illegal history into a temporary dir.
func checkLinearizable(t *testing.T, h *history) porcupine.CheckResult {
	// A revocation of unknown outcome may take effect at any time after
	// its call, and revoking twice is revoking once: per key, the earliest
	// such revocation allows every behaviour the later ones do, and
	// keeping only it keeps the search small.
	var ops []porcupine.Operation
	firstUnknown := map[string]int{}
	for _, op := range h.ops {
		in, out := op.Input.(keyOp), op.Output.(keyResult)
		if in.kind == "revoke" && out.unknown {
			if i, ok := firstUnknown[in.id]; ok {
				if op.Call < ops[i].Call {
					ops[i] = op
				}
				continue
			}
			firstUnknown[in.id] = len(ops)
		}
		ops = append(ops, op)
	}
	res, info := porcupine.CheckOperationsVerbose(keySetModel, ops, 2*time.Minute)
	t.Logf("porcupine: %s over %d operations", res, len(ops))
	if res == porcupine.Illegal {
		out := filepath.Join(t.TempDir(), "history.html")
		if err := porcupine.VisualizePath(keySetModel, info, out); err == nil {
			t.Logf("visualization of the history: %s", out)
		}
	}
	return res
}

// replicaState is a member's replication view: its snapshot's header and
// trailer, the key ids and revoked ids in it, and its whole change log.
type replicaState struct {
	head    string // revision, store id, count, sha256
	keys    map[string]bool
	revoked map[string]bool
	changes []byte
	keyLog  map[string]int // key id -> changes of it in the log
}

func (hc *haCluster) replicaState(t *testing.T, i int) replicaState {
	t.Helper()
	get := func(ctx context.Context, path string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", hc.url(i)+path, nil)
		req.Header.Set("Authorization", "Bearer "+hc.replToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s %s: %v %v", hc.ids[i], path, resp, err)
		}
		return resp
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp := get(ctx, "/replication/v1/snapshot")
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s snapshot: %v", hc.ids[i], err)
	}
	st := replicaState{keys: map[string]bool{}, revoked: map[string]bool{}, keyLog: map[string]int{}}
	var rev uint64
	for line := range bytes.SplitSeq(bytes.TrimSpace(b), []byte("\n")) {
		var l struct {
			Type     string `json:"type"`
			Revision uint64 `json:"revision"`
			StoreID  string `json:"store_id"`
			Count    int    `json:"count"`
			SHA      string `json:"sha256"`
			Key      struct {
				ID        string  `json:"id"`
				RevokedAt *string `json:"revoked_at"`
			} `json:"key"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("%s snapshot line %q: %v", hc.ids[i], line, err)
		}
		switch l.Type {
		case "header":
			rev = l.Revision
			st.head = fmt.Sprintf("revision %d store %s", l.Revision, l.StoreID)
		case "key":
			st.keys[l.Key.ID] = true
			if l.Key.RevokedAt != nil {
				st.revoked[l.Key.ID] = true
			}
		case "end":
			st.head += fmt.Sprintf(" count %d sha256 %s", l.Count, l.SHA)
		}
	}
	// The change log from the start up to the snapshot's revision, which
	// must come in consecutive revisions.
	resp = get(ctx, "/replication/v1/watch?since=0")
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var last uint64
	for last < rev && sc.Scan() {
		var l struct {
			Type     string `json:"type"`
			Revision uint64 `json:"revision"`
			Key      struct {
				ID string `json:"id"`
			} `json:"key"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s watch line: %v", hc.ids[i], err)
		}
		if l.Type == "heartbeat" {
			continue
		}
		if l.Revision != last+1 {
			t.Fatalf("%s change log: revision %d after %d", hc.ids[i], l.Revision, last)
		}
		last = l.Revision
		if l.Type == "key" {
			st.keyLog[l.Key.ID]++
		}
		st.changes = append(append(st.changes, sc.Bytes()...), '\n')
	}
	if last != rev {
		t.Fatalf("%s change log ends at %d, its snapshot is at %d", hc.ids[i], last, rev)
	}
	return st
}

// checkConverged: every member holds the same records, revisions and
// change log; every key whose create answered 201 exists; every
// revocation that answered 200 is in force, and a key no revocation was
// sent for is live; no change was applied twice (the workload changes a
// key twice at most: its create, its revocation).
func checkConverged(t *testing.T, hc *haCluster, h *history) {
	var states []replicaState
	eventually(t, "every member at the same revision", func() bool {
		states = states[:0]
		for i := range hc.ids {
			states = append(states, hc.replicaState(t, i))
		}
		return states[0].head == states[1].head && states[1].head == states[2].head
	})
	for i, st := range states {
		if !bytes.Equal(st.changes, states[0].changes) {
			t.Errorf("%s's change log differs from %s's", hc.ids[i], hc.ids[0])
		}
	}
	st := states[0]
	for id := range st.keys {
		if want := map[bool]int{false: 1, true: 2}[st.revoked[id]]; st.keyLog[id] != want {
			t.Errorf("key %s (revoked: %v) has %d changes in the log, want %d", id, st.revoked[id], st.keyLog[id], want)
		}
	}
	for _, id := range h.ids {
		switch {
		case !st.keys[id]:
			t.Errorf("key %s was created (201) and does not exist", id)
		case h.revoked[id] && !st.revoked[id]:
			t.Errorf("key %s was revoked (200) and is live", id)
		case !h.tried[id] && st.revoked[id]:
			t.Errorf("key %s is revoked and no revocation was sent for it", id)
		}
	}
	t.Logf("every member: %s, %d keys, %d revoked", st.head, len(st.keys), len(st.revoked))
}

// TestHAFaultRoundsLinearizable: three admins with mutual TLS raft through
// TCP proxies; 16 clients create, read and revoke keys through random
// members across 10 random fault rounds (SIGKILL of the leader or a
// follower, SIGSTOP of the leader, a partition of the leader); the history
// is linearizable, every member ends with the same records, revisions and
// gapless change log, every acknowledged create exists and every
// acknowledged revocation is in force, and no raw key is in any file.
func TestHAFaultRoundsLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("fault rounds over three processes")
	}
	hc := newHACluster(t, binPath)
	h := runFaults(t, hc, binPath, randomRounds(10))
	// A final read of every key through every member.
	for _, id := range h.ids {
		for i := range hc.ids {
			call := h.now()
			code, err := clientJSON(lzClient, "GET", hc.url(i)+"/api/v1/api-keys/"+id, hc.token, nil, nil)
			if err != nil || code != 200 && code != 404 {
				t.Fatalf("final read of %s on %s: %d %v", id, hc.ids[i], code, err)
			}
			h.add(100+i, keyOp{kind: "get", id: id}, keyResult{ok: code == 200}, call, h.now())
		}
	}
	t.Logf("%d operations, %d acknowledged creates, %d acknowledged revocations", len(h.ops), len(h.ids), len(h.revoked))
	if res := checkLinearizable(t, h); res != porcupine.Ok {
		t.Fatalf("the history is not linearizable: %s", res)
	}
	checkConverged(t, hc, h)
	for i := range hc.ids {
		hc.proc(i).stop(t, syscall.SIGTERM)
	}
	noRawKeys(t, hc.dirs, h.raws, 6)
}

// TestHALinearizabilityCatchesStaleReads: a build whose members answer
// reads without the read index (-tags extauthz_broken_reads) fails the
// same check: the check can fail.
func TestHALinearizabilityCatchesStaleReads(t *testing.T) {
	if testing.Short() {
		t.Skip("fault rounds over three processes")
	}
	broken := filepath.Join(t.TempDir(), "extauthz-broken")
	build := exec.Command("go", "build", "-tags", "extauthz_broken_reads", "-o", broken, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	hc := newHACluster(t, broken)
	for attempt := range 5 {
		h := runFaults(t, hc, broken, []int{faultPartitionLeader})
		if res := checkLinearizable(t, h); res == porcupine.Illegal {
			t.Logf("attempt %d: the broken build's history is not linearizable, as it must not be", attempt)
			return
		}
	}
	t.Fatal("the check passed a build that serves stale reads")
}
