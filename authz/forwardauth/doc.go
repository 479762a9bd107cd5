// Package forwardauth is the HTTP front door of the authorization sidecar:
// /auth and every path below it, for Traefik forwardAuth, nginx
// auth_request and Envoy's HTTP ext_authz mode, over an authz.Authorizer.
//
// The door learns the original request from exactly one family of
// forwarded headers (Families; see Door and docs/security.md) and refuses a
// request whose family it cannot tell. It answers exactly 200 to allow,
// with the identity headers (built once per key and store revision), and
// the decision's status, JSON body and headers to deny.
//
// NewHTTPServer is the HTTP port's server: fasthttp with the port's limits,
// panic recovery and accept retries, the door answered before anything
// else and every other path (probes, metrics) handed to a net/http
// handler.
package forwardauth
