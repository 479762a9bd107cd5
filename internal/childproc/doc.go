// Package childproc starts extauthz processes (and the benchmark's
// do-nothing servers) as children, learns the addresses they listen on from
// their JSON log lines, watches their logs for warnings and errors, reads
// their memory from /proc, and stops them. It serves the benchmark and the
// soak programs; the end-to-end tests keep their own testing.T-based
// harness.
package childproc
