package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestSingleAdminUpgradesToACluster: a single admin with keys and a
// sidecar at its revision is restarted as the first of three members
// (--raft-peers); the two others, with empty data dirs, are started first
// and cannot elect a leader without it. Then every member holds every key
// at the same revision under the single admin's store id, and the sidecar
// resumes its watch from its revision: no new snapshot.
func TestSingleAdminUpgradesToACluster(t *testing.T) {
	dir := t.TempDir()
	policy := copyPolicy(t, dir, "nexgent.yaml")
	token := "operator-token-for-tests-0123456789"
	adminTok := writeFile(t, dir, "admin-token", token+"\n")
	replTok := writeFile(t, dir, "replication-token", "replication-token-for-tests-42\n")
	ids := []string{"a", "b", "c"}
	ca := raftPKI(t, dir, ids)
	adminAddr, raftAddrs := map[string]string{}, map[string]string{}
	var peers []string
	for _, id := range ids {
		adminAddr[id], raftAddrs[id] = freeAddr(t), freeAddr(t)
		peers = append(peers, id+"="+raftAddrs[id])
	}
	adminArgs := func(id string, raft bool) []string {
		args := []string{"admin", "--data-dir", filepath.Join(dir, id), "--policy", policy, "--admin-token-file", adminTok,
			"--replication-token-file", replTok, "--admin-addr", adminAddr[id], "--heartbeat", "100ms"}
		if raft {
			args = append(args, "--raft-peers", strings.Join(peers, ","), "--node-id", id, "--raft-addr", raftAddrs[id],
				"--raft-tls-cert-file", filepath.Join(dir, id+".pem"), "--raft-tls-key-file", filepath.Join(dir, id+"-key.pem"),
				"--raft-tls-ca-file", ca)
		}
		return args
	}
	metric := func(url, name string) string {
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
	// storeID reads the store id a member serves sidecars (the snapshot's
	// header line).
	storeID := func(url string) string {
		t.Helper()
		req, _ := http.NewRequest("GET", url+"/replication/v1/snapshot", nil)
		req.Header.Set("Authorization", "Bearer replication-token-for-tests-42")
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
	url := func(id string) string { return "http://" + adminAddr[id] }

	single := start(t, adminArgs("a", false)...)
	var keys []createdKey
	for i := range 3 {
		var k createdKey
		if code := httpJSON(t, "POST", url("a")+"/api/v1/api-keys", token, map[string]any{"name": fmt.Sprint("k", i), "scopes": []string{"signals"}}, &k); code != 201 {
			t.Fatalf("create: %d", code)
		}
		keys = append(keys, k)
	}
	if code := httpJSON(t, "DELETE", url("a")+"/api/v1/api-keys/"+keys[0].ID, token, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	rev, id := metric(url("a"), "extauthz_store_revision"), storeID(url("a"))
	sidecar := start(t, "sidecar", "--admin-url", url("a"), "--replication-token-file", replTok, "--policy", policy,
		"--data-dir", filepath.Join(dir, "sidecar"), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--reconnect-max-backoff", "100ms")
	const sig = "/api/v1/trading-signals"
	decides := func(what, key string, want int) {
		t.Helper()
		eventually(t, "sidecar: "+what, func() bool {
			code, _ := forwardAuth(t, sidecar.url("http"), "GET", sig, map[string]string{"X-API-Key": key})
			return code == want
		})
	}
	decides("live key", keys[1].Key, 200)
	decides("revoked key", keys[0].Key, 401)
	eventually(t, "sidecar at the admin's revision", func() bool { return metric(sidecar.url("http"), "extauthz_replica_revision") == rev })
	resyncs := metric(sidecar.url("http"), `extauthz_replica_resyncs_total{result="ok"}`)
	if resyncs != "1" {
		t.Fatalf("sidecar loaded %s snapshots; want 1", resyncs)
	}
	if code := single.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("single admin exit %d", code)
	}

	// The two empty members alone reach their election timeout and give
	// up: they have no configuration, so they never campaign.
	procs := map[string]*proc{}
	for _, m := range ids[1:] {
		procs[m] = start(t, adminArgs(m, true)...)
	}
	for _, m := range ids[1:] {
		procs[m].logs.waitFor(t, m+" giving up an election without a configuration", func(l map[string]any) bool {
			return l["message"] == "no known peers, aborting election"
		})
		if code, _ := tryJSON("GET", url(m)+"/readyz", "", nil, nil); code == 200 {
			t.Fatalf("%s is ready without a leader", m)
		}
		if st := metric(url(m), "extauthz_raft_state"); st != "0" {
			t.Fatalf("%s raft state %s without the member that has the keys; want 0 (follower)", m, st)
		}
	}

	procs["a"] = start(t, adminArgs("a", true)...)
	for _, m := range ids {
		eventually(t, m+" ready in the cluster", func() bool {
			code, _ := tryJSON("GET", url(m)+"/readyz", "", nil, nil)
			return code == 200
		})
	}
	for _, m := range ids {
		if got := metric(url(m), "extauthz_store_revision"); got != rev {
			t.Errorf("%s at revision %s; want the single admin's %s", m, got, rev)
		}
		if got := storeID(url(m)); got != id {
			t.Errorf("%s has store id %s; want the single admin's %s", m, got, id)
		}
		for i, k := range keys {
			want := 200
			if i == 0 {
				want = 404 // revoked
			}
			if code, err := tryJSON("GET", url(m)+"/api/v1/api-keys/"+k.ID, token, nil, nil); code != want {
				t.Errorf("%s: GET key %d: %d (%v); want %d", m, i, code, err, want)
			}
		}
	}
	// A write through a follower reaches the sidecar over the watch it
	// resumed: no second snapshot.
	var next createdKey
	eventually(t, "b takes a write", func() bool {
		code, _ := tryJSON("POST", url("b")+"/api/v1/api-keys", token, map[string]any{"name": "after", "scopes": []string{"signals"}}, &next)
		return code == 201
	})
	decides("key made in the cluster", next.Key, 200)
	decides("revoked key", keys[0].Key, 401)
	if got := metric(sidecar.url("http"), `extauthz_replica_resyncs_total{result="ok"}`); got != resyncs {
		t.Fatalf("sidecar loaded %s snapshots; want %s (it resumes its watch)", got, resyncs)
	}
}
