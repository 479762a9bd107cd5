// Command soak runs extauthz for a long time under steady load and key churn
// and checks that every authorization decision was right and that no process
// leaked goroutines or memory. `make soak` runs it as
//
//	go run ./internal/soak -bin bin/extauthz -duration 10m
//
// It starts real processes on loopback: one `extauthz admin` and two
// `extauthz sidecar`s following it (temp dirs, generated token files, the
// Nexgent policy of examples/policies/nexgent.yaml). For the duration, four
// things run at once:
//
//   - Load: -workers callers, paced to -rate requests/s in total, send
//     Traefik forwardAuth (GET /auth with X-Forwarded-Method/-Uri) and Envoy
//     ext_authz gRPC Check requests to the sidecars, with keys drawn from the
//     oracle's pool: live keys, revoked keys, keys retired by a rotation with
//     a grace period or created with a short expiry, keys whose owner is
//     deactivated, and well-formed keys that were never issued. Paths are
//     chosen so that a valid key is sometimes allowed (200 / OK) and sometimes
//     lacks the scope (403 / PERMISSION_DENIED); an invalid one is a 401 /
//     UNAUTHENTICATED.
//   - Churn: one driver, every -churn-interval, creates keys (some owned by
//     a user, some with a short expiresAt, one in five with a rate limit of
//     1 to 3 per second, a quarter of the others with a quota of 20 to 79
//     requests), rotates them (gracePeriod "0s", or a short grace), revokes
//     them, and disables and re-enables users, through the admin API with
//     the operator token. The sidecars run with -quota-allowance (default
//     5), so that quotas are spent and their bound is tight.
//   - Oracle: every admin change is recorded with the time its request was
//     sent and the time its response arrived (t_ack). A request that started
//     at or after t_ack + -bound must see the change; a request that finished
//     before the change was sent must not; in between, both answers are
//     accepted. An expiry (a rotation's grace end or a created key's
//     expiresAt) is "either" within -expiry-slack of the instant the admin
//     set it to. Changes are serialised (one churn driver), so the admin's
//     revision order is the order the oracle records. Each answer is
//     correct, wrong (a decision no admissible state explains: must be 0) or
//     an error (transport error, gRPC error, HTTP 5xx). A 200 / OK must also
//     name the key's id in x-auth-key-id. A 429 is admissible exactly when
//     the key's bucket on that sidecar may be empty (limits.go) or, for a
//     quota'd key, when its rotation's allowed checks reach the quota or
//     that sidecar allowed its allowance; an allow of a quota'd key is
//     wrong past the quota plus sidecars × allowance per key of the
//     rotation, the documented bound (quota.go).
//   - Sampler: every 5 s, /metrics of each process (go_goroutines,
//     process_resident_memory_bytes, go_memstats_heap_inuse_bytes and the
//     heap goal go_memstats_next_gc_bytes; the admin's on its admin port, the
//     sidecars' on their HTTP port), the admin's extauthz_store_revision and
//     each sidecar's extauthz_replica_revision; RssAnon and RssFile from
//     /proc and the size of its bbolt file.
//
// The summary compares each process's first sample at or after 20 % of the
// duration (the baseline, after warm-up) with the last one, gives the
// growth per 1,000 changes of anonymous and file-backed RSS, heap goal and
// bbolt file between the means of 12 samples at each end, and the verdicts
// are: no wrong decisions, errors within -max-error-ratio, goroutines flat
// (last ≤ baseline + -goroutine-slack), RSS growth below -rss-growth, every
// process alive until the end, replicas converged to the admin's revision,
// and a clean exit (code 0) of every process on SIGTERM. The exit status is
// 1 when any verdict fails. -quick is a 20 s smoke run, whose baseline is
// the sample at 10 s.
//
// Every child gets SIGKILL if this program dies (Pdeathsig); on a normal end
// and on Ctrl-C (SIGINT/SIGTERM) they are stopped with SIGTERM and the temp
// dir is removed.
package main
