package policy

import (
	"fmt"
	"strings"
	"testing"
)

// patternCases match one pattern against one normalised path; they also seed
// FuzzMatch. project names the capture whose value is wantProject.
var patternCases = []struct {
	name        string
	pattern     string
	project     string
	path        string
	want        bool
	wantProject string
}{
	{name: "root matches root", pattern: "/", path: "/", want: true},
	{name: "root does not match a segment", pattern: "/", path: "/a", want: false},
	{name: "literal", pattern: "/api/v1/agents", path: "/api/v1/agents", want: true},
	{name: "literal with trailing slash", pattern: "/api/v1/agents", path: "/api/v1/agents/", want: true},
	{name: "literal is case-sensitive", pattern: "/api/v1/agents", path: "/api/v1/Agents", want: false},
	{name: "literal longer path", pattern: "/api/v1/agents", path: "/api/v1/agents/x", want: false},
	{name: "literal shorter path", pattern: "/api/v1/agents", path: "/api/v1", want: false},
	{name: "literal prefix of segment", pattern: "/api/v1/agents", path: "/api/v1/agentsx", want: false},
	{name: "literal two trailing slashes", pattern: "/a", path: "/a//", want: false},
	{name: "rest matches bare prefix", pattern: "/api/v1/agents/**", path: "/api/v1/agents", want: true},
	{name: "rest matches prefix with slash", pattern: "/api/v1/agents/**", path: "/api/v1/agents/", want: true},
	{name: "rest matches deep path", pattern: "/api/v1/agents/**", path: "/api/v1/agents/x/y", want: true},
	{name: "rest does not match sibling", pattern: "/api/v1/agents/**", path: "/api/v1/agents-x", want: false},
	{name: "rest does not match parent", pattern: "/api/v1/agents/**", path: "/api/v1", want: false},
	{name: "rest alone matches root", pattern: "/**", path: "/", want: true},
	{name: "rest alone matches anything", pattern: "/**", path: "/a/b/c/", want: true},
	{name: "star matches one segment", pattern: "/a/*/c", path: "/a/b/c", want: true},
	{name: "star needs a segment", pattern: "/a/*", path: "/a/", want: false},
	{name: "star does not match two segments", pattern: "/a/*/c", path: "/a/b/x/c", want: false},
	{name: "star rejects empty segment", pattern: "/a/*/c", path: "/a//c", want: false},
	{name: "capture", pattern: "/p/{project}/x", project: "project", path: "/p/p1/x", want: true, wantProject: "p1"},
	{name: "capture with rest", pattern: "/api/v1/projects/{project}/**", project: "project", path: "/api/v1/projects/p1/repositories", want: true, wantProject: "p1"},
	{name: "capture with bare rest", pattern: "/api/v1/projects/{project}/**", project: "project", path: "/api/v1/projects/p1", want: true, wantProject: "p1"},
	{name: "capture needs a segment", pattern: "/api/v1/projects/{project}/**", project: "project", path: "/api/v1/projects", want: false},
	{name: "capture needs a non-empty segment", pattern: "/api/v1/projects/{project}/**", project: "project", path: "/api/v1/projects/", want: false},
	{name: "second capture is the project", pattern: "/o/{org}/p/{project}", project: "project", path: "/o/o1/p/p2", want: true, wantProject: "p2"},
	{name: "capture not named by project", pattern: "/o/{org}", path: "/o/o1", want: true},
	{name: "capture of decoded text", pattern: "/p/{project}", project: "project", path: "/p/a b?c", want: true, wantProject: "a b?c"},
	{name: "unnormalised relative path", pattern: "/**", path: "a", want: false},
	{name: "empty path", pattern: "/**", path: "", want: false},
}

// compileRoute compiles a route for tests, failing on any problem.
func compileRoute(tb testing.TB, r Route, scopes ...string) Route {
	tb.Helper()
	known := make(map[string]bool)
	for _, s := range scopes {
		known[s] = true
	}
	var ps problems
	r.compile("route", known, &ps)
	if len(ps) > 0 {
		tb.Fatalf("compile(%+v) problems: %q", r, ps)
	}
	return r
}

func TestPatternMatch(t *testing.T) {
	for _, tc := range patternCases {
		t.Run(tc.name, func(t *testing.T) {
			r := compileRoute(t, Route{Path: tc.pattern, Project: tc.project})
			got, project := r.pattern.match(tc.path, false)
			if got != tc.want || project != tc.wantProject {
				t.Errorf("%q matching %q = %v, %q; want %v, %q", tc.pattern, tc.path, got, project, tc.want, tc.wantProject)
			}
			if ref := refMatch(tc.pattern, tc.path); ref != got {
				t.Errorf("refMatch(%q, %q) = %v, disagrees with match", tc.pattern, tc.path, ref)
			}
		})
	}
}

