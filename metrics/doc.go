// Package metrics is the one rule by which every component exports its
// Prometheus metrics: a component takes a prometheus.Registerer in its
// options, builds its collectors in its own metrics.go, and registers them
// with Register when it is constructed, returning the error. A nil
// Registerer exports nothing (tests, the CLI). No component uses the
// global default registry or MustRegister: the process's registry is made
// by cmd/extauthz and served on /metrics. Every metric is listed in
// docs/metrics.md.
package metrics
