package cluster

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
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
	if _, err := LoadTLS("", "k", "ca"); err == nil {
		t.Fatal("no certificate accepted")
	}
	if _, err := listenTLS("127.0.0.1:0", "127.0.0.1:1", &tls.Config{}); err == nil {
		t.Fatal("a listener without mutual TLS accepted")
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