// refMatch is a simple, allocating reference implementation of pattern
// matching that FuzzMatch checks the real one against.
func refMatch(pattern, path string) bool {
	if path == "" || path[0] != '/' {
		return false
	}
	var psegs, segs []string
	if pattern != "/" {
		psegs = strings.Split(pattern[1:], "/")
	}
	if rest := strings.TrimSuffix(path[1:], "/"); rest != "" {
		segs = strings.Split(rest, "/")
	}
	for i, ps := range psegs {
		if ps == "**" {
			return true
		}
		if i >= len(segs) || segs[i] == "" {
			return false
		}
		if ps != "*" && !strings.HasPrefix(ps, "{") && ps != segs[i] {
			return false
		}
	}
	return len(segs) == len(psegs)
}

// testPolicy exercises method handling and route order.
const testPolicy = `
keys:
  formats: [{prefix: k_, charset: hex, length: 8}]
scopes: [read, write, admin]
superScope: admin
routes:
  - {methods: [GET], path: /healthz, public: true}
  - {methods: [GET, HEAD], path: "/p/{project}/**", require: read, project: project}
  - {path: "/p/{project}/**", require: write, project: project}
  - {methods: [PURGE], path: /cache/*}
  - {path: /admin/**, require: admin}
`

func TestPolicyMatch(t *testing.T) {
	p, err := Parse([]byte(testPolicy))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	tests := []struct {
		name        string
		method      string
		path        string
		wantRoute   int // index in p.Routes, -1 for none
		wantProject string
	}{
		{"public route", "GET", "/healthz", 0, ""},
		{"public route trailing slash", "GET", "/healthz/", 0, ""},
		{"method not listed", "POST", "/healthz", -1, ""},
		{"lower-case method is another method", "get", "/healthz", -1, ""},
		{"mixed-case method is another method", "Get", "/healthz", -1, ""},
		{"HEAD is not GET", "HEAD", "/healthz", -1, ""},
		{"first match wins", "GET", "/p/p1/files", 1, "p1"},
		{"HEAD listed", "HEAD", "/p/p1", 1, "p1"},
		{"falls through to all methods", "DELETE", "/p/p1/files", 2, "p1"},
		{"extension method", "PURGE", "/cache/x", 3, ""},
		{"extension method lower-case", "purge", "/cache/x", -1, ""},
		{"extension method wrong path", "PURGE", "/cache/x/y", -1, ""},
		{"no methods means all", "OPTIONS", "/admin", 4, ""},
		{"unmatched", "GET", "/other", -1, ""},
		{"empty method", "", "/admin/x", 4, ""},
		{"no Unicode case mapping", "purgE\u0307", "/cache/x", -1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := p.Match(tc.method, tc.path)
			var want *Route
			if tc.wantRoute >= 0 {
				want = &p.Routes[tc.wantRoute]
			}
			if m.Route != want || m.Project != tc.wantProject {
				t.Errorf("Match(%q, %q) = %s, %q; want %s, %q",
					tc.method, tc.path, routeName(p, m.Route), m.Project, routeName(p, want), tc.wantProject)
			}
		})
	}
}

// routeName describes r for failure messages.
func routeName(p *Policy, r *Route) string {
	for i := range p.Routes {
		if &p.Routes[i] == r {
			return fmt.Sprintf("routes[%d] %s", i, r.Path)
		}
	}
	return "no route"
}

func TestPolicyMatchDoesNotAllocate(t *testing.T) {
	p, err := Parse([]byte(testPolicy))
	if err != nil {
		t.Fatalf("Parse() error = %v", err)
	}
	for _, path := range []string{"/healthz", "/p/p1/files/a/b", "/admin/x", "/nowhere/at/all"} {
		got := testing.AllocsPerRun(100, func() { p.Match("delete", path) })
		if got != 0 {
			t.Errorf("Match(delete, %q) allocations = %v, want 0", path, got)
		}
	}
}

