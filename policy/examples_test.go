package policy

import (
	"path/filepath"
	"strings"
	"testing"
)

// examplesDir holds the example policies shipped with the repository.
const examplesDir = "../examples/policies"

func loadExample(tb testing.TB, name string) *Policy {
	tb.Helper()
	p, err := Load(filepath.Join(examplesDir, name))
	if err != nil {
		tb.Fatalf("Load(%s) error = %v", name, err)
	}
	return p
}

// exampleRequest is a request and how an example policy must route it.
type exampleRequest struct {
	name        string
	method      string
	target      string // raw request target, normalised before matching
	wantPath    string // Route.Path; "" for unmatched
	wantRequire string
	wantPublic  bool
	wantProject string
	// wantAmbiguous: the request is refused as ambiguous, by NormalizePath
	// or by Match.
	wantAmbiguous bool
}

func checkExampleRequests(t *testing.T, p *Policy, tests []exampleRequest) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path, err := NormalizePath(tc.target)
			var m Match
			if err == nil {
				m = p.Match(tc.method, path)
			}
			if tc.wantAmbiguous {
				if err == nil && !m.Ambiguous {
					t.Errorf("%s %s judged (route %s); want ambiguous", tc.method, tc.target, routeName(p, m.Route))
				}
				return
			}
			if err != nil {
				t.Fatalf("NormalizePath(%q) error = %v", tc.target, err)
			}
			if m.Ambiguous {
				t.Fatalf("Match(%s %s) ambiguous", tc.method, path)
			}
			if tc.wantPath == "" {
				if m.Route != nil {
					t.Errorf("Match(%s %s) = route %q, want unmatched", tc.method, path, m.Route.Path)
				}
				return
			}
			if m.Route == nil {
				t.Fatalf("Match(%s %s) = unmatched, want route %q", tc.method, path, tc.wantPath)
			}
			if m.Route.Path != tc.wantPath || m.Route.Require != tc.wantRequire || m.Route.Public != tc.wantPublic || m.Project != tc.wantProject {
				t.Errorf("Match(%s %s) = {path %q, require %q, public %v, project %q}; want {path %q, require %q, public %v, project %q}",
					tc.method, path, m.Route.Path, m.Route.Require, m.Route.Public, m.Project,
					tc.wantPath, tc.wantRequire, tc.wantPublic, tc.wantProject)
			}
		})
	}
}

