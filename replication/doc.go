// Package replication keeps sidecar replicas in step with the admin's
// authoritative key store over HTTP NDJSON: the replication protocol of
// docs/replication.md.
//
// The admin side is Server, an http.Handler for
//
//   - GET /replication/v1/snapshot: every record's enforcement view, inside
//     one read transaction, with a count and sha256 trailer;
//   - GET /replication/v1/watch?since=R[&store_id=ID]: every change after R,
//     pushed as it commits, and heartbeats;
//   - POST /replication/v1/usage: last-used times and counts from sidecars;
//
// plus RunCompactor, which bounds the change log a watch can resume from.
//
// The sidecar side is Follower: it serves lookups from a local bbolt
// replica (Dir/replica.db) and its Run loop takes snapshots and follows the
// watch, from one member of an admin cluster at a time (a URL list, or a
// name resolving to several addresses), moving to the next when that one
// is lost and resuming from the replica's revision (admins.go). A snapshot is written to a new file and swapped in only when its
// trailer verifies, so lookups see the old or the new replica, never a
// mix. A change from the watch is handed to keystore.Replica.Stage, which
// appends it to a write-ahead log (Dir/replica.db.wal, not synced), puts it
// in force from memory at once and commits it to the file about
// SyncInterval later (jittered ±50 %); a restart after a crash replays the
// log. The follower itself keeps only the protocol: snapshot, watch,
// resync and health. While the admin is unreachable the replica keeps serving
// (fail-static); MaxStaleness turns a replica that has not been known
// current for too long into Healthy errors.
//
// Nothing secret crosses the wire but the replication token in the
// Authorization header: records carry key hashes and the enforcement view
// only (no name, no raw key), and neither side logs the token.
//
// docs/replication.md describes the protocol and the follower's state
// machine in full.
package replication
