// Package admin is the HTTP admin API of extauthz: it creates, lists,
// rotates and revokes API keys, creates projects, deactivates users, shows
// the audit log and bulk-imports existing key hashes (docs/admin-api.md).
//
// A *Server is an http.Handler. The process that owns the authoritative
// keystore mounts it on the admin port next to /healthz, /readyz, /metrics
// and the replication feed, which live elsewhere; every other path answers
// 404 with a JSON body.
//
// # Callers
//
// Every route needs a credential in "Authorization: Bearer <value>" (read
// by package bearer's rule: only spaces and tabs around it are trimmed), except
// POST /api/v1/projects when Options.PublicProjectCreate is set. The value is
// classified in this order:
//
//  1. the operator token (Options.AdminToken), compared in constant time on
//     SHA-256 digests: may call every route;
//  2. a JWT (three dot-separated parts) when Options.JWT configures key
//     material: a user whose id is the "sub" claim; may call the Nexgent
//     routes for its own keys;
//  3. anything else is an API key, checked by the enforcement path's own
//     key check (package keycheck: format accepted by the current policy,
//     hash known, not revoked, not expired, owner active): a project key
//     may call the NexGraph routes of its own project.
//
// A missing or invalid credential is a 401 with WWW-Authenticate; a valid
// credential on a route its kind may not use is a 403.
//
// # Writes
//
// Handlers validate input completely before calling the keystore, whose
// every mutation writes the record, a change-log revision and an audit event
// in one fsynced bbolt transaction. Raw keys exist only in memory while a
// create or rotate response is written; they are never logged. Each change
// logs one line (actor, action, key_id, key_prefix, route, status).
//
// A Server is safe for concurrent use.
package admin
