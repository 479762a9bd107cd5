package policy

import (
	"errors"
	"testing"
)

// normalizeCases are the NormalizePath cases; they also seed
// FuzzNormalizePath. wantErr cases expect ErrAmbiguousPath.
var normalizeCases = []struct {
	name    string
	raw     string
	want    string
	wantErr bool
}{
	// Unchanged paths (fast path).
	{name: "root", raw: "/", want: "/"},
	{name: "simple", raw: "/api/v1/agents", want: "/api/v1/agents"},
	{name: "trailing slash kept", raw: "/api/v1/agents/", want: "/api/v1/agents/"},
	{name: "dot-prefixed segment", raw: "/.well-known/jwks.json", want: "/.well-known/jwks.json"},
	{name: "dots inside segments", raw: "/a/..b/c../...", want: "/a/..b/c../..."},
	{name: "raw UTF-8", raw: "/café/ü", want: "/café/ü"},
	{name: "sub-delims", raw: "/a;b=c/d,e+f", want: "/a;b=c/d,e+f"},

	// Query and fragment.
	{name: "query dropped", raw: "/a/b?x=1", want: "/a/b"},
	{name: "query with path-like value", raw: "/a?next=/b/../c%2F", want: "/a"},
	{name: "empty query", raw: "/a/?", want: "/a/"},
	{name: "fragment dropped", raw: "/a#frag", want: "/a"},
	{name: "fragment before query", raw: "/a#x?y", want: "/a"},
	{name: "bad escape in query ignored", raw: "/a?%zz", want: "/a"},

	// Not an origin-form path.
	{name: "empty", raw: "", wantErr: true},
	{name: "query only", raw: "?x=1", wantErr: true},
	{name: "asterisk form", raw: "*", wantErr: true},
	{name: "absolute form", raw: "http://example.com/a", wantErr: true},
	{name: "relative", raw: "a/b", wantErr: true},

	// Slashes and dot segments.
	{name: "leading double slash", raw: "//a", want: "/a"},
	{name: "repeated slashes", raw: "/a///b//", want: "/a/b/"},
	{name: "only slashes", raw: "///", want: "/"},
	{name: "dot segment", raw: "/a/./b", want: "/a/b"},
	{name: "dot-dot segment", raw: "/a/b/../c", want: "/a/c"},
	{name: "rfc example", raw: "/a/b/c/./../../g", want: "/a/g"},
	{name: "dot-dot above root", raw: "/..", want: "/"},
	{name: "dot-dot twice above root", raw: "/a/../../b", want: "/b"},
	{name: "trailing dot", raw: "/a/.", want: "/a/"},
	{name: "trailing dot-dot", raw: "/a/b/..", want: "/a/"},
	{name: "dot-dot then double slash", raw: "/a/..//b", want: "/b"},

	// Percent-decoding.
	{name: "encoded letters", raw: "/%61%62/c", want: "/ab/c"},
	{name: "encoded space", raw: "/a%20b", want: "/a b"},
	{name: "encoded UTF-8", raw: "/caf%C3%A9/%e2%82%ac", want: "/café/€"},
	{name: "double-encoded slash decodes once", raw: "/a/%252F", want: "/a/%2F"},
	{name: "encoded percent", raw: "/100%25", want: "/100%"},
	{name: "encoded question mark", raw: "/a%3Fb", want: "/a?b"},
	{name: "encoded dot inside segment", raw: "/a%2eb", want: "/a.b"},
	{name: "encoded three dots", raw: "/a/..%2e", want: "/a/..."},
	{name: "dot-dot before encoded segment", raw: "/a/../%62", want: "/b"},

	// Ambiguous encodings.
	{name: "encoded slash", raw: "/a%2Fb", wantErr: true},
	{name: "encoded slash lower-case", raw: "/a%2fb", wantErr: true},
	{name: "encoded backslash", raw: "/a%5Cb", wantErr: true},
	{name: "encoded backslash lower-case", raw: "/a%5cb", wantErr: true},
	{name: "literal backslash", raw: `/a\b`, wantErr: true},
	{name: "encoded dot-dot", raw: "/a/%2e%2e/b", wantErr: true},
	{name: "encoded dot-dot upper-case", raw: "/a/%2E%2E", wantErr: true},
	{name: "encoded dot", raw: "/a/%2e/b", wantErr: true},
	{name: "half-encoded dot-dot", raw: "/a/.%2E/b", wantErr: true},
	{name: "half-encoded dot-dot first", raw: "/a/%2e./b", wantErr: true},
	{name: "dot-dot then encoded slash", raw: "/a/..%2Fb", wantErr: true},
	{name: "traversal to encoded slash", raw: "/..%2f..%2fetc", wantErr: true},
	{name: "invalid escape", raw: "/a%zz", wantErr: true},
	{name: "truncated escape", raw: "/a%4", wantErr: true},
	{name: "lone percent", raw: "/a%", wantErr: true},
	{name: "escape before query", raw: "/a%?x", wantErr: true},
	{name: "encoded NUL", raw: "/a%00b", wantErr: true},
	{name: "encoded newline", raw: "/a%0Ab", wantErr: true},
	{name: "encoded DEL", raw: "/a%7F", wantErr: true},
	{name: "literal NUL", raw: "/a\x00b", wantErr: true},
	{name: "literal tab", raw: "/a\tb", wantErr: true},
	{name: "literal control in slow path", raw: "//a\x01", wantErr: true},
	{name: "encoded invalid UTF-8", raw: "/%FF", wantErr: true},
	{name: "overlong encoded dot", raw: "/%C0%AE%C0%AE/etc", wantErr: true},
	{name: "raw invalid UTF-8", raw: "/a\xffb", wantErr: true},
	{name: "raw invalid UTF-8 removed by dot-dot", raw: "/\xff/../a", wantErr: true},
}

func TestNormalizePath(t *testing.T) {
	for _, tc := range normalizeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizePath(tc.raw)
			if tc.wantErr {
				if !errors.Is(err, ErrAmbiguousPath) {
					t.Errorf("NormalizePath(%q) = %q, %v; want ErrAmbiguousPath", tc.raw, got, err)
				}
				if got != "" {
					t.Errorf("NormalizePath(%q) path = %q, want empty on error", tc.raw, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("NormalizePath(%q) = %q, %v; want %q, nil", tc.raw, got, err, tc.want)
			}
		})
	}
}

func TestNormalizePathDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name string
		raw  string
	}{
		{"plain", "/api/v1/agents/a1"},
		{"query", "/api/v1/agents?limit=10&cursor=%2F"},
		{"trailing slash", "/api/v1/agents/"},
		{"dot-prefixed", "/.well-known/x"},
		{"rejected encoded slash", "/a%2Fb"},
		{"rejected control", "/a\x00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := testing.AllocsPerRun(100, func() { _, _ = NormalizePath(tc.raw) })
			if got != 0 {
				t.Errorf("NormalizePath(%q) allocations = %v, want 0", tc.raw, got)
			}
		})
	}
}
