package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cli runs the binary with args and returns its combined output; it fails
// the test on a non-zero exit.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(binPath, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("extauthz %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRestoredAdminDoesNotForkSidecars: create K1; back up online; create
// K2 (the sidecar at revision 2); restore the backup; create K3 and revoke
// K1 (the admin at revision 3 again, another history); start the sidecar.
// It must end in the restored admin's state (K1 and K2 401, K3 200) by
// itself: the restore started a new history, so the sidecar's resume from
// revision 2 of the old one is refused and it loads a snapshot.
func TestRestoredAdminDoesNotForkSidecars(t *testing.T) {
	c := newCluster(t, 1)
	const sig = "/api/v1/trading-signals"
	adminDir := filepath.Join(c.dir, "admin")
	tokenFile := filepath.Join(c.dir, "admin-token")

	k1 := c.create(map[string]any{"name": "k1", "scopes": []string{"signals"}})
	c.expect("K1", k1.Key, "GET", sig, 200)
	backup := filepath.Join(c.dir, "backup.db")
	if out := cli(t, "backup", "--admin-url", c.adminURL(), "--admin-token-file", tokenFile, "--out", backup); !strings.Contains(out, "at revision 1") {
		t.Fatalf("backup: %s; want a backup at revision 1", out)
	}
	k2 := c.create(map[string]any{"name": "k2", "scopes": []string{"signals"}})
	c.expect("K2 before the restore", k2.Key, "GET", sig, 200)

	if code := c.sidecars[0].stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("sidecar exit %d", code)
	}
	// A restore while the admin runs is refused and changes nothing.
	if out, err := exec.Command(binPath, "restore", "--from", backup, "--data-dir", adminDir).CombinedOutput(); err == nil || !strings.Contains(string(out), "stop the admin first") {
		t.Fatalf("restore under a running admin: %v\n%s; want refused", err, out)
	}
	if code := c.admin.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("admin exit %d", code)
	}
	// As in docs/deploy.md: the backup on stdin, into an image without a shell.
	restore := exec.Command(binPath, "restore", "--from", "-", "--data-dir", adminDir)
	in, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	restore.Stdin = in
	if out, err := restore.CombinedOutput(); err != nil || !strings.Contains(string(out), "at revision 1 as the new history") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if _, err := os.Stat(backup); err != nil {
		t.Fatalf("the backup was consumed: %v", err)
	}

	c.admin = start(t, c.adminArgs...)
	k3 := c.create(map[string]any{"name": "k3", "scopes": []string{"signals"}})
	if code := httpJSON(t, "DELETE", c.adminURL()+"/api/v1/api-keys/"+k1.ID, c.token, nil, nil); code != 200 {
		t.Fatalf("revoke K1: %d", code)
	}
	var k2Now map[string]any
	if code := httpJSON(t, "GET", c.adminURL()+"/api/v1/api-keys/"+k2.ID, c.token, nil, &k2Now); code != 404 {
		t.Fatalf("K2 on the restored admin: %d; want 404 (unknown)", code)
	}

	started := time.Now()
	c.sidecars[0] = start(t, c.sideArgs[0]...)
	c.expect("K3, created after the restore", k3.Key, "GET", sig, 200)
	c.expect("K2, unknown to the restored admin", k2.Key, "GET", sig, 401)
	c.expect("K1, revoked after the restore", k1.Key, "GET", sig, 401)
	t.Logf("sidecar in the restored admin's state %v after its start", time.Since(started).Round(time.Millisecond))
	c.sidecars[0].logs.waitFor(t, "a new snapshot", func(m map[string]any) bool { return m["message"] == "snapshot loaded" })
}
