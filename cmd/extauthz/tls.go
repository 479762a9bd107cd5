package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/metrics"
	"github.com/extauthz/extauthz/replication"
	"github.com/extauthz/extauthz/tlsfiles"
)

// TLS of the admin port and of its clients (docs/security.md): the admin
// serves the certificate of --tls-cert-file/--tls-key-file, re-read when
// the files change; sidecars and the CLI verify it against --admin-ca-file
// or the system roots.

// adminServerTLS returns the TLS configuration of the admin port, or nil
// when it serves plain HTTP.
func (n *node) adminServerTLS() (*tls.Config, error) {
	c := n.cfg
	if c.tlsCertFile == "" {
		return nil, nil
	}
	if err := checkPrivateFile(c.tlsKeyFile); err != nil {
		return nil, fmt.Errorf("--tls-key-file: %w", err)
	}
	log := n.log.With().Str("component", "tls").Logger()
	cfg, err := tlsfiles.ServerConfig(tlsfiles.ServerOptions{
		CertFile:     c.tlsCertFile,
		KeyFile:      c.tlsKeyFile,
		ClientCAFile: c.tlsClientCAFile,
		OnError:      reloadErrorLogger(log),
	})
	if err != nil {
		return nil, fmt.Errorf("admin TLS: %w", err)
	}
	return cfg, nil
}

// reloadErrorLogger logs a failed reload of a certificate file, once per
// distinct error: a file left half-written would otherwise log at every
// handshake. The previous certificate stays in use meanwhile.
func reloadErrorLogger(log zerolog.Logger) func(error) {
	var mu sync.Mutex
	last := ""
	return func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if msg := err.Error(); msg != last {
			last = msg
			log.Error().Err(err).Msg("certificate files changed but do not load: the previous certificate stays in use")
		}
	}
}

// requireClientCert answers 401 to a request whose connection presented no
// client certificate that verified against --tls-client-ca-file.
func requireClientCert(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !tlsfiles.HasVerifiedClient(r.TLS) {
			jsonresp.Error(w, http.StatusUnauthorized, "a client certificate signed by the replication client CA is required")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// isLoopbackHost reports whether host (no port) names this machine.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkAdminURLTLS refuses TLS flags beside a plain http:// admin URL:
// they would protect nothing.
func checkAdminURLTLS(raw, caFile, certFile string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "https" {
		return nil // a malformed URL is reported by its user
	}
	switch {
	case caFile != "":
		return fmt.Errorf("--admin-ca-file is set but --admin-url %q is plain http://: use https://", u.Redacted())
	case certFile != "":
		return fmt.Errorf("--tls-client-cert-file is set but --admin-url %q is plain http://: use https://", u.Redacted())
	}
	return nil
}

// warnPlainAdminURL logs a warning when the admin is reached over plain
// HTTP on another machine: its token and key records cross the network in
// clear, and anything answering at that address is believed.
func warnPlainAdminURL(log zerolog.Logger, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" || isLoopbackHost(u.Hostname()) {
		return
	}
	log.Warn().Str("admin_url", u.Redacted()).Msg("the admin is reached over plain HTTP on another host: the replication token and key records cross the network in clear and an impostor at that address is believed; serve TLS on the admin (--tls-cert-file) and use an https:// URL")
}

// replicationClient returns the follower's HTTP client: the replication
// package's transport with the TLS configuration of the flags, counting
// and logging every certificate the admin presents that does not verify.
func (n *node) replicationClient() (*http.Client, error) {
	c := n.cfg
	if c.tlsClientKeyFile != "" {
		if err := checkPrivateFile(c.tlsClientKeyFile); err != nil {
			return nil, fmt.Errorf("--tls-client-key-file: %w", err)
		}
	}
	log := n.log.With().Str("component", "tls").Logger()
	tr, err := tlsfiles.NewTransport(replication.NewTransport(), tlsfiles.ClientOptions{
		CAFile:   c.adminCAFile,
		CertFile: c.tlsClientCertFile,
		KeyFile:  c.tlsClientKeyFile,
		OnError:  reloadErrorLogger(log),
	})
	if err != nil {
		return nil, fmt.Errorf("replication TLS: %w", err)
	}
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_replication_tls_errors_total",
		Help: "Connections to the admin refused because its TLS certificate did not verify (or it did not speak TLS), by reason; nothing is applied from such an admin.",
	}, []string{"reason"})
	for _, r := range tlsfiles.Reasons {
		errs.WithLabelValues(r)
	}
	if err := metrics.Register(n.reg, "replication TLS", errs); err != nil {
		return nil, err
	}
	return &http.Client{Transport: &verifyingTransport{next: tr, errs: errs, log: log}}, nil
}

// verifyingTransport counts and logs the TLS failures of the requests it
// passes on.
type verifyingTransport struct {
	next http.RoundTripper
	errs *prometheus.CounterVec
	log  zerolog.Logger

	mu   sync.Mutex
	last string // reason of the last failure logged at error level; "" after a success
}

func (t *verifyingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	reason := tlsfiles.Classify(err)
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case reason != "":
		t.errs.WithLabelValues(reason).Inc()
		ev := t.log.Error()
		if reason == t.last {
			ev = t.log.Debug() // already said; the follower retries with backoff
		}
		t.last = reason
		ev.Str("reason", reason).Str("host", r.URL.Host).Err(err).
			Msg("the admin's TLS certificate was refused: nothing is taken from it, the replica keeps serving what it has")
	case err == nil:
		t.last = ""
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// transport.
func (t *verifyingTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