func TestExampleNexgent(t *testing.T) {
	p := loadExample(t, "nexgent.yaml")

	if got, want := p.MintFormat(), (Format{Prefix: "nex_", Charset: CharsetAlphanumeric, Length: 32}); got != want {
		t.Errorf("MintFormat() = %+v, want %+v", got, want)
	}
	if got, want := p.Keys.Sources, []Source{SourceAPIKey, SourceBearer}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Keys.Sources = %q, want %q", got, want)
	}
	if !p.Strip() || p.SuperScope != "full_access" || p.Unmatched != UnmatchedRequireSuper || p.Realm != "api" {
		t.Errorf("Strip, SuperScope, Unmatched, Realm = %v, %q, %q, %q; want true, full_access, require-super, api",
			p.Strip(), p.SuperScope, p.Unmatched, p.Realm)
	}
	wantMessages := Messages{
		MissingKey:   "API key required",
		InvalidKey:   "Invalid API key",
		MissingScope: "API key missing required scope: {scope}",
		WrongProject: "Forbidden: API key does not belong to this project",
		RateLimited:  "Rate limit exceeded",
	}
	if p.Messages != wantMessages {
		t.Errorf("Messages = %+v, want %+v", p.Messages, wantMessages)
	}
	if !p.ValidKey("nex_" + strings.Repeat("Ab1", 10) + "xY") {
		t.Errorf("ValidKey rejects a nex_ key")
	}
	if !p.Grants([]string{"full_access"}, "history") {
		t.Errorf("Grants(full_access, history) = false, want true")
	}

	const (
		signals = "/api/v1/trading-signals/**"
		agents  = "/api/v1/agents/**"
		keys    = "/api/v1/api-keys/**"
	)
	checkExampleRequests(t, p, []exampleRequest{
		{name: "list agents", method: "GET", target: "/api/v1/agents", wantPath: agents, wantRequire: "agents"},
		{name: "one agent", method: "GET", target: "/api/v1/agents/a1?include=x", wantPath: agents, wantRequire: "agents"},
		{name: "delete agent is unmatched", method: "DELETE", target: "/api/v1/agents", wantPath: ""},
		{name: "read signals", method: "GET", target: "/api/v1/trading-signals", wantPath: signals, wantRequire: "signals"},
		{name: "post signal", method: "POST", target: "/api/v1/trading-signals", wantPath: signals, wantRequire: "signals"},
		{name: "positions", method: "GET", target: "/api/v1/agent-positions/a1", wantPath: "/api/v1/agent-positions/**", wantRequire: "positions"},
		{name: "balances", method: "GET", target: "/api/v1/agent-balances", wantPath: "/api/v1/agent-balances/**", wantRequire: "balances"},
		{name: "transactions", method: "GET", target: "/api/v1/agent-transactions/t1", wantPath: "/api/v1/agent-transactions/**", wantRequire: "transactions"},
		{name: "history", method: "GET", target: "/api/v1/agent-historical-swaps", wantPath: "/api/v1/agent-historical-swaps/**", wantRequire: "history"},
		{name: "key management any method", method: "DELETE", target: "/api/v1/api-keys/k1", wantPath: keys, wantPublic: true},
		{name: "key management list", method: "GET", target: "/api/v1/api-keys", wantPath: keys, wantPublic: true},
		{name: "health", method: "GET", target: "/healthz", wantPath: "/healthz", wantPublic: true},
		{name: "health POST is unmatched", method: "POST", target: "/healthz", wantPath: ""},
		{name: "traversal into key management", method: "GET", target: "/api/v1/agents/../api-keys/x", wantAmbiguous: true},
		{name: "servlet traversal out of a scope", method: "GET", target: "/api/v1/trading-signals/..;/agents", wantAmbiguous: true},
		{name: "servlet traversal into key management", method: "GET", target: "/api/v1/api-keys/..;/agents", wantAmbiguous: true},
		{name: "encoded servlet traversal", method: "GET", target: "/api/v1/trading-signals/..%3b/admin/users", wantAmbiguous: true},
		{name: "double-encoded traversal", method: "GET", target: "/api/v1/trading-signals/%252e%252e/agents", wantAmbiguous: true},
		{name: "full-width traversal", method: "GET", target: "/api/v1/trading-signals/\uff0e\uff0e/agents", wantAmbiguous: true},
		{name: "public route in upper case", method: "GET", target: "/HEALTHZ", wantAmbiguous: true},
		{name: "key management in upper case", method: "POST", target: "/API/v1/api-keys", wantAmbiguous: true},
		{name: "scope route in upper case", method: "GET", target: "/api/v1/AGENTS", wantAmbiguous: true},
		{name: "lower-case method", method: "get", target: "/api/v1/agents", wantPath: ""},
		{name: "upper case in an id", method: "GET", target: "/api/v1/agents/AB12", wantPath: "/api/v1/agents/**", wantRequire: "agents"},
		{name: "unknown endpoint", method: "GET", target: "/api/v1/users", wantPath: ""},
	})
}

