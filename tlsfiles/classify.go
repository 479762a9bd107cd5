package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
)

// Reasons returned by Classify: the values of a metric label.
const (
	ReasonUnknownAuthority = "unknown_authority" // signed by a CA the client does not trust
	ReasonWrongName        = "wrong_name"        // valid, but for another name
	ReasonExpired          = "expired"           // expired or not yet valid
	ReasonBadCertificate   = "bad_certificate"   // otherwise unusable (key usage, constraints, ...)
	ReasonNotTLS           = "not_tls"           // the server answered without TLS (plain HTTP)
	ReasonRefused          = "refused_by_server" // the server refused the handshake (e.g. our client certificate)
	ReasonHandshake        = "handshake"         // any other handshake failure
)

// Reasons lists every reason Classify returns, to pre-create metric series.
var Reasons = []string{ReasonUnknownAuthority, ReasonWrongName, ReasonExpired, ReasonBadCertificate, ReasonNotTLS, ReasonRefused, ReasonHandshake}

// Classify returns why err, an error of a TLS client connection (possibly
// wrapped, as by net/http), failed the handshake, or "" when it is not a
// TLS failure (a refused connection, a timeout, an HTTP status, ...).
func Classify(err error) string {
	if err == nil {
		return ""
	}
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
		op       *net.OpError
	)
	switch {
	case errors.As(err, &unknown):
		return ReasonUnknownAuthority
	case errors.As(err, &hostname):
		return ReasonWrongName
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return ReasonExpired
		}
		return ReasonBadCertificate
	case errors.As(err, &verify):
		return ReasonBadCertificate
	case errors.As(err, &record),
		// net/http replaces the RecordHeaderError of a server that
		// answered in plain HTTP with an error of its own, untyped.
		strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return ReasonNotTLS
	case errors.As(err, &op) && op.Op == "remote error":
		// crypto/tls reports an alert received from the peer so.
		return ReasonRefused
	case strings.Contains(err.Error(), "tls: "):
		// crypto/tls prefixes every error of its own with "tls: ".
		return ReasonHandshake
	}
	return ""
}
