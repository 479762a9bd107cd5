package authz

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/metrics"
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
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
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
	if err := metrics.Register(reg, "authz", m.checks, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}
