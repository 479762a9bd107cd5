package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
)

// MinVersion is the lowest TLS version either side accepts.
const MinVersion = tls.VersionTLS12

// KeyPair is a certificate and private key read from two PEM files, read
// again whenever Get is called and the files changed.
type KeyPair struct {
	certFile, keyFile string
	onError           func(error)

	mu      sync.Mutex
	certPEM []byte
	keyPEM  []byte
	cert    *tls.Certificate
}

// LoadKeyPair reads certFile and keyFile, which must hold a matching
// certificate (chain) and private key. onError, when not nil, is told of
// every later reload that failed (the previous pair stays in use); it
// never sees key material.
func LoadKeyPair(certFile, keyFile string, onError func(error)) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile, onError: onError}
	if _, err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

// load re-reads both files and parses them when their content changed.
func (k *KeyPair) load() (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(k.certFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: read private key: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		return k.cert, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The error of X509KeyPair names what is wrong, never the key.
		return nil, fmt.Errorf("tlsfiles: %s and %s: %w", k.certFile, k.keyFile, err)
	}
	k.certPEM, k.keyPEM, k.cert = certPEM, keyPEM, &cert
	return k.cert, nil
}

// Get returns the current pair: the files' content when it parses, else
// the last pair that did (and onError is told why).
func (k *KeyPair) Get() *tls.Certificate {
	cert, err := k.load()
	if err == nil {
		return cert
	}
	if k.onError != nil {
		k.onError(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cert
}

// CertPool is a set of CA certificates read from a PEM file, read again
// whenever Get is called and the file changed.
type CertPool struct {
	file    string
	onError func(error)

	mu   sync.Mutex
	pem  []byte
	pool *x509.CertPool
}

// LoadCertPool reads file, which must hold at least one PEM certificate.
// onError is as for LoadKeyPair.
func LoadCertPool(file string, onError func(error)) (*CertPool, error) {
	p := &CertPool{file: file, onError: onError}
	if _, err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *CertPool) load() (*x509.CertPool, error) {
	b, err := os.ReadFile(p.file)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: read CA file: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pool != nil && bytes.Equal(b, p.pem) {
		return p.pool, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tlsfiles: CA file %s holds no PEM certificate", p.file)
	}
	p.pem, p.pool = b, pool
	return pool, nil
}

// Get returns the current pool, as KeyPair.Get does.
func (p *CertPool) Get() *x509.CertPool {
	pool, err := p.load()
	if err == nil {
		return pool
	}
	if p.onError != nil {
		p.onError(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pool
}

// ServerOptions are the files of a TLS server.
type ServerOptions struct {
	// CertFile and KeyFile hold the server's certificate (chain) and key.
	CertFile, KeyFile string
	// ClientCAFile, when set, holds the CAs whose client certificates
	// the server verifies. A client may still connect without one (the
	// admin API's operators and users do not have one): the handler
	// decides with HasVerifiedClient.
	ClientCAFile string
	// OnError is told of every reload that failed.
	OnError func(error)
}

// ServerConfig returns the configuration of a TLS server whose certificate
// and client CAs follow their files.
func ServerConfig(o ServerOptions) (*tls.Config, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, errors.New("tlsfiles: a server needs both a certificate file and a key file")
	}
	pair, err := LoadKeyPair(o.CertFile, o.KeyFile, o.OnError)
	if err != nil {
		return nil, err
	}
	var cas *CertPool
	if o.ClientCAFile != "" {
		if cas, err = LoadCertPool(o.ClientCAFile, o.OnError); err != nil {
			return nil, err
		}
	}
	base := &tls.Config{MinVersion: MinVersion, NextProtos: []string{"h2", "http/1.1"}}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := base.Clone()
		c.Certificates = []tls.Certificate{*pair.Get()}
		if cas != nil {
			c.ClientCAs = cas.Get()
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return cfg, nil
}

// HasVerifiedClient reports whether a connection's peer presented a
// client certificate that verified against the server's client CAs.
func HasVerifiedClient(cs *tls.ConnectionState) bool {
	return cs != nil && len(cs.VerifiedChains) > 0
}

// ClientOptions are the files of a TLS client.
type ClientOptions struct {
	// CAFile holds the CAs that may sign the server's certificate. Empty
	// means the system's roots.
	CAFile string
	// CertFile and KeyFile, both or neither, hold the client certificate
	// presented when the server asks for one.
	CertFile, KeyFile string
	// OnError is told of every reload that failed.
	OnError func(error)
}

// client is the loaded files of a ClientOptions.
type client struct {
	cas  *CertPool // nil: the system roots
	pair *KeyPair  // nil: no client certificate
}

func loadClient(o ClientOptions) (*client, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("tlsfiles: a client certificate needs both a certificate file and a key file")
	}
	c := &client{}
	var err error
	if o.CertFile != "" {
		if c.pair, err = LoadKeyPair(o.CertFile, o.KeyFile, o.OnError); err != nil {
			return nil, err
		}
	}
	if o.CAFile != "" {
		if c.cas, err = LoadCertPool(o.CAFile, o.OnError); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// config is a client configuration trusting roots (nil: the system's),
// crypto/tls verifying the chain and the name of the host dialled.
func (c *client) config(roots *x509.CertPool) *tls.Config {
	cfg := &tls.Config{MinVersion: MinVersion, RootCAs: roots}
	if pair := c.pair; pair != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.Get(), nil
		}
	}
	return cfg
}

func (c *client) roots() *x509.CertPool {
	if c.cas == nil {
		return nil
	}
	return c.cas.Get()
}

// ClientConfig returns the configuration of a TLS client that verifies the
// server's certificate chain against the CAs of CAFile as it is now (or
// the system roots) and presents the client certificate, re-read when it
// changes. NewTransport also follows CAFile.
func ClientConfig(o ClientOptions) (*tls.Config, error) {
	c, err := loadClient(o)
	if err != nil {
		return nil, err
	}
	return c.config(c.roots()), nil
}

// Transport is an http.RoundTripper over clones of a base http.Transport
// whose TLS configuration follows the files of a ClientOptions: when the
// CA file changes, new connections verify with the new CAs (connections
// already open, verified with the old ones, stay until they end).
type Transport struct {
	base   *http.Transport
	client *client

	mu    sync.Mutex
	roots *x509.CertPool
	cur   *http.Transport
}

// NewTransport returns a Transport that uses base's settings (timeouts,
// proxy, pooling) with the TLS configuration of o. base is not modified.
func NewTransport(base *http.Transport, o ClientOptions) (*Transport, error) {
	c, err := loadClient(o)
	if err != nil {
		return nil, err
	}
	t := &Transport{base: base, client: c}
	t.roots = c.roots()
	t.cur = t.build(t.roots)
	return t, nil
}

func (t *Transport) build(roots *x509.CertPool) *http.Transport {
	tr := t.base.Clone()
	tr.TLSClientConfig = t.client.config(roots)
	return tr
}

// current returns the transport of the CA file's current content.
func (t *Transport) current() *http.Transport {
	roots := t.client.roots() // the same pool while the file is unchanged
	t.mu.Lock()
	defer t.mu.Unlock()
	if roots != t.roots {
		old := t.cur
		t.roots, t.cur = roots, t.build(roots)
		old.CloseIdleConnections()
	}
	return t.cur
}

// RoundTrip sends r on a connection verified with the current CAs.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(r)
}

// CloseIdleConnections closes the idle connections of the current
// transport.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur.CloseIdleConnections()
}