func TestExampleNexgraph(t *testing.T) {
	p := loadExample(t, "nexgraph.yaml")

	if got, want := p.MintFormat(), (Format{Prefix: "nxg_", Charset: CharsetHex, Length: 64}); got != want {
		t.Errorf("MintFormat() = %+v, want %+v", got, want)
	}
	if got := p.Keys.Sources; len(got) != 1 || got[0] != SourceBearer {
		t.Errorf("Keys.Sources = %q, want [bearer]", got)
	}
	if p.SuperScope != "" || p.Unmatched != UnmatchedDeny {
		t.Errorf("SuperScope, Unmatched = %q, %q; want \"\", deny", p.SuperScope, p.Unmatched)
	}
	wantMessages := Messages{
		MissingKey:   "Invalid or expired API key",
		InvalidKey:   "Invalid or expired API key",
		MissingScope: "Insufficient permissions: requires {scope}",
		WrongProject: "Forbidden: API key does not belong to this project",
		RateLimited:  "Rate limit exceeded",
	}
	if p.Messages != wantMessages {
		t.Errorf("Messages = %+v, want %+v", p.Messages, wantMessages)
	}
	if got, want := p.Messages.MissingScopeFor("write"), "Insufficient permissions: requires write"; got != want {
		t.Errorf("MissingScopeFor(write) = %q, want %q", got, want)
	}
	if p.ValidKey("nxg_" + strings.Repeat("AB", 32)) {
		t.Errorf("ValidKey accepts upper-case hex")
	}

	const (
		project = "/api/v1/projects/{project}/**"
		rest    = "/**"
	)
	checkExampleRequests(t, p, []exampleRequest{
		{name: "list repositories", method: "GET", target: "/api/v1/projects/p1/repositories", wantPath: project, wantRequire: "read", wantProject: "p1"},
		{name: "head project", method: "HEAD", target: "/api/v1/projects/p1", wantPath: project, wantRequire: "read", wantProject: "p1"},
		{name: "create project key", method: "POST", target: "/api/v1/projects/p1/api-keys", wantPath: project, wantRequire: "write", wantProject: "p1"},
		{name: "delete project", method: "DELETE", target: "/api/v1/projects/p2", wantPath: project, wantRequire: "write", wantProject: "p2"},
		{name: "create project is public", method: "POST", target: "/api/v1/projects", wantPath: "/api/v1/projects", wantPublic: true},
		{name: "list projects", method: "GET", target: "/api/v1/projects", wantPath: rest, wantRequire: "read"},
		{name: "repositories", method: "GET", target: "/api/v1/repositories", wantPath: rest, wantRequire: "read"},
		{name: "write elsewhere", method: "PUT", target: "/api/v1/repositories/r1", wantPath: rest, wantRequire: "write"},
		{name: "root", method: "GET", target: "/", wantPath: rest, wantRequire: "read"},
		{name: "traversal out of project", method: "GET", target: "/api/v1/projects/p1/../p2/x", wantAmbiguous: true},
		{name: "collection in upper case", method: "GET", target: "/api/v1/PROJECTS/p2/graph", wantAmbiguous: true},
		{name: "collection in mixed case", method: "DELETE", target: "/api/v1/Projects/p2/graph", wantAmbiguous: true},
		{name: "parameter after the collection", method: "GET", target: "/api/v1/projects;/p2/graph", wantAmbiguous: true},
		{name: "parameter before the collection", method: "GET", target: "/api/v1;x/projects/p2/graph", wantAmbiguous: true},
		{name: "encoded parameter", method: "GET", target: "/api/v1/projects%3b/p2/graph", wantAmbiguous: true},
		{name: "double-encoded collection", method: "GET", target: "/api/v1/%2570rojects/p2/graph", wantAmbiguous: true},
		{name: "project creation with a trailing slash", method: "POST", target: "/api/v1/projects/", wantPath: "/api/v1/projects", wantPublic: true},
		{name: "project creation with an empty segment", method: "POST", target: "/api/v1/projects//", wantAmbiguous: true},
		{name: "project creation through a dot-dot", method: "POST", target: "/api/v1/projects/x/..", wantAmbiguous: true},
		{name: "encoded project name", method: "GET", target: "/api/v1/projects/my%20proj/files", wantPath: project, wantRequire: "read", wantProject: "my proj"},
	})
}
