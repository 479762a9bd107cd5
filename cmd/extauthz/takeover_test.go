package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// raftSetup is the files and addresses of an admin cluster of real
// processes (a, b, c), each of which may also run as a single admin.
type raftSetup struct {
	t                     *testing.T
	dir, policy, token    string
	adminTok, replTok, ca string
	ids                   []string
	adminAddr, raftAddr   map[string]string
}

const testReplToken = "replication-token-for-tests-42"

func newRaftSetup(t *testing.T) *raftSetup {
	dir := t.TempDir()
	s := &raftSetup{t: t, dir: dir, policy: copyPolicy(t, dir, "nexgent.yaml"), token: "operator-token-for-tests-0123456789",
		ids: []string{"a", "b", "c"}, adminAddr: map[string]string{}, raftAddr: map[string]string{}}
	s.adminTok = writeFile(t, dir, "admin-token", s.token+"\n")
	s.replTok = writeFile(t, dir, "replication-token", testReplToken+"\n")
	s.ca = raftPKI(t, dir, s.ids)
	for _, id := range s.ids {
		s.adminAddr[id], s.raftAddr[id] = freeAddr(t), freeAddr(t)
	}
	return s
}

func (s *raftSetup) url(id string) string { return "http://" + s.adminAddr[id] }

// args are id's admin flags: a single admin, or a member of the cluster.
func (s *raftSetup) args(id string, member bool) []string {
	args := []string{"admin", "--data-dir", filepath.Join(s.dir, id), "--policy", s.policy, "--admin-token-file", s.adminTok,
		"--replication-token-file", s.replTok, "--admin-addr", s.adminAddr[id], "--heartbeat", "100ms"}
	if member {
		var peers []string
		for _, p := range s.ids {
			peers = append(peers, p+"="+s.raftAddr[p])
		}
		args = append(args, "--raft-peers", strings.Join(peers, ","), "--node-id", id, "--raft-addr", s.raftAddr[id],
			"--raft-tls-cert-file", filepath.Join(s.dir, id+".pem"), "--raft-tls-key-file", filepath.Join(s.dir, id+"-key.pem"),
			"--raft-tls-ca-file", s.ca)
	}
	return args
}

func (s *raftSetup) ready(ids ...string) {
	s.t.Helper()
	for _, id := range ids {
		eventually(s.t, id+" ready in the cluster", func() bool {
			code, _ := tryJSON("GET", s.url(id)+"/readyz", "", nil, nil)
			return code == 200
		})
	}
}

func (s *raftSetup) create(id, name string) createdKey {
	s.t.Helper()
	var k createdKey
	eventually(s.t, id+" takes a write", func() bool {
		code, _ := tryJSON("POST", s.url(id)+"/api/v1/api-keys", s.token, map[string]any{"name": name, "scopes": []string{"signals"}}, &k)
		return code == 201
	})
	return k
}

// holds fails unless every member answers GET for each key with want[i].
func (s *raftSetup) holds(keys []createdKey, want ...int) {
	s.t.Helper()
	for _, m := range s.ids {
		for i, k := range keys {
			if code, err := tryJSON("GET", s.url(m)+"/api/v1/api-keys/"+k.ID, s.token, nil, nil); code != want[i] {
				s.t.Errorf("%s: GET key %d: %d (%v); want %d", m, i, code, err, want[i])
			}
		}
	}
}

// metricValue reads one sample of url's /metrics.
func metricValue(t *testing.T, url, name string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return v
		}
	}
	return ""
}

