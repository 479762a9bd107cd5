// Package usage carries what the front doors observe of each key, its last
// use and a count of uses, to the store that keeps it: one buffer, one
// flush timer and one cap for the whole process.
//
// Buffer implements the decision's usage recorder (authz.UsageRecorder):
// Record folds a use into the buffer without blocking on anything but a
// mutex. Run hands the buffer to a Send function every interval (a
// sidecar's follower posts it to the admin; a standalone process writes it
// to its own store) and puts back what Send could not deliver, for the
// next flush. The buffer holds at most Options.Max distinct keys without a
// quota: uses of further keys are dropped, counted in
// extauthz_usage_dropped_total and logged once per flush interval. Uses of
// keys with a quota are never dropped (the quota ledger bounds those keys).
package usage
