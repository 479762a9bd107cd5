package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/internal/testnet"
	"github.com/extauthz/extauthz/keystore"
)

// testCA is a cluster CA that signs member certificates for 127.0.0.1.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test cluster CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// member returns the mutual TLS configuration of a member (LoadTLS's
// shape) with a certificate from ca.
func (ca *testCA) member(t *testing.T, name string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      ca.pool,
		ClientCAs:    ca.pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return testnet.FreeAddr(t)
}

// testNode is one member with its store, restartable in place.
type testNode struct {
	id, addr, dir string
	tls           *tls.Config
	peers         []Peer
	tune          func(*raft.Config)
	// logs, when set, also receives raft's warnings (and worse).
	logs  io.Writer
	store *keystore.Store
	node  *Node
}

func fastRaft(c *raft.Config) {
	// Short enough for a quick test, long enough for a loaded CI machine.
	c.HeartbeatTimeout = 500 * time.Millisecond
	c.ElectionTimeout = 500 * time.Millisecond
	c.LeaderLeaseTimeout = 250 * time.Millisecond
}

func (tn *testNode) start(t *testing.T) {
	t.Helper()
	st, err := keystore.Open(filepath.Join(tn.dir, "keystore.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tune := tn.tune
	if tune == nil {
		tune = fastRaft
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: tn.id, Level: hclog.Error, Output: testWriter{t}})
	if tn.logs != nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: tn.id, Level: hclog.Warn, Output: io.MultiWriter(testWriter{t}, tn.logs)})
	}
	n, err := Start(Config{
		ID: tn.id, Advertise: tn.addr, Peers: tn.peers, Dir: filepath.Join(tn.dir, "raft"),
		TLS: tn.tls, Store: st, Raft: tune, Logger: logger,
	})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	tn.store, tn.node = st, n
}

func (tn *testNode) stop(t *testing.T) {
	t.Helper()
	if tn.node == nil {
		return
	}
	if err := tn.node.Close(); err != nil {
		t.Errorf("close %s: %v", tn.id, err)
	}
	if err := tn.store.Close(); err != nil {
		t.Errorf("close store %s: %v", tn.id, err)
	}
	tn.node, tn.store = nil, nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// newCluster starts n members on loopback with certificates from ca.
func newCluster(t *testing.T, ca *testCA, n int, tune func(*raft.Config)) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	var peers []Peer
	for i := range nodes {
		id := string(rune('a' + i))
		nodes[i] = &testNode{id: id, addr: freeAddr(t), dir: t.TempDir(), tls: ca.member(t, id), tune: tune}
		peers = append(peers, Peer{ID: id, Addr: nodes[i].addr})
	}
	for _, tn := range nodes {
		tn.peers = peers
		tn.start(t)
	}
	t.Cleanup(func() {
		for _, tn := range nodes {
			tn.stop(t)
		}
	})
	return nodes
}

// eventually polls cond until it holds; the bound only keeps a broken
// build from hanging the run, nothing is asserted about how fast.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// leader waits for a member of nodes to lead and returns it.
func leader(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	eventually(t, "a leader", func() bool {
		for _, tn := range nodes {
			if tn.node != nil && tn.node.IsLeader() {
				l = tn
				return true
			}
		}
		return false
	})
	return l
}

// write applies fn on whichever member leads, again if leadership moved
// before the write was handed to raft.
func write(t *testing.T, nodes []*testNode, fn func(w *Writer) error) {
	t.Helper()
	for range 50 {
		l := leader(t, nodes)
		err := fn(&Writer{Node: l.node})
		if !errors.Is(err, ErrNotLeader) {
			if err != nil {
				t.Fatal(err)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no member kept the leadership long enough to write")
}

// caughtUp waits until every running member applied what the leader has.
func caughtUp(t *testing.T, nodes []*testNode) {
	t.Helper()
	l := leader(t, nodes)
	if err := l.node.Barrier(); err != nil {
		t.Fatal(err)
	}
	// raft's AppliedIndex counts entries handed to the state machine: wait
	// for the stores' own.
	want := l.node.fsm.written.Load()
	eventually(t, "every member applies the leader's log", func() bool {
		for _, tn := range nodes {
			if tn.node != nil && tn.node.fsm.written.Load() < want {
				return false
			}
		}
		return true
	})
}
