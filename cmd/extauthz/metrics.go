package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/metrics"
)

// keysCollector exports extauthz_keys{state}. Counting walks every
// record, so a count is reused for a minute.
type keysCollector struct {
	store *keystore.Store
	desc  *prometheus.Desc

	mu    sync.Mutex
	at    time.Time
	stats keystore.Stats
}

func registerStoreGauges(reg prometheus.Registerer, s *keystore.Store) error {
	return metrics.Register(reg, "store", &keysCollector{
		store: s,
		desc:  prometheus.NewDesc("extauthz_keys", "Keys in the store by state (refreshed at most once a minute).", []string{"state"}, nil),
	})
}

func (c *keysCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *keysCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > time.Minute {
		if st, err := c.store.Stats(time.Now()); err == nil {
			c.stats, c.at = st, time.Now()
		}
	}
	st := c.stats
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.Active), "active")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.Expired), "expired")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(st.Revoked), "revoked")
}
