// Package testnet gives tests loopback addresses to listen on: FreeAddr
// returns a 127.0.0.1 port nothing listens on, for a process or server a
// test starts and must name before it runs (a raft peer list, a fixed
// admin address a restarted process keeps).
package testnet
