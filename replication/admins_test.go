package replication

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/internal/testpki"
	"github.com/extauthz/extauthz/keystore"
)

// TestAdminsOrder: the first pick is random over the candidates (so a
// fleet spreads over the members), or the first listed with listed; a
// failure moves to the next, around the list; without a failure the
// follower stays.
func TestAdminsOrder(t *testing.T) {
	const list = "http://a:1, http://b:1/,http://c:1"
	seen := map[string]int{}
	for range 300 {
		a, err := parseAdmins(list, nil, false)
		if err != nil {
			t.Fatal(err)
		}
		tg, moved := a.pick(context.Background())
		if moved {
			t.Fatal("the first pick reports a move")
		}
		seen[tg.base]++
	}
	if len(seen) != 3 {
		t.Fatalf("first picks over 300 followers: %v, want all three members", seen)
	}
	a, err := parseAdmins(list, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i := range 5 {
		tg, moved := a.pick(context.Background())
		if moved != (i > 0) {
			t.Fatalf("pick %d: moved %v", i, moved)
		}
		got = append(got, tg.base)
		if same, moved := a.pick(context.Background()); same != tg || moved {
			t.Fatalf("without a failure the follower moved from %v to %v", tg, same)
		}
		a.failed(tg)
	}
	if want := "http://a:1 http://b:1 http://c:1 http://a:1 http://b:1"; strings.Join(got, " ") != want {
		t.Fatalf("order %q, want %q", strings.Join(got, " "), want)
	}
	for _, bad := range []string{"", " , ", "http://a:1,admin:8181", "ftp://a"} {
		if _, err := parseAdmins(bad, nil, false); err == nil {
			t.Errorf("parseAdmins(%q) accepted", bad)
		}
	}
}

// behindMember is a member of the same history as st that has only st's
// current revision: a copy of st's file (same store id) served with
// BehindWait, counting the watches it refused as behind.
func behindMember(t *testing.T, st *keystore.Store) (h http.Handler, refused *atomic.Int64) {
	t.Helper()
	var buf bytes.Buffer
	if _, _, err := st.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "behind.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	copyStore, err := keystore.Open(path, keystore.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { copyStore.Close() })
	if copyStore.StoreID() != st.StoreID() {
		t.Fatalf("the copy has store id %q, not %q", copyStore.StoreID(), st.StoreID())
	}
	srv := mustServer(t, ServerOptions{Store: copyStore, Token: testToken, Heartbeat: testHeartbeat, BehindWait: testHeartbeat, Logger: zerolog.Nop()})
	t.Cleanup(srv.Close)
	refused = new(atomic.Int64)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		srv.ServeHTTP(rec, r)
		if r.URL.Path == PathWatch && rec.status == http.StatusServiceUnavailable {
			refused.Add(1)
		}
	}), refused
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// TestFollowerMovesToAnotherAdmin: a follower of three members (one
// history) follows the first; when it is lost it moves on, past a member
// that is behind its revision (503), to one that serves it, and resumes
// from its revision: no second snapshot, every change in force.
func TestFollowerMovesToAnotherAdmin(t *testing.T) {
	st := newAdminStore(t)
	k1 := createKey(t, st, nil)
	behind, refused := behindMember(t, st)
	createKey(t, st, nil) // the copy lacks this one
	srv := newServer(t, st)
	a, b, c := newFront(t, srv), newFront(t, behind), newFront(t, srv)
	f, reg := newFollower(t, t.TempDir(), strings.Join([]string{a.url(), b.url(), c.url()}, ","), func(o *FollowerOptions) { o.ListedOrder = true })
	run(t, f)
	caughtUp(t, f, st)
	if got := f.admins.current().base; got != a.url() {
		t.Fatalf("following %s, want the first listed %s", got, a.url())
	}

	a.set(nil) // lost
	if _, err := st.RevokeKey(k1.key.ID, "tester"); err != nil {
		t.Fatal(err)
	}
	k3 := createKey(t, st, nil)
	caughtUp(t, f, st)
	sameRecords(t, replicaRecords(t, f), records(t, st))
	if !found(f, k3) {
		t.Fatal("the key created after the move is not in force")
	}
	if got := f.admins.current().base; got != c.url() {
		t.Fatalf("following %s after the loss, want %s", got, c.url())
	}
	if refused.Load() == 0 {
		t.Fatal("the member behind was never asked (or did not answer 503)")
	}
	// Usage goes to the member followed, not to the one lost.
	if retry, err := f.SendUsage(context.Background(), []keystore.Usage{{KeyID: k3.key.ID, LastUsedAt: time.Now(), Count: 1}}); err != nil || len(retry) != 0 {
		t.Fatalf("usage after the move: %v (%d to retry)", err, len(retry))
	}
	if ok, failed := metric(t, reg, "extauthz_replica_resyncs_total", "ok"), metric(t, reg, "extauthz_replica_resyncs_total", "failed"); ok != 1 || failed != 0 {
		t.Fatalf("snapshots ok=%v failed=%v, want the first only", ok, failed)
	}
}

