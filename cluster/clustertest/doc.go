// Package clustertest starts in-process admin clusters for the tests of
// the packages above cluster: Start runs members over loopback with mutual
// TLS from a throwaway CA (internal/testpki, loaded by cluster.LoadTLS),
// each with its own store, and waits until the first member leads.
package clustertest
