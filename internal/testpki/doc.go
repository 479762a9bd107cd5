// Package testpki makes throwaway certificate authorities and the server
// and client certificates they sign, as PEM files, for tests of TLS
// between extauthz processes. Keys are ECDSA P-256 and never leave the
// test's temporary directory.
package testpki
