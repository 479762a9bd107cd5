// Package jsonresp writes the JSON responses of extauthz's HTTP APIs (the
// admin API and the replication feed), with one set of headers:
// Content-Type application/json, Cache-Control no-store (a response can
// carry a raw key, so none may be cached) and X-Content-Type-Options
// nosniff; every error body is {"error": message}, including the 404 and
// 405 of a request no route matched.
package jsonresp