// servedStoreID reads the store id an admin serves sidecars (its
// snapshot's header line).
func servedStoreID(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/replication/v1/snapshot", nil)
	req.Header.Set("Authorization", "Bearer "+testReplToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var hdr struct {
		StoreID string `json:"store_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&hdr); err != nil || hdr.StoreID == "" {
		t.Fatalf("snapshot of %s: %d, %v", url, resp.StatusCode, err)
	}
	return hdr.StoreID
}

// TestSingleAdminUpgradesToACluster: a single admin with keys and a
// sidecar at its revision is restarted as the first of three members
// (--raft-peers); the two others, with empty data dirs, are started first
// and cannot elect a leader without it. Then every member holds every key
// at the same revision under the single admin's store id, and the sidecar
// resumes its watch from its revision: no new snapshot.
func TestSingleAdminUpgradesToACluster(t *testing.T) {
	s := newRaftSetup(t)
	single := start(t, s.args("a", false)...)
	keys := []createdKey{s.create("a", "k0"), s.create("a", "k1"), s.create("a", "k2")}
	if code := httpJSON(t, "DELETE", s.url("a")+"/api/v1/api-keys/"+keys[0].ID, s.token, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	rev, id := metricValue(t, s.url("a"), "extauthz_store_revision"), servedStoreID(t, s.url("a"))
	sidecar := start(t, "sidecar", "--admin-url", s.url("a"), "--replication-token-file", s.replTok, "--policy", s.policy,
		"--data-dir", filepath.Join(s.dir, "sidecar"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--reconnect-max-backoff", "100ms")
	decides := func(what, key string, want int) {
		t.Helper()
		eventually(t, "sidecar: "+what, func() bool {
			code, _ := forwardAuth(t, sidecar.url("http"), "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": key})
			return code == want
		})
	}
	decides("live key", keys[1].Key, 200)
	decides("revoked key", keys[0].Key, 401)
	eventually(t, "sidecar at the admin's revision", func() bool { return metricValue(t, sidecar.url("http"), "extauthz_replica_revision") == rev })
	const resynced = `extauthz_replica_resyncs_total{result="ok"}`
	if got := metricValue(t, sidecar.url("http"), resynced); got != "1" {
		t.Fatalf("sidecar loaded %s snapshots; want 1", got)
	}
	if code := single.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("single admin exit %d", code)
	}

	// The two empty members alone reach their election timeout and give
	// up: they have no configuration, so they never campaign.
	empty := map[string]*proc{}
	for _, m := range s.ids[1:] {
		p := start(t, s.args(m, true)...)
		empty[m] = p
		p.logs.waitFor(t, m+" giving up an election without a configuration", func(l map[string]any) bool {
			return l["message"] == "no known peers, aborting election"
		})
		if code, _ := tryJSON("GET", s.url(m)+"/readyz", "", nil, nil); code == 200 {
			t.Fatalf("%s is ready without a leader", m)
		}
		if st := metricValue(t, s.url(m), "extauthz_raft_state"); st != "0" {
			t.Fatalf("%s raft state %s without the member that has the keys; want 0 (follower)", m, st)
		}
	}

	start(t, s.args("a", true)...)
	s.ready(s.ids...)
	for _, m := range s.ids {
		if got := metricValue(t, s.url(m), "extauthz_store_revision"); got != rev {
			t.Errorf("%s at revision %s; want the single admin's %s", m, got, rev)
		}
		if got := servedStoreID(t, s.url(m)); got != id {
			t.Errorf("%s has store id %s; want the single admin's %s", m, got, id)
		}
	}
	s.holds(keys, 404, 200, 200) // the first one revoked
	// A write through a follower reaches the sidecar over the watch it
	// resumed: no second snapshot.
	next := s.create("b", "after")
	decides("key made in the cluster", next.Key, 200)
	decides("revoked key", keys[0].Key, 401)
	if got := metricValue(t, sidecar.url("http"), resynced); got != "1" {
		t.Fatalf("sidecar loaded %s snapshots; want 1 (it resumes its watch)", got)
	}

	// Quorum lost (b and c killed): writes and API reads on a answer 503
	// saying so, with Retry-After; the sidecar keeps deciding.
	for _, p := range empty {
		p.stop(t, syscall.SIGKILL)
	}
	for _, req := range []struct{ method, path string }{{"POST", "/api/v1/api-keys"}, {"GET", "/api/v1/api-keys/" + next.ID}} {
		var body struct{ Error string }
		var hdr http.Header
		eventually(t, req.method+" without quorum answers 503", func() bool {
			r, _ := http.NewRequest(req.method, s.url("a")+req.path, strings.NewReader(`{"name":"lost","scopes":["signals"]}`))
			r.Header.Set("Authorization", "Bearer "+s.token)
			r.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			hdr = resp.Header
			return resp.StatusCode == 503 && json.NewDecoder(resp.Body).Decode(&body) == nil
		})
		if !strings.HasPrefix(body.Error, "admin cluster: ") || !strings.Contains(body.Error, "quorum") || hdr.Get("Retry-After") == "" {
			t.Errorf("%s without quorum: %q, Retry-After %q; want the cluster's message about its quorum", req.method, body.Error, hdr.Get("Retry-After"))
		}
	}
	decides("live key without quorum", next.Key, 200)
	decides("revoked key without quorum", keys[0].Key, 401)
}

// TestClusterBackupRestoredAsANewCluster: the cluster procedure of
// docs/operations.md. A backup taken through a follower of a running
// cluster is restored into the first member's empty data dir of a new
// cluster, which takes it over: every new member holds the backup's keys
// under a new store id.
func TestClusterBackupRestoredAsANewCluster(t *testing.T) {
	cli := func(args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errb); err != nil {
			t.Fatalf("extauthz %v: %v: %s", args, err, errb.String())
		}
		return out.String()
	}
	old := newRaftSetup(t)
	procs := map[string]*proc{}
	for _, id := range old.ids {
		procs[id] = start(t, old.args(id, true)...)
	}
	old.ready(old.ids...)
	keys := []createdKey{old.create("b", "k0"), old.create("c", "k1")}
	if code := httpJSON(t, "DELETE", old.url("a")+"/api/v1/api-keys/"+keys[0].ID, old.token, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	oldID, rev := servedStoreID(t, old.url("a")), metricValue(t, old.url("a"), "extauthz_store_revision")
	backup := filepath.Join(old.dir, "backup.db")
	if out := cli("backup", "--out", backup, "--admin-url", old.url("c"), "--admin-token-file", old.adminTok); !strings.Contains(out, "at revision "+rev) {
		t.Fatalf("backup through member c: %s; want revision %s", out, rev)
	}
	for _, p := range procs {
		p.stop(t, syscall.SIGTERM)
	}

	s := newRaftSetup(t)
	if err := os.Mkdir(filepath.Join(s.dir, "a"), 0o700); err != nil {
		t.Fatal(err)
	}
	out := cli("restore", "--from", backup, "--data-dir", filepath.Join(s.dir, "a"))
	for _, id := range s.ids {
		start(t, s.args(id, true)...)
	}
	s.ready(s.ids...)
	newID := servedStoreID(t, s.url("a"))
	if newID == oldID || !strings.Contains(out, newID) {
		t.Fatalf("restored cluster serves store id %s; want the new history restore printed (%q), not %s", newID, out, oldID)
	}
	for _, m := range s.ids {
		if got, id := metricValue(t, s.url(m), "extauthz_store_revision"), servedStoreID(t, s.url(m)); got != rev || id != newID {
			t.Errorf("%s: store %s at revision %s; want %s at %s", m, id, got, newID, rev)
		}
	}
	s.holds(keys, 404, 200)
	s.holds([]createdKey{s.create("c", "after")}, 200)
}
