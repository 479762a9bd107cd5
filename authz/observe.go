package authz

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Metrics holds the check metrics of both front doors.
type Metrics struct {
	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec

	// Resolved label children, so a check does not hash label values.
	counters  sync.Map // counterKey -> prometheus.Counter
	observers sync.Map // frontend -> prometheus.Observer
}

type counterKey struct {
	frontend, reason string
	kind             Kind
}

func (m *Metrics) counter(frontend string, kind Kind, reason string) prometheus.Counter {
	k := counterKey{frontend, reason, kind}
	if c, ok := m.counters.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c := m.checks.WithLabelValues(frontend, kind.String(), reason)
	m.counters.Store(k, c)
	return c
}

func (m *Metrics) observer(frontend string) prometheus.Observer {
	if o, ok := m.observers.Load(frontend); ok {
		return o.(prometheus.Observer)
	}
	o := m.duration.WithLabelValues(frontend)
	m.observers.Store(frontend, o)
	return o
}

// NewMetrics creates the check metrics and registers them with reg (when
// not nil): extauthz_checks_total{frontend,decision,reason} and
// extauthz_check_duration_seconds{frontend}.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_checks_total",
			Help: "Authorization checks by front door, decision and reason.",
		}, []string{"frontend", "decision", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_check_duration_seconds",
			Help:    "Time to decide a check, excluding transport.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.025, 0.1},
		}, []string{"frontend"}),
	}
	if reg != nil {
		reg.MustRegister(m.checks, m.duration)
	}
	return m
}

// Decision names as they appear in logs and metrics.
func (k Kind) String() string {
	switch k {
	case Allow:
		return "allow"
	case Unauthenticated:
		return "unauthenticated"
	case Forbidden:
		return "forbidden"
	case RateLimited:
		return "rate_limited"
	case AmbiguousPath:
		return "bad_request"
	case Unavailable:
		return "unavailable"
	}
	return "unknown"
}

// observe logs and counts one decision. Denials log at info, allows at
// debug. Only the key id and the stored display prefix are logged, never
// anything of the presented credential.
func (a *Authorizer) observe(ctx context.Context, r *Request, d *Decision, path string, took time.Duration) {
	if a.metrics != nil {
		a.metrics.counter(r.Frontend, d.Kind, d.Reason).Inc()
		a.metrics.observer(r.Frontend).Observe(took.Seconds())
	}
	level := zerolog.InfoLevel
	if d.Kind == Allow {
		level = zerolog.DebugLevel
	}
	ev := a.log.WithLevel(level)
	if ev == nil {
		return
	}
	if path == "" {
		path = stripQuery(r.Path)
	}
	ev = ev.Str("request_id", r.RequestID).
		Str("frontend", r.Frontend).
		Str("decision", d.Kind.String()).
		Str("reason", d.Reason).
		Str("method", r.Method).
		Str("host", r.Host).
		Str("path", path).
		Str("source_ip", r.SourceIP).
		Dur("duration", took)
	if d.Key != nil {
		ev = ev.Str("key_id", d.Key.ID).Str("key_prefix", d.Key.Prefix)
	}
	if r.Conflict != "" {
		ev = ev.Str("conflict", r.Conflict)
	}
	_ = ctx
	ev.Msg("check")
}

func stripQuery(p string) string {
	for i := 0; i < len(p); i++ {
		if p[i] == '?' || p[i] == '#' {
			return p[:i]
		}
	}
	return p
}
