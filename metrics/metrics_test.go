package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegister(t *testing.T) {
	newCounter := func() prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "extauthz_test_total", Help: "test"})
	}
	if err := Register(nil, "x", newCounter()); err != nil {
		t.Fatalf("nil registerer: %v", err)
	}
	reg := prometheus.NewRegistry()
	if err := Register(reg, "x", newCounter()); err != nil {
		t.Fatal(err)
	}
	err := Register(reg, "admin", newCounter())
	if err == nil || !strings.HasPrefix(err.Error(), "admin: register metrics: ") {
		t.Fatalf("second registration: %v; want the component's error", err)
	}
}
