// Package keystore owns the key model and its bbolt storage: key, user and
// project records, the change log that replication streams from, and the audit
// log. Only the SHA-256 of a raw key is ever stored.
//
// Two types share an unexported core (the bbolt file, the revision in
// force and its notification, Lookup and its cache), so that a call made in
// the wrong role does not compile:
//
//   - Store (Open) is the authoritative store of the admin (and standalone)
//     process, changed through CreateKey, Revoke, Rotate, SetKeyRateLimit, SetKeyQuota,
//     SetUserActive and friends. Every such change writes the record, one
//     change-log entry per record (a revision) and an audit event in the
//     same bbolt transaction, and is fsynced before the call returns.
//     Concurrent creates are coalesced with bbolt's Batch. A key record is
//     stored with its enforcement view first (record.go), which
//     Snapshot.ForEachRecord streams to replicas without decoding anything.
//   - Replica (OpenReplica) is a sidecar's copy, changed only with records
//     received from the admin, and owns its durability: ApplyChanges and
//     SetOrigin while a snapshot loads; Stage, which appends each change to
//     a write-ahead log (wal.go) and puts it in force from memory at once
//     (staged.go); Commit, which writes the staged changes in one fsynced
//     transaction on a jittered schedule, so the fsync is not on the path
//     from the admin to the decision; and the replay, at OpenReplica, of a
//     log a dead process left. The invariant that joins log and staging (a
//     change is in the log before it is in force, and leaves the log only
//     once the file holds it) lives in this package alone. A replica keeps
//     no change log and no id index, and persists bbolt's freelist so it
//     opens without walking the file.
//
// For an admin cluster (package cluster) the authoritative store is a
// consensus log's state machine: Applied returns a view whose writes take
// their time from the log entry and record its index in the same
// transaction, and ApplyEntries applies a batch of entries in one
// transaction as those views would one at a time (a failing entry changes
// nothing; entries the file already holds are skipped); AdoptStoreID gives
// every member one store id; Backup and Restore copy the whole file
// (replicated.go).
//
// Lookup is the hot path of every authorization check: a decoded record of a
// known key is served from a cache valid for one store revision; otherwise
// one read transaction, one B+tree seek by hash and one small JSON decode.
// ReleaseMemory gives the clean pages of bbolt's file map back to the page
// cache, when the program asked for it (Options.ReleaseMemory): the package
// changes nothing process-wide on its own.
//
// The package does not log; it returns errors wrapping the sentinel errors
// below. Byte slices read inside transactions are copied before they escape.
// A Store and a Replica are safe for concurrent use.
package keystore
