package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testpki"
)

// TestHASidecarsFollowAnyMember is issue 16's "sidecars follow any node"
// over real processes: three admins (raft over mutual TLS) and three
// sidecars, each given the whole list starting with another member
// (--admin-url-order listed) and seen to follow it. Every admin port
// serves TLS and requires a client certificate for replication: the
// sidecars verify each member with --admin-ca-file and present theirs. The leader is
// SIGKILLed, and with it the member one sidecar follows, then a key is
// revoked through a survivor while four clients per sidecar check keys
// throughout: every sidecar denies the key (polled), none took a new
// snapshot, none answered 503 (they run with --max-staleness, so a
// sidecar left on the dead member would turn 503) or anything else
// wrong. Then a sidecar started with the dead member first in its list
// becomes ready and denies the key too.
func TestHASidecarsFollowAnyMember(t *testing.T) {
	ids := []string{"a", "b", "c"}
	pki := t.TempDir()
	ca, clientCA := testpki.NewCA(t, "admin CA"), testpki.NewCA(t, "replication client CA")
	clientCert, clientKey := clientCA.WritePair(t, pki, "sidecar", true, "sidecar")
	ac := startAdminCluster(t, ids, ca, "--tls-client-ca-file", clientCA.WriteCA(t, pki, "client-ca.crt"), "--heartbeat", "100ms")
	url := ac.url
	// listFrom is every member's URL, starting with ids[first].
	listFrom := func(first int) string {
		var l []string
		for i := range ids {
			l = append(l, url(ids[(first+i)%len(ids)]))
		}
		return strings.Join(l, ",")
	}
	sidecar := func(name string, first int) *proc {
		return start(t, "sidecar", "--admin-url", listFrom(first), "--admin-url-order", "listed",
			"--replication-token-file", ac.replTok, "--policy", ac.policy, "--data-dir", filepath.Join(ac.dir, name),
			"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--usage-flush", "50ms",
			"--reconnect-max-backoff", "100ms", "--max-staleness", "20s", // far above a failover; a sidecar left on the dead member crosses it
			"--admin-ca-file", ca.WriteCA(t, pki, "ca.crt"), "--tls-client-cert-file", clientCert, "--tls-client-key-file", clientKey)
	}
	// following waits until s logs that it follows a member other than
	// not (any, when not is empty) and returns that member's URL.
	following := func(s *proc, not string) string {
		m := s.logs.waitFor(t, "following an admin", func(m map[string]any) bool {
			return m["message"] == "following admin" && m["admin"] != not
		})
		return fmt.Sprint(m["admin"])
	}
	var sidecars []*proc
	for i := range ids {
		s := sidecar(fmt.Sprintf("sidecar-%d", i), i)
		sidecars = append(sidecars, s)
		if got := following(s, ""); got != url(ids[i]) {
			t.Fatalf("sidecar %d follows %s, want %s (%s)", i, got, url(ids[i]), ids[i])
		}
	}
	for i, s := range sidecars {
		eventually(t, fmt.Sprintf("sidecar %d ready", i), func() bool { code, _ := readyz(t, s); return code == 200 })
	}

	create := func(name string) createdKey {
		t.Helper()
		var k createdKey
		if code, err := clientJSON(ac.client, "POST", url("b")+"/api/v1/api-keys", ac.token, map[string]any{"name": name, "scopes": []string{"signals"}}, &k); err != nil || code != 201 {
			t.Fatalf("create %s: %d %v", name, code, err)
		}
		return k
	}
	live, doomed := create("live"), create("doomed")
	for i, s := range sidecars {
		expectAuth(t, s, fmt.Sprintf("sidecar %d: live key", i), live.Key, 200)
		expectAuth(t, s, fmt.Sprintf("sidecar %d: key to revoke", i), doomed.Key, 200)
	}
	snapshots := make([]float64, len(sidecars))
	for i, s := range sidecars {
		snapshots[i] = resyncs(t, s, "ok")
	}

	// Four clients per sidecar check both keys until the end. The doomed
	// key may go from 200 to 401 once; everything else is wrong.
	var (
		stop                       = make(chan struct{})
		wg                         sync.WaitGroup
		mu                         sync.Mutex
		wrong                      []string
		checks, unavailable, fails atomic.Int64
		denied                     = make([]atomic.Bool, len(sidecars))
		deniedAt                   = make([]atomic.Int64, len(sidecars))
	)
	for i, s := range sidecars {
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := w; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					key, isLive := doomed.Key, false
					if n%2 == 0 {
						key, isLive = live.Key, true
					}
					wasDenied := denied[i].Load()
					code, body, err := authTry(s.url("http"), key)
					checks.Add(1)
					switch {
					case err != nil:
						fails.Add(1)
					case code == 503:
						unavailable.Add(1)
					case isLive && code == 200, !isLive && code == 401:
						if !isLive && !denied[i].Swap(true) {
							deniedAt[i].Store(time.Now().UnixNano())
						}
					case !isLive && code == 200 && !wasDenied:
					default:
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("sidecar %d, live=%v, denied before=%v: %d %s", i, isLive, wasDenied, code, body))
						mu.Unlock()
					}
				}
			}()
		}
	}
	// The staleness each sidecar reports, sampled throughout: measured,
	// not asserted.
	maxStale := make([]float64, len(sidecars))
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for i, s := range sidecars {
				if v, err := promSample(s.url("http")+"/metrics", "extauthz_replica_staleness_seconds", ""); err == nil {
					mu.Lock()
					maxStale[i] = max(maxStale[i], v)
					mu.Unlock()
				}
			}
		}
	}()
	halt := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer halt()

	var st struct {
		Leader string `json:"leader"`
	}
	eventually(t, "a leader", func() bool {
		code, err := clientJSON(ac.client, "GET", url("a")+"/api/v1/cluster", ac.token, nil, &st)
		return err == nil && code == 200 && st.Leader != ""
	})
	leader := st.Leader
	moved := sidecars[strings.Index("abc", leader)] // the sidecar that follows the leader
	dead := url(leader)
	ac.procs[leader].stop(t, syscall.SIGKILL)
	var survivor string
	for _, id := range ids {
		if id != leader {
			survivor = id
		}
	}
	var revokedAt time.Time // when the revocation that succeeded was sent
	eventually(t, "the revocation through a survivor", func() bool {
		revokedAt = time.Now()
		code, err := clientJSON(ac.client, "DELETE", url(survivor)+"/api/v1/api-keys/"+doomed.ID, ac.token, nil, nil)
		return err == nil && code == 200
	})
	for i := range sidecars {
		eventually(t, fmt.Sprintf("sidecar %d denies the revoked key", i), func() bool { return denied[i].Load() })
	}
	if now := following(moved, dead); now == dead {
		t.Fatalf("the sidecar that followed %s still does", dead)
	}
	halt()
	for i, s := range sidecars {
		if got := resyncs(t, s, "ok"); got != snapshots[i] {
			t.Errorf("sidecar %d took a new snapshot (%v, then %v)", i, snapshots[i], got)
		}
		t.Logf("sidecar %d: first 401 %v after the revocation was sent; staleness at most %.2fs", i, time.Unix(0, deniedAt[i].Load()).Sub(revokedAt).Round(time.Millisecond), maxStale[i])
	}
	mu.Lock()
	for _, w := range wrong {
		t.Errorf("wrong answer: %s", w)
	}
	mu.Unlock()
	if unavailable.Load() != 0 || fails.Load() != 0 {
		t.Errorf("%d of %d checks answered 503 and %d failed", unavailable.Load(), checks.Load(), fails.Load())
	}
	t.Logf("%d checks, none 503; the sidecar of the killed leader %s now follows %s", checks.Load(), leader, following(moved, dead))

	// A sidecar started while a member is down, with that member first.
	late := sidecar("late", strings.Index("abc", leader))
	eventually(t, "a sidecar started while a member is down is ready", func() bool { code, _ := readyz(t, late); return code == 200 })
	expectAuth(t, late, "late sidecar: revoked key", doomed.Key, 401)
	expectAuth(t, late, "late sidecar: live key", live.Key, 200)
	if got := resyncs(t, late, "failed"); got < 1 {
		t.Errorf("the late sidecar counts %v failed snapshots: it did not try the dead member first", got)
	}
}

// TestSidecarAdminURLListFlags: --admin-url takes a list, each member
// checked as one URL is; --admin-url-order is random or listed.
func TestSidecarAdminURLListFlags(t *testing.T) {
	base := []string{"--policy", "p.yaml", "--replication-token-file", "r"}
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string // part of the error; empty: accepted
	}{
		{[]string{"--admin-url", "https://a:8181,https://b:8181", "--admin-ca-file", "ca"}, ""},
		{[]string{"--admin-url", "https://a:8181, http://b:8181", "--admin-ca-file", "ca"}, `"http://b:8181" is plain http://`},
		// Without the password the URL held.
		{[]string{"--admin-url", "https://a:8181, http://u:s3cret-pass@b:8181", "--admin-ca-file", "ca"}, `"http://u:xxxxx@b:8181" is plain http://`},
		{[]string{"--admin-url", "http://a:8181", "--admin-url-order", "listed"}, ""},
		{[]string{"--admin-url", "http://a:8181", "--admin-url-order", "first"}, "want random or listed"},
	} {
		_, err := parseServeFlags(roleSidecar, append(append([]string{}, base...), tc.args...), env, io.Discard)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
