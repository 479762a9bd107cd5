package cluster

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/internal/testpki"
)

// dialOnly is a raft stream layer that dials with a given TLS client
// configuration: a would-be peer.
type dialOnly struct {
	net.Listener
	cfg *tls.Config
}

func (d dialOnly) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return (&tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout}, Config: d.cfg}).Dial("tcp", string(addr))
}

// appendEntries sends one raft AppendEntries (term 0: refused by raft,
// changes nothing) to addr as a peer using cfg would.
func appendEntries(t *testing.T, addr string, cfg *tls.Config) (raft.AppendEntriesResponse, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	trans := raft.NewNetworkTransport(dialOnly{Listener: ln, cfg: cfg}, 1, 5*time.Second, io.Discard)
	defer trans.Close()
	var resp raft.AppendEntriesResponse
	err = trans.AppendEntries("intruder", raft.ServerAddress(addr), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("intruder"), Addr: []byte(ln.Addr().String())}}, &resp)
	return resp, err
}

func TestRaftRefusesPeersWithoutAClientCertificateFromTheCA(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 1, nil)
	leader(t, nodes)
	addr := nodes[0].addr

	// A member's certificate gets an answer: the check below can fail.
	resp, err := appendEntries(t, addr, ca.member(t, "peer"))
	if err != nil || resp.Term == 0 {
		t.Fatalf("a peer with a certificate from the CA: %v (term %d), want an answer", err, resp.Term)
	}

	noCert := ca.member(t, "peer")
	noCert.Certificates = nil
	if _, err := appendEntries(t, addr, noCert); err == nil {
		t.Fatal("a peer without a client certificate was answered")
	}

	other := newTestCA(t).member(t, "peer")
	other.RootCAs = ca.pool // trusts the cluster, presents a certificate from another CA
	if _, err := appendEntries(t, addr, other); err == nil {
		t.Fatal("a peer with a certificate from another CA was answered")
	}

	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.SetDeadline(time.Now().Add(10 * time.Second))
	plain.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0}) // a raft AppendEntries type byte and more, without TLS
	buf := make([]byte, 64)
	if n, _ := plain.Read(buf); n > 0 && buf[0] != 0x15 {
		t.Fatalf("plain TCP was answered with %x, not a TLS alert", buf[:n])
	}
}

func TestLoadTLSRequiresAllThreeFiles(t *testing.T) {
	if _, err := LoadTLS("", "k", "ca", nil); err == nil {
		t.Fatal("no certificate accepted")
	}
	if _, err := listenTLS("127.0.0.1:0", "127.0.0.1:1", &tls.Config{}); err == nil {
		t.Fatal("a listener without mutual TLS accepted")
	}
}

// serveHandshakes accepts TLS connections with cfg until the test ends,
// writing one byte on each after its handshake; it returns the address.
func serveHandshakes(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Write([]byte{1}); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestLoadTLSFollowsRotatedFiles: a member's raft TLS configuration
// re-reads its files. Accepting, it presents the rotated certificate and
// trusts the rotated CA bundle; dialling, it verifies the peer against
// the CA file as it is now, and the peer's name too.
func TestLoadTLSFollowsRotatedFiles(t *testing.T) {
	dir := t.TempDir()
	caA, caB := testpki.NewCA(t, "raft CA A"), testpki.NewCA(t, "raft CA B")
	caFile := caA.WriteCA(t, dir, "ca.crt")
	certFile, keyFile := caA.WritePeerPair(t, dir, "member", "127.0.0.1")
	cfg, err := LoadTLS(certFile, keyFile, caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveHandshakes(t, cfg)
	// peer is a would-be member with a certificate from ca, trusting
	// both CAs.
	peer := func(ca *testpki.CA) *tls.Config {
		pair, err := tls.X509KeyPair(ca.IssuePeer(t, "127.0.0.1"))
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(caA.Cert)
		roots.AddCert(caB.Cert)
		return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}, RootCAs: roots}
	}
	// dial completes a handshake and reads the server's first byte (a
	// refused client certificate fails there under TLS 1.3); it returns
	// the server's certificate.
	dial := func(addr string, client *tls.Config) (*x509.Certificate, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, client)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return nil, err
		}
		return c.ConnectionState().PeerCertificates[0], nil
	}
	rewrite := func(file string, pems ...[]byte) {
		if err := os.WriteFile(file, bytes.Join(pems, nil), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dial(addr, peer(caB)); err == nil {
		t.Fatal("a peer with a certificate from a CA not (yet) in the CA file was answered")
	}
	if _, err := dial(addr, peer(caA)); err != nil {
		t.Fatalf("a peer from the CA: %v", err)
	}

	// Rotation: a bundle of both CAs, and a certificate from the new one.
	rewrite(caFile, caA.PEM, caB.PEM)
	caB.WritePeerPair(t, dir, "member", "127.0.0.1")
	presented, err := dial(addr, peer(caB))
	if err != nil {
		t.Fatalf("a peer from the new CA after the rotation: %v", err)
	}
	if err := presented.CheckSignatureFrom(caB.Cert); err != nil {
		t.Fatalf("the member still presents its old certificate after the rotation: %v", err)
	}

	// Dialling with cfg: the server's chain is verified against the CA
	// file's current content, and its name against the address.
	other := testpki.NewCA(t, "another CA")
	srv := serveHandshakes(t, peer(other))
	if _, err := dial(srv, cfg); err == nil {
		t.Fatal("dialled a server whose certificate is from a CA not in the CA file")
	}
	rewrite(caFile, caB.PEM, other.PEM)
	if _, err := dial(srv, cfg); err != nil {
		t.Fatalf("dialling a server from a CA added to the CA file: %v", err)
	}
	_, port, _ := net.SplitHostPort(srv)
	if _, err := dial("localhost:"+port, cfg); err == nil {
		t.Fatal("dialled a server whose certificate does not name the host dialled")
	}
}

// askStatus sends a member's status request (reqConn, reqStatus, an empty
// message) to addr over TLS with cfg and returns the answer's length.
func askStatus(addr string, cfg *tls.Config) (int, error) {
	c, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}).Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write([]byte{reqConn, reqStatus, 0, 0, 0, 0}); err != nil {
		return 0, err
	}
	b, err := readMsg(c, maxAnswer)
	return len(b), err
}

// TestMemberRequestsRefusePeersWithoutAClientCertificateFromTheCA: the
// members' own requests on the raft port (status here; forwarded writes
// and read indexes go the same way) are answered only to a peer whose
// client certificate the cluster CA signed.
func TestMemberRequestsRefusePeersWithoutAClientCertificateFromTheCA(t *testing.T) {
	ca := newTestCA(t)
	nodes := newCluster(t, ca, 1, nil)
	leader(t, nodes)
	addr := nodes[0].addr
	if n, err := askStatus(addr, ca.member(t, "peer")); err != nil || n == 0 {
		t.Fatalf("a peer with a certificate from the CA: %v (%d bytes), want a status", err, n)
	}
	noCert := ca.member(t, "peer")
	noCert.Certificates = nil
	if n, err := askStatus(addr, noCert); err == nil {
		t.Fatalf("a peer without a client certificate was answered (%d bytes)", n)
	}
	other := newTestCA(t).member(t, "peer")
	other.RootCAs = ca.pool
	if n, err := askStatus(addr, other); err == nil {
		t.Fatalf("a peer with a certificate from another CA was answered (%d bytes)", n)
	}
}
