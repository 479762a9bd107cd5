package admin

// DefaultAddr is the default listen address of the admin API and the
// replication feed.
const DefaultAddr = ":8181"
