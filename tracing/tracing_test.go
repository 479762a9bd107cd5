package tracing

import (
	"context"
	"testing"
)

func TestEnabled(t *testing.T) {
	for _, c := range []struct {
		env  map[string]string
		on   bool
		fail bool
	}{
		{env: nil},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, on: true},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, on: true},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, fail: true},
	} {
		on, err := Enabled(func(k string) string { return c.env[k] })
		if on != c.on || (err != nil) != c.fail {
			t.Errorf("%v: on %v, err %v; want on %v, failure %v", c.env, on, err, c.on, c.fail)
		}
	}
}

func TestNewOffIsNil(t *testing.T) {
	p, err := New(context.Background(), "test", func(string) string { return "" })
	if err != nil || p != nil || p.TracerProvider() != nil {
		t.Fatalf("New with no OTEL_* variables: %v, %v; want nil (off)", p, err)
	}
	if _, err := New(context.Background(), "test", func(k string) string {
		return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"}[k]
	}); err == nil {
		t.Error("an unknown OTLP protocol was accepted")
	}
}

// TestSpanLimitsBoundAttributes: attribute values are bounded unless the
// environment sets its own bound (the SDK's default is unlimited).
func TestSpanLimitsBoundAttributes(t *testing.T) {
	t.Setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "")
	t.Setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "")
	if got := spanLimits().AttributeValueLengthLimit; got != MaxAttributeLength {
		t.Errorf("default attribute length limit %d; want %d", got, MaxAttributeLength)
	}
	t.Setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "1000")
	if got := spanLimits().AttributeValueLengthLimit; got != 1000 {
		t.Errorf("with OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT=1000: %d", got)
	}
}
