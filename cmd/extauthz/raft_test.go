package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testpki"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

// raftPKI writes a cluster CA and one certificate per member (for
// 127.0.0.1, server and client use) into dir and returns the CA file.
func raftPKI(t *testing.T, dir string, members []string) string {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "raft CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caFile := writeFile(t, dir, "raft-ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	for i, m := range members {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: m}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, m+".pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
		writeFile(t, dir, m+"-key.pem", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})))
	}
	return caFile
}

// adminCluster is admin processes of one raft cluster, with mutual TLS
// between them, on loopback.
type adminCluster struct {
	t                        *testing.T
	dir, policy              string
	token, adminTok, replTok string // the operator token, its file, the replication token's file
	ids                      []string
	procs                    map[string]*proc
	scheme                   string       // of the admin port: http, or https with a CA
	client                   *http.Client // for the admin port
}

// startAdminCluster starts an admin for each id, every one with args
// added, and waits until each is ready (in a cluster with a leader). With
// a CA, every admin port serves TLS with a certificate of it for
// 127.0.0.1.
func startAdminCluster(t *testing.T, ids []string, ca *testpki.CA, args ...string) *adminCluster {
	t.Helper()
	dir := t.TempDir()
	c := &adminCluster{t: t, dir: dir, policy: copyPolicy(t, dir, "nexgent.yaml"), token: "operator-token-for-tests-0123456789", ids: ids, procs: map[string]*proc{},
		scheme: "http", client: http.DefaultClient}
	c.adminTok = writeFile(t, dir, "admin-token", c.token+"\n")
	c.replTok = writeFile(t, dir, "replication-token", "replication-token-for-tests-42\n")
	if ca != nil {
		cert, key := ca.WritePair(t, dir, "admin-port", false, "127.0.0.1")
		args = append([]string{"--tls-cert-file", cert, "--tls-key-file", key}, args...)
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM)
		c.scheme, c.client = "https", &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	raftCA := raftPKI(t, dir, ids)
	var peers []string
	raftAddrs := map[string]string{}
	for _, id := range ids {
		raftAddrs[id] = freeAddr(t)
		peers = append(peers, id+"="+raftAddrs[id])
	}
	for _, id := range ids {
		c.procs[id] = startProc(t, binPath, []string{"EXTAUTHZ_RAFT_PEERS=" + strings.Join(peers, ",")},
			append([]string{"admin", "--data-dir", filepath.Join(dir, id), "--policy", c.policy, "--admin-token-file", c.adminTok,
				"--replication-token-file", c.replTok, "--admin-addr", "127.0.0.1:0", "--node-id", id, "--raft-addr", raftAddrs[id],
				"--raft-tls-cert-file", filepath.Join(dir, id+".pem"), "--raft-tls-key-file", filepath.Join(dir, id+"-key.pem"),
				"--raft-tls-ca-file", raftCA}, args...)...)
	}
	c.ready(ids...)
	return c
}

// ready waits until every member of ids answers /readyz with 200.
func (c *adminCluster) ready(ids ...string) {
	for _, id := range ids {
		eventually(c.t, id+" ready (in a cluster with a leader)", func() bool {
			code, _ := clientJSON(c.client, "GET", c.url(id)+"/readyz", "", nil, nil)
			return code == 200
		})
	}
}

// url is member id's admin port.
func (c *adminCluster) url(id string) string { return c.scheme + "://" + c.procs[id].addrs["admin"] }

