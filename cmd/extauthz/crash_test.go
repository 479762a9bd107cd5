package main

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/extauthz/extauthz/keystore"
)

// TestCrashSafety SIGKILLs a standalone process while 16 clients create
// keys, ten times at different points, restarting it on the same data each
// time. Every key whose 201 reached a client must exist and verify after
// the restarts, and the change log must have no gap.
//
// Kill points: the kill fires when the count of acknowledged creations in
// that round reaches the next entry of killAfter, so earlier rounds kill
// near startup (first batches) and later ones under a long-running load;
// other creations are always in flight at that moment.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the binary ten times")
	}
	killAfter := []int64{1, 3, 8, 15, 25, 40, 60, 90, 130, 180}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pol := copyPolicy(t, dir, "nexgent.yaml")
	token := "crash-test-operator-token-0123456789"
	tokFile := writeFile(t, dir, "admin-token", token)
	args := []string{"standalone", "--data-dir", data, "--policy", pol, "--admin-token-file", tokFile,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}

	var mu sync.Mutex
	acked := map[string]string{} // id -> raw key
	for round, point := range killAfter {
		p := start(t, args...)
		var n atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var once sync.Once
		kill := func() { once.Do(func() { _ = p.cmd.Process.Signal(syscall.SIGKILL); close(stop) }) }
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					var k createdKey
					code, err := tryJSON("POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": fmt.Sprintf("r%d", round), "scopes": []string{"signals"}}, &k)
					if err != nil {
						return // the process is gone: this request was not acknowledged
					}
					if code != 201 {
						t.Errorf("create: status %d", code)
						return
					}
					mu.Lock()
					acked[k.ID] = k.Key
					mu.Unlock()
					if n.Add(1) >= point {
						kill()
					}
				}
			}()
		}
		wg.Wait()
		<-p.done
	}

	// Every acknowledged key verifies at the front door after a restart.
	p := start(t, args...)
	for id, raw := range acked {
		if code, body := forwardAuth(t, p.url("http"), "GET", "/api/v1/trading-signals", map[string]string{"X-API-Key": raw}); code != 200 {
			t.Fatalf("acknowledged key %s lost: %d %s", id, code, body)
		}
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// The change log is gapless and holds one creation per stored key.
	s, err := keystore.Open(filepath.Join(data, "extauthz.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var next uint64 = 1
	err = s.Changes(0, 0, func(c keystore.Change) error {
		if c.Revision != next {
			return fmt.Errorf("change log gap: got revision %d, want %d", c.Revision, next)
		}
		next++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if next-1 != s.Revision() || int(next-1) < len(acked) {
		t.Fatalf("change log holds %d revisions, store revision %d, %d keys acknowledged", next-1, s.Revision(), len(acked))
	}
	t.Logf("%d keys acknowledged across %d kills, %d revisions, none lost", len(acked), len(killAfter), next-1)
}
