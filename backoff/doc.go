// Package backoff computes the pauses between retries: a capped
// exponential backoff with jitter. It is the one retry pause of extauthz:
// the replication follower reconnecting to the admin, and the HTTP port
// retrying a temporary accept error.
package backoff
