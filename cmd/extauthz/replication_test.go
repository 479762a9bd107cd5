package main

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/internal/testnet"
)

// cluster is one admin and several sidecars as real processes.
type cluster struct {
	t         *testing.T
	dir       string
	policy    string
	token     string
	adminArgs []string
	admin     *proc
	sidecars  []*proc
	sideArgs  [][]string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.FreeAddr(t)
}

// newCluster starts an admin and sidecars processes, each sidecar with
// the extra flags sidecarFlags.
func newCluster(t *testing.T, sidecars int, sidecarFlags ...string) *cluster {
	dir := t.TempDir()
	c := &cluster{t: t, dir: dir, policy: copyPolicy(t, dir, "nexgent.yaml"), token: "operator-token-for-tests-0123456789"}
	adminTok := writeFile(t, dir, "admin-token", c.token+"\n")
	replTok := writeFile(t, dir, "replication-token", "  replication-token-for-tests-42\n")
	addr := freeAddr(t) // fixed, so a restarted admin is found again
	c.adminArgs = []string{"admin", "--data-dir", filepath.Join(dir, "admin"), "--policy", c.policy,
		"--admin-token-file", adminTok, "--replication-token-file", replTok, "--admin-addr", addr, "--heartbeat", "100ms"}
	c.admin = start(t, c.adminArgs...)
	for i := 0; i < sidecars; i++ {
		args := []string{"sidecar", "--admin-url", "http://" + addr, "--replication-token-file", replTok, "--policy", c.policy,
			"--data-dir", filepath.Join(dir, fmt.Sprintf("sidecar%d", i)), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--usage-flush", "50ms", "--reconnect-max-backoff", "100ms"}
		args = append(args, sidecarFlags...)
		c.sideArgs = append(c.sideArgs, args)
		c.sidecars = append(c.sidecars, start(t, args...))
	}
	for i, s := range c.sidecars {
		eventually(t, fmt.Sprintf("sidecar %d ready", i), func() bool {
			return httpJSON(t, "GET", s.url("http")+"/readyz", "", nil, nil) == 200
		})
	}
	return c
}

func (c *cluster) adminURL() string { return c.admin.url("admin") }

// expect waits until every sidecar answers method path with key as want.
func (c *cluster) expect(what, key, method, path string, want int) {
	c.t.Helper()
	for i, s := range c.sidecars {
		eventually(c.t, fmt.Sprintf("sidecar %d: %s → %d", i, what, want), func() bool {
			code, _ := forwardAuth(c.t, s.url("http"), method, path, map[string]string{"X-API-Key": key})
			return code == want
		})
	}
}

func (c *cluster) create(body map[string]any) createdKey {
	c.t.Helper()
	var k createdKey
	if code := httpJSON(c.t, "POST", c.adminURL()+"/api/v1/api-keys", c.token, body, &k); code != 201 {
		c.t.Fatalf("create key: %d", code)
	}
	return k
}

// TestReplicationEndToEnd: one admin and three sidecars as processes;
// create, revoke, rotate, deactivate, usage, then fail-static through an
// admin SIGKILL and a sidecar restart while the admin is down.
func TestReplicationEndToEnd(t *testing.T) {
	c := newCluster(t, 3)
	const sig = "/api/v1/trading-signals"

	k := c.create(map[string]any{"name": "bot", "scopes": []string{"signals"}})
	c.expect("new key", k.Key, "POST", sig, 200)
	c.expect("missing scope", k.Key, "GET", "/api/v1/agents", 403)

	gone := c.create(map[string]any{"name": "to revoke", "scopes": []string{"signals"}})
	c.expect("key before revoke", gone.Key, "GET", sig, 200)
	if code := httpJSON(t, "DELETE", c.adminURL()+"/api/v1/api-keys/"+gone.ID, c.token, nil, nil); code != 200 {
		t.Fatalf("revoke: %d", code)
	}
	c.expect("revoked key", gone.Key, "GET", sig, 401)

	var rotated createdKey
	if code := httpJSON(t, "POST", c.adminURL()+"/api/v1/api-keys/"+k.ID+"/rotate", c.token, map[string]any{"gracePeriod": "0s"}, &rotated); code != 201 {
		t.Fatalf("rotate: %d", code)
	}
	c.expect("rotated-out key", k.Key, "GET", sig, 401)
	c.expect("rotated-in key", rotated.Key, "GET", sig, 200)

	owned := c.create(map[string]any{"name": "owned", "scopes": []string{"full_access"}, "userId": "alice"})
	c.expect("owned key", owned.Key, "DELETE", "/api/v1/anything", 200)
	if code := httpJSON(t, "PUT", c.adminURL()+"/api/v1/users/alice", c.token, map[string]any{"active": false}, nil); code != 200 {
		t.Fatalf("disable user: %d", code)
	}
	c.expect("inactive owner", owned.Key, "GET", sig, 401)
	if code := httpJSON(t, "PUT", c.adminURL()+"/api/v1/users/alice", c.token, map[string]any{"active": true}, nil); code != 200 {
		t.Fatalf("enable user: %d", code)
	}
	c.expect("reactivated owner", owned.Key, "GET", sig, 200)

	// Usage from the sidecars reaches the admin's list.
	eventually(t, "lastUsedAt from sidecar usage", func() bool {
		var list []map[string]any
		httpJSON(t, "GET", c.adminURL()+"/api/v1/api-keys", c.token, nil, &list)
		for _, e := range list {
			if e["id"] == rotated.ID && e["lastUsedAt"] != nil {
				return true
			}
		}
		return false
	})

	// Fail-static: the admin dies; sidecars keep deciding correctly.
	if code := c.admin.stop(t, syscall.SIGKILL); code == 0 {
		t.Fatal("SIGKILLed admin exited 0")
	}
	c.expect("live key, admin down", rotated.Key, "GET", sig, 200)
	c.expect("revoked key, admin down", gone.Key, "GET", sig, 401)
	// A sidecar restarted while the admin is down serves from its file.
	if code := c.sidecars[0].stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("sidecar exit %d", code)
	}
	c.sidecars[0] = start(t, c.sideArgs[0]...)
	eventually(t, "restarted sidecar ready from its file", func() bool {
		return httpJSON(t, "GET", c.sidecars[0].url("http")+"/readyz", "", nil, nil) == 200
	})
	c.expect("live key after sidecar restart", rotated.Key, "GET", sig, 200)
	c.expect("revoked key after sidecar restart", gone.Key, "GET", sig, 401)

	// The admin returns on the same address and data; new changes flow.
	c.admin = start(t, c.adminArgs...)
	late := c.create(map[string]any{"name": "after restart", "scopes": []string{"agents"}})
	c.expect("key created after admin restart", late.Key, "GET", "/api/v1/agents", 200)
	if code := httpJSON(t, "DELETE", c.adminURL()+"/api/v1/api-keys/"+rotated.ID, c.token, nil, nil); code != 200 {
		t.Fatalf("revoke after restart: %d", code)
	}
	c.expect("revoked after admin restart", rotated.Key, "GET", sig, 401)
}
