// Package tlsfiles builds the TLS configurations of the admin API and its
// clients from PEM files, and re-reads those files when they change, as
// cert-manager (or any tool that rewrites a Secret volume) rotates them.
//
// A server certificate and key are read again at every handshake: new
// handshakes use the new pair as soon as both files hold a matching one,
// and connections already open keep theirs. A pair that does not parse
// (a half-written rotation) is reported and the previous one stays in
// use. CA files are re-read the same way, at every handshake that
// verifies a peer.
//
// Classify names why a connection to a TLS server failed (unknown
// authority, wrong name, plain HTTP, ...) for logs and metrics.
package tlsfiles
