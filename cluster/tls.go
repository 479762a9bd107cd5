package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/tlsfiles"
)

// LoadTLS reads the member's certificate and key and the cluster's CA
// bundle (PEM files) into the configuration of the raft stream layer:
// TLS 1.3, each side presenting its certificate and verifying the other's
// against the CA. A member's certificate must name the host of its raft
// address (a DNS or IP subject alternative name) and allow both server and
// client authentication.
//
// The files are re-read as package tlsfiles does for the other ports: a
// new connection, accepted or dialled, uses the certificate and CA the
// files hold then (a rotation needs no restart); a rotation that does not
// parse keeps the previous pair and is told to onError (nil: ignored).
func LoadTLS(certFile, keyFile, caFile string, onError func(error)) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, errors.New("cluster: raft needs a certificate, its key and the cluster CA (mutual TLS)")
	}
	pair, err := tlsfiles.LoadKeyPair(certFile, keyFile, onError)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft certificate: %w", err)
	}
	cas, err := tlsfiles.LoadCertPool(caFile, onError)
	if err != nil {
		return nil, fmt.Errorf("cluster: raft CA: %w", err)
	}
	server := func() *tls.Config {
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{*pair.Get()},
			ClientCAs:    cas.Get(),
			ClientAuth:   tls.RequireAndVerifyClientCert,
		}
	}
	cfg := server()
	// Accepted connections: the files' current pair and CA.
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return server(), nil }
	// Dialled connections: crypto/tls verifies against a fixed RootCAs,
	// so the server's chain and name are verified here instead, against
	// the CA file's current content (crypto/tls's own verification is
	// what InsecureSkipVerify turns off; VerifyConnection still runs).
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair.Get(), nil }
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cluster: raft peer presented no certificate")
		}
		inter := x509.NewCertPool()
		for _, c := range cs.PeerCertificates[1:] {
			inter.AddCert(c)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
			DNSName: cs.ServerName, Roots: cas.Get(), Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			return fmt.Errorf("cluster: raft peer certificate: %w", err)
		}
		return nil
	}
	return cfg, nil
}

// streamLayer is raft's network: TLS over TCP in both directions. The
// port also carries the members' own requests (forward.go): the first byte
// of a connection tells them apart from raft's.
type streamLayer struct {
	net.Listener
	advertise raftAddr
	tls       *tls.Config
	// local is the address dialled connections leave from: the bound
	// IP when the listener is bound to one, so that a peer (or a proxy
	// between members) sees this member's own address; nil: the
	// system's choice.
	local net.Addr

	raftConns chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	// serve answers a member's request (first byte kind); set before
	// the first connection is accepted.
	serve func(kind byte, c net.Conn)
}

// firstByteTimeout bounds the TLS handshake and the first byte of an
// accepted connection.
const firstByteTimeout = 10 * time.Second

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			time.Sleep(10 * time.Millisecond) // a transient accept error (EMFILE)
			continue
		}
		go s.sort(c)
	}
}

// sort reads the first byte (after the TLS handshake, which refuses a
// peer without a certificate from the CA) and hands the connection to
// raft or to the members' request handler.
func (s *streamLayer) sort(c net.Conn) {
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(firstByteTimeout))
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	if b[0] >= reqForward {
		if s.serve == nil {
			c.Close()
			return
		}
		s.serve(b[0], c)
		return
	}
	select {
	case s.raftConns <- &peekedConn{Conn: c, first: b[0], has: true}:
	case <-s.closed:
		c.Close()
	}
}

// Accept implements net.Listener for raft: its connections only.
func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftConns:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (s *streamLayer) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.Listener.Close()
	})
	return err
}

// peekedConn gives back the byte sort read.
type peekedConn struct {
	net.Conn
	first byte
	has   bool
}

func (p *peekedConn) Read(b []byte) (int, error) {
	if p.has && len(b) > 0 {
		b[0], p.has = p.first, false
		return 1, nil
	}
	return p.Conn.Read(b)
}

// listenTLS binds bind and advertises advertise (host:port, a name or an
// address) to the other members.
func listenTLS(bind, advertise string, cfg *tls.Config) (*streamLayer, error) {
	if cfg == nil || len(cfg.Certificates) == 0 || cfg.ClientCAs == nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("cluster: raft needs mutual TLS (see LoadTLS)")
	}
	if _, _, err := net.SplitHostPort(advertise); err != nil {
		return nil, fmt.Errorf("cluster: raft address %q: %w", advertise, err)
	}
	ln, err := tls.Listen("tcp", bind, cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster: listen for raft: %w", err)
	}
	s := &streamLayer{Listener: ln, advertise: raftAddr(advertise), tls: cfg, raftConns: make(chan net.Conn), closed: make(chan struct{})}
	if host, _, _ := net.SplitHostPort(bind); net.ParseIP(host) != nil && !net.ParseIP(host).IsUnspecified() {
		s.local = &net.TCPAddr{IP: net.ParseIP(host)}
	}
	return s, nil
}

// Dial implements raft.StreamLayer; the TLS handshake (which checks the
// peer's certificate names address's host) is done before it returns.
func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: timeout, LocalAddr: s.local}, Config: s.tls}
	return d.Dial("tcp", string(address))
}

// Addr is the advertised address, which raft gives the other members.
func (s *streamLayer) Addr() net.Addr { return s.advertise }

// raftAddr is a host:port as configured, left unresolved so a DNS name
// (a StatefulSet pod's) keeps following its pod.
type raftAddr string

func (a raftAddr) Network() string { return "tcp" }
func (a raftAddr) String() string  { return string(a) }
