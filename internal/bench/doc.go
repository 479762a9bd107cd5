// Command bench measures extauthz as it ships and prints the performance
// table of BENCHMARKS.md. `make bench` runs it as
//
//	go run ./internal/bench -bin bin/extauthz
//
// Everything runs as real processes on loopback: an `extauthz admin` with a
// store prefilled with 1,000 or 1,000,000 keys, `extauthz sidecar`s
// following it over the replication feed, and do-nothing gRPC and HTTP
// servers (this program re-executed with a hidden -serve-noop-grpc /
// -serve-noop-http flag), which are the machine's ceiling: the gRPC one on
// the same grpc-go and go-control-plane as extauthz, the HTTP one a
// do-nothing handler on the HTTP port's own fasthttp server. Every figure
// is printed beside a baseline measured in the same run; nothing is typed
// in by hand.
//
// What is measured:
//
//   - Check (gRPC): a closed-loop load of -concurrency callers spread over
//     -conns gRPC connections, each sending Envoy-shaped CheckRequests
//     (headers map with :method, :path, :authority, x-api-key) and
//     reading only the answer's status.code (statusCodec), for
//     -duration after a warm-up; 90 % valid keys, 10 % well-formed unknown
//     keys. Requests/s and p50/p99/p99.9 from a log-linear histogram
//     (hist.go, HdrHistogram-style, under 0.8 % error), against the sidecar
//     with -keys-small and -keys-large keys and against the do-nothing
//     server. Each load point is cut into -rounds slices that alternate
//     with the other targets' (rotating the order), so background load on a
//     shared machine hits a figure and its baseline alike.
//   - forwardAuth (HTTP): the same with keep-alive net/http clients sending
//     Traefik's GET /auth with X-Forwarded-* and X-Api-Key.
//   - Revocation propagation: admin + N sidecars (-sidecars); for each of
//     -revocations keys, DELETE on the admin, then from its 200 poll every
//     sidecar's Check in a tight loop (or every -revoke-poll) until
//     UNAUTHENTICATED; the round trip of those polls is printed beside it
//     as the measurement's resolution. At 100 sidecars on 2 cores that
//     round trip alone is p99 ~140 ms: 100 busy polling loops keep ~100
//     processes runnable, and the scheduler's round over them is what
//     gets measured. So above -revoke-probe sidecars (default 10) a second
//     series polls only that many sidecars per revocation, drawn at
//     random; every sidecar still receives and applies every revocation.
//     Both series are printed.
//   - Cold start of a sidecar with -keys-large keys (empty data dir to
//     /readyz 200) and restart from its own replica file.
//   - Memory: VmRSS of that sidecar after its load, and of the do-nothing
//     server.
//   - Admin key creations/s with 16 concurrent operator clients, beside
//     the disk's fsync rate.
//   - An admin cluster (ha.go): three `extauthz admin --raft-peers` voters
//     with mutual TLS (certificates from internal/testpki) and raft's
//     default timeouts, each row beside a single admin of the same run.
//     Revocation propagation at the largest -sidecars count, sidecar i
//     following voter i mod 3, on a store of -keys-small keys created
//     through the cluster, polling -revoke-probe sidecars per revocation
//     (beside the single admin's sampled series); creations/s with
//     -admin-clients clients spread over the voters, in -rounds slices
//     alternating with the same clients on one admin; and the time from
//     SIGKILL of the leader to the first 201 through a survivor, beside a
//     single admin SIGKILLed and started again at once.
//
// Progress goes to stderr; the machine, the command line and one markdown
// table go to stdout. Every child process and temp directory is removed at
// exit, also on error or interrupt (children also get SIGKILL should this
// process die). The sidecars run at the shipped log level, info, at which
// every denial (10 % of the load) writes a log line: that cost is measured.
//
// profile_test.go rebuilds the check path in-process for CPU profiles and
// can profile real sidecar, admin and do-nothing processes under this load
// (see its comments).
//
// -door-e2e prints another table instead (door.go): requests/s through a
// real nginx running examples/nginx/extauthz.conf in front of a sidecar,
// beside the same nginx without auth, and the sidecar's CPU per request
// (-nginx-keepalive: nginx keeps its connections to the sidecar open).
//
// -tracing and -limits are A/B runs of gRPC Check in the same way
// (arms.go): a sidecar with tracing off beside one tracing 1 % of checks
// to a do-nothing OTLP endpoint, and a sidecar without rate limits beside
// one whose policy limits every key (never refusing), each with its CPU
// per check and RSS.
//
// -only cluster runs only the cluster rows, and the single admin's
// revocation series at the largest -sidecars count they are compared
// with.
//
// -quick shrinks everything (2 s points, 20,000 large keys, 1 and 3
// sidecars) for a smoke test.
package main
