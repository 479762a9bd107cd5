package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/metrics"
)

// newRequestMetrics makes extauthz_admin_requests_total{route,code} and
// registers it with reg.
func newRequestMetrics(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_admin_requests_total",
		Help: "Admin API requests by route pattern and HTTP status code.",
	}, []string{"route", "code"})
	return requests, metrics.Register(reg, "admin", requests)
}
