// Package envoy is the gRPC front door of the authorization sidecar: the
// Envoy ext_authz v3 Authorization service over an authz.Authorizer.
//
// Server.Check turns a CheckRequest into an authz.Request, asks the
// Authorizer, and answers with a CheckResponse whose status is always set:
// a denial is a successful RPC carrying denied_response (status, JSON body,
// content-type and WWW-Authenticate), and only an unusable store is an RPC
// error (UNAVAILABLE), which Envoy maps to its status_on_error. An allowed
// key's response (identity headers overwritten with append=false, absent
// ones and the credential in headers_to_remove, dynamic metadata) is built
// and encoded once per key and store revision, and sent as its bytes.
//
// Server.Codec is the codec to serve it with: it decodes a CheckRequest
// only as far as Check reads it (request.go), skipping the headers it does
// not read, and writes pre-encoded responses without copying them.
package envoy