// TestAdminClusterOfThree: three admin processes with --raft-peers and
// mutual TLS elect a leader; a write on any member is committed (a
// follower forwards it) and read back at once from every member; after
// SIGKILL of the leader the two others elect another and take writes
// through either; no raw key is in any file of any member.
func TestAdminClusterOfThree(t *testing.T) {
	ac := startAdminCluster(t, []string{"a", "b", "c"}, nil)
	dir, token, adminTok, ids, procs, ready := ac.dir, ac.token, ac.adminTok, ac.ids, ac.procs, ac.ready

	var raws []string
	// state reads a member's extauthz_raft_state.
	state := func(id string) string {
		resp, err := http.Get(procs[id].url("admin") + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, m := range []string{"extauthz_raft_term ", "extauthz_raft_commit_index ", "extauthz_raft_applied_index ", "extauthz_raft_last_contact_seconds ", "extauthz_raft_leader_changes_total "} {
			if !bytes.Contains(body, []byte("\n"+m)) {
				t.Errorf("%s /metrics has no %q", id, m)
			}
		}
		for line := range strings.SplitSeq(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, "extauthz_raft_state "); ok {
				return v
			}
		}
		t.Fatalf("%s /metrics has no extauthz_raft_state", id)
		return ""
	}
	roles := func(live []string) (leader string, followers []string) {
		t.Helper()
		eventually(t, "one leader", func() bool {
			leader, followers = "", nil
			for _, id := range live {
				switch state(id) {
				case "2":
					leader = id
				case "0":
					followers = append(followers, id)
				}
			}
			return leader != "" && len(followers) == len(live)-1
		})
		return leader, followers
	}
	// create asks member id; a write on a follower is forwarded to the
	// leader and answered with the leader's 201.
	create := func(id string) createdKey {
		t.Helper()
		var k createdKey
		var out map[string]any
		eventually(t, id+" takes a write", func() bool {
			code, err := tryJSON("POST", procs[id].url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "k", "scopes": []string{"signals"}}, &out)
			return err == nil && code == 201
		})
		k = createdKey{ID: fmt.Sprint(out["id"]), Key: fmt.Sprint(out["key"])}
		raws = append(raws, k.Key)
		return k
	}
	// onAll checks, at once, that every member answers GET with want: a
	// member answers after applying every write acknowledged before.
	onAll := func(live []string, id string, want int) {
		t.Helper()
		for _, m := range live {
			if code, err := tryJSON("GET", procs[m].url("admin")+"/api/v1/api-keys/"+id, token, nil, nil); err != nil || code != want {
				t.Errorf("%s answers GET %s with %d (%v), want %d", m, id, code, err, want)
			}
		}
	}
	// cli runs "extauthz cluster ..." against member id.
	cli := func(id string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		args = append(append([]string{"cluster"}, args...), "--admin-url", procs[id].url("admin"), "--admin-token-file", adminTok)
		if err := run(context.Background(), args, func(string) string { return "" }, &out, &errb); err != nil {
			t.Fatalf("extauthz %v: %v: %s", args, err, errb.String())
		}
		return out.String()
	}
	leader, followers := roles(ids)
	st := cli(followers[0], "status")
	if strings.Count(st, "127.0.0.1:") != 3 || strings.Count(st, "Leader") != 1 || strings.Count(st, "Follower") != 2 {
		t.Fatalf("cluster status through a follower:\n%s", st)
	}
	k := create(followers[0])
	onAll(ids, k.ID, 200)
	if code := httpJSON(t, "DELETE", procs[followers[1]].url("admin")+"/api/v1/api-keys/"+k.ID, token, nil, nil); code != 200 {
		t.Fatalf("revoke through a follower: %d", code)
	}
	after, _ := tryJSON("GET", procs[leader].url("admin")+"/api/v1/api-keys/"+k.ID, token, nil, nil)
	onAll(ids, k.ID, after)
	k0 := create(leader)
	onAll(ids, k0.ID, 200)

	procs[leader].stop(t, syscall.SIGKILL)
	live := followers
	ready(live...)
	next, rest := roles(live)
	k2 := create(rest[0])
	onAll(live, k2.ID, 200)
	k3 := create(next)
	onAll(live, k3.ID, 200)
	// The dead member is removed through a follower: two voters remain,
	// whose quorum is both.
	if st := cli(rest[0], "remove", leader); strings.Count(st, "127.0.0.1:") != 2 {
		t.Fatalf("status after removing %s:\n%s", leader, st)
	}
	k4 := create(rest[0])
	onAll(live, k4.ID, 200)

	for _, id := range live {
		procs[id].stop(t, syscall.SIGTERM)
	}
	noRawKeys(t, []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}, raws, 6)
}

// noRawKeys fails when any file under dirs (members' data dirs: store,
// raft log, raft snapshots) holds one of raws, or when fewer than
// minFiles files were searched.
func noRawKeys(t *testing.T, dirs, raws []string, minFiles int) {
	t.Helper()
	if files := keystoretest.NoRawKeysInFiles(t, dirs, raws); files < minFiles {
		t.Fatalf("searched only %d files", files)
	}
}

func TestRaftFlags(t *testing.T) {
	base := []string{"--policy", "p.yaml", "--admin-token-file", "t", "--replication-token-file", "r"}
	env := func(string) string { return "" }
	for _, tc := range []struct {
		args []string
		want string // part of the error; empty: accepted
	}{
		{nil, ""},
		{[]string{"--raft-addr", "127.0.0.1:7000"}, "need --raft-peers"},
		{[]string{"--raft-bind-addr", "127.0.0.11:7000"}, "need --raft-peers"},
		{[]string{"--raft-peers", "a=127.0.0.1:7000", "--raft-addr", "127.0.0.1:7000", "--raft-bind-addr", "nope", "--node-id", "a",
			"--raft-tls-cert-file", "c", "--raft-tls-key-file", "k", "--raft-tls-ca-file", "ca"}, "--raft-bind-addr"},
		{[]string{"--raft-peers", "a=127.0.0.1:7000", "--raft-addr", "127.0.0.1:7000"}, "mutual TLS"},
		{[]string{"--raft-peers", "a=127.0.0.1:7000,a=127.0.0.1:7001"}, "listed twice"},
		{[]string{"--raft-peers", "a", "--raft-addr", "x:1"}, "not id=host:port"},
		{[]string{"--raft-peers", "a=127.0.0.1:7000", "--raft-addr", "127.0.0.1:7000", "--node-id", "a",
			"--raft-tls-cert-file", "c", "--raft-tls-key-file", "k", "--raft-tls-ca-file", "ca"}, ""},
	} {
		_, err := parseServeFlags(roleAdmin, append(append([]string{}, base...), tc.args...), env, io.Discard)
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// Not a flag of the other roles.
	if _, err := parseServeFlags(roleSidecar, []string{"--raft-peers", "a=127.0.0.1:1"}, env, io.Discard); err == nil {
		t.Error("a sidecar accepted --raft-peers")
	}
	if got, _ := bindAddr("admin-0.admin-peers:7000"); got != ":7000" {
		t.Errorf("bind of a DNS name: %q", got)
	}
	if got, _ := bindAddr("10.0.0.5:7000"); got != "10.0.0.5:7000" {
		t.Errorf("bind of an IP: %q", got)
	}
}
