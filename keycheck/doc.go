// Package keycheck is the key check: whether a presented raw API key is
// valid now. A key is valid when its format is one the policy accepts, its
// SHA-256 is a known record, and that record is not revoked, not expired
// (expires_at <= now is expired) and its owner is active, tested in that
// order. The enforcement decision (authz) and the admin API's project-key
// callers (admin) both ask Check, so the two can never disagree.
package keycheck
