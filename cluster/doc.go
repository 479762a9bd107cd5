// Package cluster runs the admin's authoritative key store as the state
// machine of a hashicorp/raft group, so that several admin processes hold
// the same records, revisions, change log and store id, and a write
// survives the loss of a minority of them.
//
// A write is a Command: everything non-deterministic about it (key ids,
// hashes of minted keys, timestamps) is decided by the proposing node
// before the command enters the log, and the raw key never does (a Key
// record has no field for it). Every node applies committed commands in
// log order through the store's own write methods, in a view
// (keystore.Store.Applied) that takes its time from the command and stores
// the log index in the same transaction as the change: an entry already in
// the file is skipped when raft replays its log after a restart, so no
// change is applied twice. The entries raft commits together are applied
// in one fsynced transaction (raft.BatchingFSM, keystore.Store.ApplyEntries),
// each with its own result.
//
// A follower forwards writes, and asks for read indexes, over kept-open
// connections to the leader (memberconn.go); concurrent read-index waits
// share one leadership check (readindex.go).
//
// A committed entry a member cannot apply as the others do (a command its
// build cannot read, or a store write that fails) halts its state machine
// at that entry (fsm.halt, ErrHalted) instead of being skipped, which would
// make the member diverge.
//
// A snapshot is a consistent copy of the bbolt file (keystore.Store.Backup);
// installing one replaces the store's content in one transaction. On start
// the store file, fsynced at every applied entry, is itself the state: raft
// does not restore its last snapshot over it (Config.NoSnapshotRestoreOnStart)
// unless the file is behind that snapshot.
//
// Raft traffic is mutual TLS (StreamLayer): a peer must present a
// certificate signed by the cluster's CA, or its connection is refused
// before any raft message is read. LoadTLS re-reads the certificate, key
// and CA files (package tlsfiles) for every new connection, so a rotation
// needs no restart. A member bound to an IP address dials its peers from
// it, so a peer (or a proxy between members) sees its own address.
//
// Only the first member of the initial peer list bootstraps (Start): from
// an empty store, or by taking over a single admin's store as a snapshot at
// index 1 that every other member receives before any entry, so no quorum
// of empty members can elect a leader without its records.
//
// The first leader proposes its store id; every member adopts the first
// such entry (keystore.Store.AdoptStoreID), so all members report the same
// store id to the sidecars that replicate from them.
package cluster
