//go:build !extauthz_broken_reads

package cluster

// servesStaleReads is false: a read waits for the read index
// (WaitReadIndex). See broken_reads.go.
const servesStaleReads = false