func TestEqualFoldASCII(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"projects", "projects", true},
		{"PROJECTS", "projects", true},
		{"Projects", "pROJECTS", true},
		{"projects", "project", false},
		{"projec\u017f", "projects", false}, // the long s is not ASCII s
		{"\u212aey", "key", false},          // nor the Kelvin sign k
		{"a-b_c", "A-B_C", true},
		{"a-b", "a_b", false},
	}
	for _, tc := range tests {
		if got := equalFoldASCII(tc.a, tc.b); got != tc.want {
			t.Errorf("equalFoldASCII(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestPolicyMatchCase: a path that matches another route, or another
// isolation, once its ASCII case is folded is Ambiguous; a path whose case
// changes nothing is judged.
func TestPolicyMatchCase(t *testing.T) {
	p, err := Parse([]byte(testPolicy + "  - {path: /Mixed/Case, require: read}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		ambiguous    bool
	}{
		{"GET", "/HEALTHZ", true},     // public only when folded
		{"GET", "/P/p1/files", true},  // isolated only when folded
		{"GET", "/p/P1/files", false}, // a capture's case is the back end's business
		{"GET", "/admin/X", false},    // same route either way
		{"GET", "/ADMIN/x", true},     // unmatched, or admin when folded
		{"GET", "/mixed/case", true},  // literal with upper case: folded matches
		{"GET", "/Mixed/Case", false}, // exact
		{"GET", "/nowhere", false},    // unmatched either way
		{"DELETE", "/P/p1", true},     // isolated when folded, for every method
	} {
		m := p.Match(tc.method, tc.path)
		if m.Ambiguous != tc.ambiguous {
			t.Errorf("Match(%s, %s).Ambiguous = %v, want %v", tc.method, tc.path, m.Ambiguous, tc.ambiguous)
		}
	}
}

// TestIsolationCoversBroaderRoutes: a later route that also matches under a
// project route's prefix is isolated there too, so a catch-all cannot
// shadow the project check.
func TestIsolationCoversBroaderRoutes(t *testing.T) {
	p, err := Parse([]byte(`
keys:
  formats: [{prefix: k_, charset: hex, length: 8}]
scopes: [read, write]
routes:
  - {methods: [GET], path: "/p/{project}/**", require: read, project: project}
  - {path: "/**", require: write}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Isolations(); len(got) != 1 || got[0] != "/p/{project}/**" {
		t.Fatalf("Isolations() = %q", got)
	}
	for _, tc := range []struct {
		method, path string
		route        int
		isolated     bool
		project      string
	}{
		{"GET", "/p/a/x", 0, true, "a"},
		{"DELETE", "/p/b/x", 1, true, "b"},
		{"DELETE", "/p/b", 1, true, "b"},
		{"POST", "/p", 1, false, ""},
		{"POST", "/q/b/x", 1, false, ""},
	} {
		m := p.Match(tc.method, tc.path)
		if m.Route != &p.Routes[tc.route] || m.Isolated != tc.isolated || m.Project != tc.project {
			t.Errorf("Match(%s, %s) = %s isolated=%v project=%q; want routes[%d] %v %q", tc.method, tc.path, routeName(p, m.Route), m.Isolated, m.Project, tc.route, tc.isolated, tc.project)
		}
	}
}

// TestIsolationCannotBeOpened: a public route or unmatched: allow that could
// admit a request under a project-isolated prefix without a key is refused,
// as are two isolations that name the project in different places.
func TestIsolationCannotBeOpened(t *testing.T) {
	const head = `
keys:
  formats: [{prefix: k_, charset: hex, length: 8}]
scopes: [read]
routes:
  - {path: "/p/{project}/**", require: read, project: project}
`
	for _, tc := range []struct {
		name, tail, want string
	}{
		{"public catch-all", `  - {path: "/**", public: true}` + "\n", "routes[1].public: /** can match under /p/{project}/**"},
		{"public route under the prefix", `  - {path: "/p/*/badge", public: true}` + "\n", "routes[1].public: /p/*/badge can match under"},
		{"public route in another case", `  - {path: "/P/x", public: true}` + "\n", "routes[1].public: /P/x can match under"},
		{"unmatched allow", "unmatched: allow\n", "unmatched: allow would admit requests without a key under the project-isolated paths /p/{project}/**"},
		{"overlapping isolations", `  - {path: "/{org}/{project}/**", require: read, project: project}` + "\n", "routes[1].project: isolated paths /{org}/{project}/** overlap /p/{project}/**"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head + tc.tail))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse() error = %v; want one containing %q", err, tc.want)
			}
		})
	}
	// A public route beside the prefix is fine.
	if _, err := Parse([]byte(head + `  - {path: "/p", public: true}` + "\n" + `  - {path: "/q/**", public: true}` + "\n")); err != nil {
		t.Errorf("Parse() error = %v", err)
	}
}
