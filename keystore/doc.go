// Package keystore owns the key model and its bbolt storage: key, user and
// project records, the change log that replication streams from, and the audit
// log. Only the SHA-256 of a raw key is ever stored.
//
// One Store type serves both roles:
//
//   - the authoritative store of the admin (and standalone) process, changed
//     through CreateKey, Revoke, Rotate, SetUserActive and friends. Every such
//     change writes the record, one change-log entry per record (a revision)
//     and an audit event in the same bbolt transaction, and is fsynced before
//     the call returns. Concurrent creates are coalesced with bbolt's Batch.
//     A key record is stored with its enforcement view first (record.go),
//     which Snapshot.ForEachRecord streams to replicas without decoding
//     anything.
//   - the replica of a sidecar (Options.Replica), changed only through
//     ApplyChanges, Stage/Commit and SetOrigin with records received from
//     the admin. Stage puts changes in force from memory at once; Commit
//     writes them in one fsynced transaction later (staged.go), so the
//     fsync is not on the path from the admin to the decision. A replica
//     keeps no change log and no id index, and persists bbolt's freelist
//     so it opens without walking the file.
//
// For an admin cluster (package cluster) the authoritative store is a
// consensus log's state machine: Applied returns a view whose writes take
// their time from the log entry and record its index in the same
// transaction; AdoptStoreID gives every member one store id; Backup and
// Restore copy the whole file (replicated.go).
//
// Lookup is the hot path of every authorization check: a decoded record of a
// known key is served from a cache valid for one store revision; otherwise
// one read transaction, one B+tree seek by hash and one small JSON decode.
// ReleaseMemory gives the clean pages of bbolt's file map back to the page
// cache.
//
// The package does not log; it returns errors wrapping the sentinel errors
// below. Byte slices read inside transactions are copied before they escape.
// A Store is safe for concurrent use.
package keystore
