package policy

import (
	"strings"
	"testing"
)

// sink keeps benchmark results alive.
var sink any

func BenchmarkMatch(b *testing.B) {
	p := loadExample(b, "nexgraph.yaml")
	nexgent := loadExample(b, "nexgent.yaml")
	benchmarks := []struct {
		name   string
		p      *Policy
		method string
		path   string
	}{
		{"nexgraph/project capture", p, "GET", "/api/v1/projects/p1/repositories/r1"},
		{"nexgraph/write fallthrough", p, "DELETE", "/api/v1/projects/p1/files"},
		{"nexgraph/catch-all", p, "GET", "/api/v1/repositories"},
		{"nexgent/first route", nexgent, "GET", "/api/v1/trading-signals/s1"},
		{"nexgent/last route", nexgent, "GET", "/healthz"},
		{"nexgent/unmatched", nexgent, "DELETE", "/api/v1/agents/a1"},
		{"nexgent/lower-case method", nexgent, "get", "/healthz"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var m Match
			for b.Loop() {
				m = bm.p.Match(bm.method, bm.path)
			}
			sink = m
		})
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	benchmarks := []struct {
		name string
		raw  string
	}{
		{"fast/plain", "/api/v1/projects/p1/repositories"},
		{"fast/query", "/api/v1/agents?limit=50&cursor=abc"},
		{"slow/escapes", "/api/v1/projects/my%20project/files/caf%C3%A9"},
		{"slow/dot segments", "/api/v1/agents/../api-keys/./x"},
		{"slow/repeated slashes", "//api//v1///agents"},
		{"reject/encoded slash", "/api/v1/agents/..%2F..%2Fapi-keys"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var out string
			for b.Loop() {
				out, _ = NormalizePath(bm.raw)
			}
			sink = out
		})
	}
}

func BenchmarkFormatMatch(b *testing.B) {
	benchmarks := []struct {
		name   string
		format Format
		raw    string
	}{
		{"alphanumeric/valid", nexFormat, "nex_" + strings.Repeat("aZ09", 8)},
		{"alphanumeric/wrong length", nexFormat, "nex_" + strings.Repeat("a", 31)},
		{"hex/valid", nxgFormat, "nxg_" + strings.Repeat("0123456789abcdef", 4)},
		{"hex/upper-case", nxgFormat, "nxg_" + strings.Repeat("0123456789ABCDEF", 4)},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			ok := false
			for b.Loop() {
				ok = bm.format.Match(bm.raw)
			}
			sink = ok
		})
	}
}