// TestFollowerFollowsEveryAddressOfAName: an https URL whose name resolves
// to three addresses (a headless Service) is three members; the follower
// dials each address itself, verifies each certificate against the name,
// and moves to the next address when the one it follows is lost, without
// a new snapshot.
func TestFollowerFollowsEveryAddressOfAName(t *testing.T) {
	const name = "admins.test"
	st := newAdminStore(t)
	createKey(t, st, nil)
	srv := newServer(t, st)
	ca := testpki.NewCA(t, "admin CA")
	certPEM, keyPEM := ca.Issue(t, false, name) // the name only, no address
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	lns := listenSamePort(t, ips)
	fronts := make([]*front, len(ips))
	for i, ln := range lns {
		fronts[i] = startFront(t, srv, ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	_, port, _ := net.SplitHostPort(lns[0].Addr().String())
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	tr := NewTransport()
	tr.TLSClientConfig = &tls.Config{RootCAs: roots}
	client := &http.Client{Transport: tr}
	t.Cleanup(client.CloseIdleConnections)
	f, reg := newFollower(t, t.TempDir(), "https://"+name+":"+port, func(o *FollowerOptions) {
		o.HTTPClient = client
		o.ListedOrder = true
		o.Resolver = staticResolver{name: {"127.0.0.3", "127.0.0.1", "127.0.0.2"}} // sorted by the follower
	})
	run(t, f)
	caughtUp(t, f, st)
	if got := f.admins.current().addr; got != net.JoinHostPort(ips[0], port) {
		t.Fatalf("following %s, want the first address %s", got, ips[0])
	}
	for i := range 2 {
		fronts[i].set(nil)
		createKey(t, st, nil)
		caughtUp(t, f, st)
		if got, want := f.admins.current().addr, net.JoinHostPort(ips[i+1], port); got != want {
			t.Fatalf("after the loss of %s following %s, want %s", ips[i], got, want)
		}
	}
	if ok, failed := metric(t, reg, "extauthz_replica_resyncs_total", "ok"), metric(t, reg, "extauthz_replica_resyncs_total", "failed"); ok != 1 || failed != 0 {
		t.Fatalf("snapshots ok=%v failed=%v, want the first only", ok, failed)
	}
}

// listenSamePort listens on one port of every loopback address in ips.
func listenSamePort(t *testing.T, ips []string) []net.Listener {
	t.Helper()
	for range 20 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(first.Addr().String())
		lns := []net.Listener{first}
		for _, ip := range ips[1:] {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) == len(ips) {
			return lns
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
	t.Skip("no port free on every loopback address")
	return nil
}

// TestMemberWithoutLeaderSendsFollowersElsewhere: a member whose store may
// not be current (ServerOptions.Current fails: no leader) answers
// snapshots and new watches 503 with the reason, and stops the heartbeats
// of an open watch, so its follower's idle timeout sends it to another
// member; nothing is downloaded again.
func TestMemberWithoutLeaderSendsFollowersElsewhere(t *testing.T) {
	st := newAdminStore(t)
	createKey(t, st, nil)
	var leaderless atomic.Bool
	unsure := mustServer(t, ServerOptions{Store: st, Token: testToken, Heartbeat: testHeartbeat, Logger: zerolog.Nop(), Current: func() error {
		if leaderless.Load() {
			return errors.New("no cluster leader")
		}
		return nil
	}})
	t.Cleanup(unsure.Close)
	a, b := newFront(t, unsure), newFront(t, newServer(t, st))
	f, reg := newFollower(t, t.TempDir(), a.url()+","+b.url(), func(o *FollowerOptions) {
		o.ListedOrder = true
		o.IdleTimeout = 20 * testHeartbeat
	})
	run(t, f)
	caughtUp(t, f, st)
	if got := f.admins.current().base; got != a.url() {
		t.Fatalf("following %s, want %s", got, a.url())
	}

	leaderless.Store(true)
	for _, path := range []string{PathSnapshot, PathWatch + "?since=0"} {
		req, _ := http.NewRequest(http.MethodGet, a.url()+path, nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "no cluster leader") || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s on a member without a leader: %d %s", path, resp.StatusCode, body)
		}
	}
	waitFor(t, "the follower to leave the member without a leader", func() bool { return f.admins.current().base == b.url() })
	createKey(t, st, nil)
	caughtUp(t, f, st)
	if ok := metric(t, reg, "extauthz_replica_resyncs_total", "ok"); ok != 1 {
		t.Fatalf("%v snapshots, want the first only", ok)
	}
}

// TestAdminsLogNoPassword: a password in an admin URL never reaches a log
// line.
func TestAdminsLogNoPassword(t *testing.T) {
	a, err := parseAdmins("http://user:s3cret-pass@a:1", nil, true)
	if err != nil {
		t.Fatal(err)
	}
	tg, _ := a.pick(context.Background())
	if v := tg.logValue(); strings.Contains(v, "s3cret-pass") || !strings.Contains(v, "a:1") {
		t.Fatalf("logged as %q", v)
	}
	// Nor an error about a member of the list.
	for _, bad := range []string{"http://a:1,ftp://user:s3cret-pass@b", "http://a:1,http://user:s3cret-pass@b:1%zz"} {
		if _, err := parseAdmins(bad, nil, false); err == nil || strings.Contains(err.Error(), "s3cret-pass") {
			t.Errorf("parseAdmins(%q): %v", bad, err)
		}
	}
}
