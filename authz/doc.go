// Package authz owns the authorization decision and its two front doors.
//
// Authorizer.Check turns a protocol-neutral Request into a Decision by the
// table of the specification: extract the key (X-API-Key and/or Bearer, in
// the policy's order), check its format, hash it, look the hash up, check
// revocation, expiry and the owner, then match the normalised path against
// the policy's routes for the required scope and project. Both front doors
// call the same Check:
//
//   - EnvoyServer: the Envoy ext_authz v3 gRPC Check. Denials are successful
//     RPCs with denied_response; only an unusable store returns an RPC error
//     (UNAVAILABLE), which Envoy maps to its status_on_error.
//   - ForwardAuth: a fasthttp handler for Traefik forwardAuth, nginx
//     auth_request and Envoy's HTTP ext_authz mode, on /auth and every path
//     below it, for every method. NewHTTPServer is the HTTP port's server
//     (its limits, and net/http probes and metrics beside the door).
//
// What a door answers to an allowed key (the gRPC response, encoded once
// and sent as bytes; the forwardAuth identity headers) is built once per
// key and store revision and reused from a bounded cache (allowcache.go);
// denials are built per request. The gRPC door's codec decodes a
// CheckRequest only as far as Check reads it (envoyrequest.go): the
// headers it does not read are skipped, not decoded.
//
// The package declares the small interfaces it needs (KeyLookup,
// UsageRecorder) and imports keystore only for its types. It logs one line
// per denial (allowed checks at debug) and never logs key material.
package authz
