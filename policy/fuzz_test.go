package policy

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// escapeMeta re-encodes the characters a normalised path may hold but a
// request target cannot carry literally in its path: '%', '?' and '#'.
func escapeMeta(s string) string {
	return strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(s)
}

func FuzzNormalizePath(f *testing.F) {
	for _, tc := range normalizeCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := NormalizePath(raw)
		if err != nil {
			if !errors.Is(err, ErrAmbiguousPath) {
				t.Fatalf("NormalizePath(%q) error = %v, want ErrAmbiguousPath", raw, err)
			}
			if out != "" {
				t.Fatalf("NormalizePath(%q) = %q with an error, want empty", raw, out)
			}
			return
		}
		if !strings.HasPrefix(out, "/") {
			t.Fatalf("NormalizePath(%q) = %q, does not start with /", raw, out)
		}
		if strings.Contains(out, "//") {
			t.Fatalf("NormalizePath(%q) = %q, contains //", raw, out)
		}
		for _, seg := range strings.Split(out, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q, contains a dot segment", raw, out)
			}
		}
		if strings.ContainsAny(out, "\\\x00\x7f") {
			t.Fatalf("NormalizePath(%q) = %q, contains a backslash or control byte", raw, out)
		}
		// The output is decoded: it is a fixed point once the characters a
		// path cannot carry literally are escaped again.
		again, err := NormalizePath(escapeMeta(out))
		if err != nil || again != out {
			t.Fatalf("NormalizePath(escape(%q)) = %q, %v; want %q, nil", out, again, err, out)
		}
		if !strings.ContainsAny(out, "%?#") {
			if again, err := NormalizePath(out); err != nil || again != out {
				t.Fatalf("NormalizePath(%q) = %q, %v; want it unchanged", out, again, err)
			}
		}
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimalPolicy))
	f.Add([]byte(testPolicy))
	for _, tc := range problemCases {
		f.Add([]byte(tc.yaml))
	}
	for _, tc := range decodeCases {
		f.Add([]byte(tc.yaml))
	}
	for _, name := range []string{"nexgent.yaml", "nexgraph.yaml"} {
		data, err := os.ReadFile(filepath.Join(examplesDir, name))
		if err != nil {
			f.Fatalf("read example: %v", err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<14 {
			t.Skip("input too large")
		}
		p, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("Parse() error = %v, want a *ValidationError with problems", err)
			}
			if p != nil {
				t.Fatalf("Parse() returned a policy with error %v", err)
			}
			return
		}
		if len(p.Keys.Formats) == 0 || p.MintFormat() != p.Keys.Formats[0] {
			t.Fatalf("MintFormat() = %+v, formats %+v", p.MintFormat(), p.Keys.Formats)
		}
		if p.Realm == "" || len(p.Keys.Sources) == 0 || p.Unmatched == "" {
			t.Fatalf("defaults not applied: %+v", p)
		}
		for i := range p.Routes {
			if !p.Routes[i].pattern.compiled {
				t.Fatalf("routes[%d] not compiled", i)
			}
		}
		m := p.Match("GET", "/")
		if m.Route != nil && m.Route.Project != "" && m.Project == "" {
			t.Fatalf("Match() = %+v, project capture empty", m)
		}
	})
}

// firstCapture returns the name of the first {name} segment of pattern.
func firstCapture(pattern string) string {
	for _, seg := range strings.Split(pattern, "/") {
		if len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}' {
			return seg[1 : len(seg)-1]
		}
	}
	return ""
}

func FuzzMatch(f *testing.F) {
	for _, tc := range patternCases {
		f.Add("GET", tc.pattern, tc.path)
	}
	f.Add("get", "/a/{id}/**", "/a/b/c")
	f.Add("POST", "/**", "/")
	f.Fuzz(func(t *testing.T, method, pattern, path string) {
		r := Route{Methods: []string{"GET"}, Path: pattern, Project: firstCapture(pattern)}
		var ps problems
		r.compile("route", nil, &ps)
		if len(ps) > 0 {
			return
		}
		got, project := r.pattern.match(path, false)
		if want := refMatch(pattern, path); got != want {
			t.Fatalf("%q matching %q = %v, reference says %v", pattern, path, got, want)
		}
		if got && r.Project != "" {
			if project == "" || strings.Contains(project, "/") || !strings.Contains(path, project) {
				t.Fatalf("%q matching %q captured project %q", pattern, path, project)
			}
		}
		p := &Policy{Routes: []Route{r}}
		p.compileIsolations(&ps)
		m := p.Match(method, path)
		if m.Ambiguous {
			if !hasUpperASCII(path) && !hasUpperASCII(pattern) {
				t.Fatalf("Match(%q, %q) ambiguous without upper case", method, path)
			}
			return
		}
		wantRoute := got && method == "GET"
		if (m.Route != nil) != wantRoute {
			t.Fatalf("Match(%q, %q) route = %v, want matched %v", method, path, m.Route, wantRoute)
		}
		if m.Route != nil && r.Project != "" && (!m.Isolated || m.Project != project) {
			t.Fatalf("Match(%q, %q) project = %q (isolated %v), want %q", method, path, m.Project, m.Isolated, project)
		}
	})
}

// FuzzParamNameReadings: a name that Go's query decoding, once or twice,
// reads as a method-override parameter in any case is spelt as one.
func FuzzParamNameReadings(f *testing.F) {
	for _, s := range []string{"_method", "%5Fmethod", "%255fMETHOD", "+_method", ".method", "_method[]", "x-http-method", "a%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, _ := ParamNameReadings(name)
		once, err := url.QueryUnescape(name)
		if err != nil {
			return
		}
		for _, d := range []string{once, unescapeOrEmpty(once)} {
			if w := strings.ToLower(d); w == "_method" || w == "x-http-method-override" {
				if want := strings.ReplaceAll(w, "-", "_"); got != want {
					t.Fatalf("ParamNameReadings(%q) = %q; Go decodes it to %q", name, got, d)
				}
			}
		}
	})
}

func unescapeOrEmpty(s string) string {
	d, err := url.QueryUnescape(s)
	if err != nil {
		return ""
	}
	return d
}
