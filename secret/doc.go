// Package secret compares a presented secret (a bearer token) with the
// configured one in constant time. Both sides are hashed with SHA-256
// first and the digests compared with crypto/subtle, so neither the
// content nor the length of the configured secret leaks through timing.
// The admin API's operator token and the replication token use it.
package secret
