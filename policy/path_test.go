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
	{name: "dots inside segments", raw: "/a/..b/c.d/.e", want: "/a/..b/c.d/.e"},
	{name: "raw UTF-8", raw: "/café/ü", want: "/café/ü"},
	{name: "raw CJK", raw: "/文档/项目", want: "/文档/项目"},
	{name: "sub-delims", raw: "/a,b=c/d+e!f", want: "/a,b=c/d+e!f"},
	{name: "upper case kept", raw: "/API/V1", want: "/API/V1"},

	// Query.
	{name: "query dropped", raw: "/a/b?x=1", want: "/a/b"},
	{name: "query with path-like value", raw: "/a?next=/b/../c%2F;x", want: "/a"},
	{name: "empty query", raw: "/a/?", want: "/a/"},
	{name: "bad escape in query ignored", raw: "/a?%zz", want: "/a"},
	{name: "fragment inside the query", raw: "/a?x#y", want: "/a"},

	// Not an origin-form path.
	{name: "empty", raw: "", wantErr: true},
	{name: "query only", raw: "?x=1", wantErr: true},
	{name: "asterisk form", raw: "*", wantErr: true},
	{name: "absolute form", raw: "http://example.com/a", wantErr: true},
	{name: "relative", raw: "a/b", wantErr: true},
	{name: "fragment", raw: "/a#frag", wantErr: true},
	{name: "fragment before query", raw: "/a#x?y", wantErr: true},

	// Slashes and dot segments: upstreams that do not normalise (Express,
	// a Go mux's redirect, nginx passing $request_uri) read them
	// literally, so they are never resolved here.
	{name: "leading double slash", raw: "//a", wantErr: true},
	{name: "repeated slashes", raw: "/a///b//", wantErr: true},
	{name: "only slashes", raw: "///", wantErr: true},
	{name: "trailing double slash", raw: "/a//", wantErr: true},
	{name: "dot segment", raw: "/a/./b", wantErr: true},
	{name: "dot-dot segment", raw: "/a/b/../c", wantErr: true},
	{name: "dot-dot above root", raw: "/..", wantErr: true},
	{name: "trailing dot", raw: "/a/.", wantErr: true},
	{name: "trailing dot-dot", raw: "/a/b/..", wantErr: true},
	{name: "three dots", raw: "/a/...", wantErr: true},
	{name: "dot-dot before encoded segment", raw: "/a/../%62", wantErr: true},

	// Windows-style servers (IIS static files, old System.Uri) trim a
	// segment's trailing dots and spaces.
	{name: "trailing dot", raw: "/api/v1/projects./b/graph", wantErr: true},
	{name: "encoded trailing space", raw: "/api/v1/projects%20/b/graph", wantErr: true},
	{name: "encoded trailing dot at the end", raw: "/api/v1/agents%2e", wantErr: true},
	{name: "dot inside a segment", raw: "/files/a.b/c", want: "/files/a.b/c"},
	{name: "encoded space inside a segment", raw: "/a%20b/c", want: "/a b/c"},

	// Percent-decoding.
	{name: "encoded letters", raw: "/%61%62/c", want: "/ab/c"},
	{name: "encoded space", raw: "/a%20b", want: "/a b"},
	{name: "encoded UTF-8", raw: "/caf%C3%A9/%e2%82%ac", want: "/café/€"},
	{name: "encoded percent at the end", raw: "/100%25", want: "/100%"},
	{name: "encoded percent before non-hex", raw: "/100%25off", want: "/100%off"},
	{name: "encoded question mark", raw: "/a%3Fb", want: "/a?b"},
	{name: "encoded dot inside segment", raw: "/a%2eb", want: "/a.b"},

	// ';' path parameters (servlet containers drop them, and resolve
	// "..;"), raw or encoded.
	{name: "path parameter", raw: "/api/v1/agents;jsessionid=1", wantErr: true},
	{name: "parameter in a middle segment", raw: "/api/v1;x/projects/b", wantErr: true},
	{name: "empty parameter", raw: "/api/v1/projects;/b/graph", wantErr: true},
	{name: "dot-dot parameter", raw: "/api/v1/trading-signals/..;/agents", wantErr: true},
	{name: "encoded semicolon", raw: "/api/v1/projects%3b/b/graph", wantErr: true},
	{name: "encoded semicolon upper-case", raw: "/a/..%3B/b", wantErr: true},

	// A second decoding would read another path.
	{name: "double-encoded slash", raw: "/a/%252F", wantErr: true},
	{name: "double-encoded dot-dot", raw: "/a/%252e%252e/b", wantErr: true},
	{name: "double-encoded backslash", raw: "/a%255cb", wantErr: true},
	{name: "double-encoded semicolon", raw: "/a%253b/b", wantErr: true},
	{name: "double-encoded letter", raw: "/api/v1/%2570rojects/b", wantErr: true},
	{name: "double encoding spelt with escapes", raw: "/a/%25%32%65", wantErr: true},
	{name: "double-encoded UTF-16 dot-dot", raw: "/a/%25u002e%25u002e/b", wantErr: true},
	{name: "double-encoded UTF-16 letter", raw: "/api/v1/%25u0070rojects/b", wantErr: true},
	{name: "double-encoded UTF-16 upper-case U", raw: "/a/%25U002E%25U002E/b", wantErr: true},
	{name: "double-encoded UTF-16 spelt with escapes", raw: "/a/%25%75%30%30%32%65", wantErr: true},
	{name: "percent u without four hex digits", raw: "/100%25u0ff/%25use", want: "/100%u0ff/%use"},
	{name: "percent u broken by a slash", raw: "/a%25u00/2e", want: "/a%u00/2e"},

	// Unicode that some back end folds into ASCII.
	{name: "full-width dots", raw: "/a/\uff0e\uff0e/b", wantErr: true},
	{name: "encoded full-width dots", raw: "/a/%EF%BC%8E%EF%BC%8E/b", wantErr: true},
	{name: "full-width solidus", raw: "/a\uff0fb", wantErr: true},
	{name: "full-width reverse solidus", raw: "/a\uff3cb", wantErr: true},
	{name: "one dot leader", raw: "/a/\u2024\u2024/b", wantErr: true},
	{name: "division slash", raw: "/a\u2215b", wantErr: true},
	{name: "full-width letters", raw: "/api/v1/\uff50rojects", wantErr: true},
	{name: "ligature", raw: "/pro\ufb01le", wantErr: true},
	{name: "Kelvin sign", raw: "/\u212aeys", wantErr: true},
	{name: "long s", raw: "/project\u017f", wantErr: true},
	{name: "dotless i", raw: "/\u0131d", wantErr: true},
	{name: "Greek question mark", raw: "/a\u037eb", wantErr: true},

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
