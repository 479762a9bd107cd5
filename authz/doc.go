// Package authz owns the authorization decision, apart from the protocols
// that carry it.
//
// Authorizer.Check turns a protocol-neutral Request into a Decision by the
// decision table (docs/policy.md): refuse an ambiguous request and one the
// application could run as another method or path (a method or path
// override, a lower-case method, a form POST; override.go), match the
// canonical path against the policy's routes, admit a public route, extract
// the key (X-API-Key and/or Bearer, in the policy's order), check its
// format, hash it, look the hash up, check revocation, expiry and the
// owner, then the project isolation and the required scope, and last takes
// one use of the key's quota from this process's allowance (package quota)
// and the route's cost from the key's rate limit (its own or the policy's
// default; one token bucket per key in package ratelimit), refusing with
// RateLimited when either is spent. The front doors live in their own packages
// and call the same Check: authz/envoy (the Envoy ext_authz gRPC service)
// and authz/forwardauth (the HTTP door for Traefik, nginx and Envoy's HTTP
// mode).
//
// What a door answers to an allowed key is built once per key and store
// revision and kept in an AllowCache; Identity and CredentialHeaders say
// which headers a door sets and removes upstream.
//
// With Options.TracerProvider set, each check is one OpenTelemetry span
// (SpanName), a child of the trace context a door put in the context or
// of the request's traceparent; without it, tracing costs a nil check.
//
// The package declares the small interfaces it needs (KeyLookup,
// UsageRecorder), imports keystore only for its types and neither grpc nor
// an HTTP server. It logs one line per denial (allowed checks at debug)
// and never logs key material.
package authz
