package authz

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/usage"
)

// benchAuthorizer returns an Authorizer over a real store holding n keys,
// and some of their raw keys.
func benchAuthorizer(b *testing.B, n int) (*Authorizer, []string) {
	b.Helper()
	s, err := keystore.Open(filepath.Join(b.TempDir(), "keys.db"), keystore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	p, err := policy.Load(filepath.Join("..", "examples", "policies", "nexgent.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	f := p.MintFormat()
	var raws []string
	chunk := make([]*keystore.Key, 0, 1000)
	for i := 0; i < n; i++ {
		raw, _ := keystore.Mint(f.Prefix, f.Alphabet(), f.Length)
		if len(raws) < 1000 {
			raws = append(raws, raw)
		}
		chunk = append(chunk, &keystore.Key{ID: uuid.NewString(), Hash: keystore.HashKey(raw), Prefix: raw[:8], Scopes: []string{"signals"}})
		if len(chunk) == cap(chunk) {
			if _, err := s.ImportKeys(chunk, "bench"); err != nil {
				b.Fatal(err)
			}
			chunk = chunk[:0]
		}
	}
	if _, err := s.ImportKeys(chunk, "bench"); err != nil {
		b.Fatal(err)
	}
	a := New(Options{Keys: s, Policy: p, Logger: zerolog.Nop(), Usage: usage.NewDiscard(), Metrics: mustMetrics(b)})
	return a, raws
}

// BenchmarkCheck is the whole decision for an allowed request: parse,
// normalise, match, hash, look up, decide, record usage and metrics.
func BenchmarkCheck(b *testing.B) {
	a, raws := benchAuthorizer(b, 10000)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := Request{Frontend: "envoy", Method: "POST", Path: "/api/v1/trading-signals?x=1", APIKey: []string{raws[i%len(raws)]}}
		if d := a.Check(ctx, &r); d.Kind != Allow {
			b.Fatalf("decision %v %s", d.Kind, d.Reason)
		}
		i++
	}
}

func BenchmarkExtractKey(b *testing.B) {
	r := &Request{APIKey: []string{"nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"}, Authorization: []string{"Bearer nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"}}
	src := []policy.Source{policy.SourceAPIKey, policy.SourceBearer}
	b.ReportAllocs()
	for b.Loop() {
		if k, _, _ := extractKey(src, r); k == "" {
			b.Fatal("no key")
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = keystore.HashKey("nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6")
	}
}

// BenchmarkCheckTraced is BenchmarkCheck with a tracer provider sampling
// 1 % of checks into a processor that drops them: the span's own cost.
func BenchmarkCheckTraced(b *testing.B) {
	a, raws := benchAuthorizer(b, 10000)
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.TraceIDRatioBased(0.01)))
	a.trace = &tracing{tracer: tp.Tracer("bench"), propagator: propagation.TraceContext{}}
	benchChecks(b, a, raws, false)
}

// BenchmarkCheckLimited is BenchmarkCheck with every key under the
// policy's default rate limit (high enough never to refuse): the cost of
// the buckets beside BenchmarkCheck.
func BenchmarkCheckLimited(b *testing.B) {
	a, raws := benchAuthorizer(b, 10000)
	p, err := policy.Load(filepath.Join("..", "examples", "policies", "nexgent.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	p.RateLimits.Default = &policy.RateLimit{Limit: keystore.MaxRateLimit, Duration: "1s"}
	data, _ := json.Marshal(p)
	if p, err = policy.Parse(data); err != nil {
		b.Fatal(err)
	}
	a.SetPolicy(p)
	benchChecks(b, a, raws, true)
}

// benchChecks runs allowed checks with raws' keys; limited says each must
// carry its key's limit.
func benchChecks(b *testing.B, a *Authorizer, raws []string, limited bool) {
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r := Request{Frontend: "envoy", Method: "POST", Path: "/api/v1/trading-signals?x=1", APIKey: []string{raws[i%len(raws)]}}
		if d := a.Check(ctx, &r); d.Kind != Allow || d.Limited() != limited {
			b.Fatalf("decision %v %s", d.Kind, d.Reason)
		}
		i++
	}
}

// mustMetrics returns check metrics registered nowhere.
func mustMetrics(tb testing.TB) *Metrics {
	m, err := NewMetrics(nil)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}
