package manifests

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/extauthz/extauthz/policy"
)

// publicRequests are the requests the shipped policies admit without a key, in their canonical
// spelling. Each proxy must send every spelling of one of them that the policy also judges public
// to the same place: a trailing slash that the policy tolerates but a proxy routes to the
// application would open the application's own endpoint without a key.
var publicRequests = []struct {
	policyFile, method, path string
}{
	{"../examples/policies/nexgent.yaml", "GET", "/healthz"},
	{"../examples/policies/nexgent.yaml", "POST", "/api/v1/api-keys"},
	{"../examples/policies/nexgent.yaml", "DELETE", "/api/v1/api-keys/k1"},
	{"../examples/policies/nexgraph.yaml", "POST", "/api/v1/projects"},
}

// spellingsOf returns variants of a canonical path: trailing and doubled slashes, dot
// segments, case, ';' parameters. The policy refuses most of them as ambiguous; those it
// admits are what the proxies must agree on.
func spellingsOf(p string) []string {
	return []string{p, p + "/", p + "//", p + "/.", p + "/x/..", strings.ToUpper(p), p + ";x", p + "/;"}
}

// publicSpellings yields each public request's spellings that its policy judges public.
func publicSpellings(t *testing.T, yield func(method, canonical, spelling string)) {
	t.Helper()
	for _, pr := range publicRequests {
		pol, err := policy.Load(pr.policyFile)
		if err != nil {
			t.Fatal(err)
		}
		isPublic := func(raw string) bool {
			path, err := policy.NormalizePath(raw)
			if err != nil {
				return false
			}
			m := pol.Match(pr.method, path)
			return !m.Ambiguous && m.Route != nil && m.Route.Public
		}
		if !isPublic(pr.path) {
			t.Fatalf("%s: %s %s is not public", pr.policyFile, pr.method, pr.path)
		}
		for _, s := range spellingsOf(pr.path) {
			if isPublic(s) {
				yield(pr.method, pr.path, s)
			}
		}
	}
}

// envoyRoute returns the cluster of the first route of vh that matches, as Envoy's router would
// for the matchers the configs use (path, prefix, path_separated_prefix, safe_regex, and
// exact :method header matchers).
func envoyRoute(t *testing.T, vh *routev3.VirtualHost, method, path string) string {
	t.Helper()
	for _, r := range vh.GetRoutes() {
		m := r.GetMatch()
		ok := false
		switch {
		case m.GetPath() != "":
			ok = path == m.GetPath()
		case m.GetPathSeparatedPrefix() != "":
			pre := m.GetPathSeparatedPrefix()
			ok = path == pre || strings.HasPrefix(path, pre+"/")
		case m.GetSafeRegex() != nil:
			ok = regexp.MustCompile("^(?:" + m.GetSafeRegex().GetRegex() + ")$").MatchString(path)
		case m.GetPathSpecifier() != nil:
			if _, isPrefix := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); isPrefix {
				ok = strings.HasPrefix(path, m.GetPrefix())
			} else {
				t.Fatalf("route %s: path matcher %T is not modelled", r.GetName(), m.GetPathSpecifier())
			}
		}
		for _, h := range m.GetHeaders() {
			if h.GetName() != ":method" || h.GetStringMatch().GetExact() == "" {
				t.Fatalf("route %s: header matcher %v is not modelled", r.GetName(), h)
			}
			ok = ok && method == h.GetStringMatch().GetExact()
		}
		if ok {
			return r.GetRoute().GetCluster()
		}
	}
	return ""
}

func TestEnvoyRoutesPublicSpellingsAlike(t *testing.T) {
	for _, file := range []string{rootEnvoyYAML, httpEnvoyYAML} {
		b, err := loadBootstrap(loadFile(t, file))
		if err != nil {
			t.Fatal(err)
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		vh := hcm.GetRouteConfig().GetVirtualHosts()[0]
		publicSpellings(t, func(method, canonical, spelling string) {
			want, got := envoyRoute(t, vh, method, canonical), envoyRoute(t, vh, method, spelling)
			if got != want {
				t.Errorf("%s: %s %s goes to cluster %q, but %s %s to %q; the policy judges both public", file, method, spelling, got, method, canonical, want)
			}
		})
	}
}

// traefikMatches evaluates the rule forms the Traefik configs use: matchers Path, PathPrefix,
// PathRegexp and Method joined by && and || (&& binding tighter), without parentheses.
func traefikMatches(t *testing.T, rule, method, path string) bool {
	t.Helper()
	matcher := regexp.MustCompile("^(Path|PathPrefix|PathRegexp|Method)\\(`([^`]*)`\\)$")
	for alt := range strings.SplitSeq(rule, "||") {
		all := true
		for term := range strings.SplitSeq(alt, "&&") {
			m := matcher.FindStringSubmatch(strings.TrimSpace(term))
			if m == nil {
				t.Fatalf("rule %q: term %q is not modelled", rule, term)
			}
			switch arg := m[2]; m[1] {
			case "Path":
				all = all && path == arg
			case "PathPrefix":
				all = all && strings.HasPrefix(path, arg)
			case "PathRegexp":
				all = all && regexp.MustCompile(arg).MatchString(path)
			case "Method":
				all = all && method == arg
			}
		}
		if all {
			return true
		}
	}
	return false
}

// traefikRule is a router: its name, rule and priority.
type traefikRule struct {
	name, rule string
	priority   int
}

// traefikRoute returns the router Traefik picks: the highest priority among those that match
// (the configs set priorities explicitly, so rule-length ties do not arise).
func traefikRoute(t *testing.T, rules []traefikRule, method, path string) string {
	t.Helper()
	sorted := slices.Clone(rules)
	slices.SortStableFunc(sorted, func(a, b traefikRule) int { return b.priority - a.priority })
	for _, r := range sorted {
		if traefikMatches(t, r.rule, method, path) {
			return r.name
		}
	}
	return ""
}

func TestTraefikRoutesPublicSpellingsAlike(t *testing.T) {
	var ingress []traefikRule
	ir := rendered(t, "traefik").get("IngressRoute", "extauthz", "api").Obj.(*ingressRoute)
	for i, r := range ir.Spec.Routes {
		ingress = append(ingress, traefikRule{fmt.Sprintf("route %d", i), r.Match, r.Priority})
	}
	cfg, err := loadTraefikFile(loadFile(t, traefikFileYAML))
	if err != nil {
		t.Fatal(err)
	}
	var file []traefikRule
	for name, r := range cfg.HTTP.Routers {
		file = append(file, traefikRule{name, r.Rule, r.Priority})
	}
	for where, rules := range map[string][]traefikRule{"IngressRoute api": ingress, traefikFileYAML: file} {
		publicSpellings(t, func(method, canonical, spelling string) {
			want, got := traefikRoute(t, rules, method, canonical), traefikRoute(t, rules, method, spelling)
			if got != want {
				t.Errorf("%s: %s %s goes to %q, but %s %s to %q; the policy judges both public", where, method, spelling, got, method, canonical, want)
			}
		})
	}
}

// TestRouteSpellingsCanFail: the model above sees the gap the exact Envoy match for project
// creation used to leave.
func TestRouteSpellingsCanFail(t *testing.T) {
	vh := &routev3.VirtualHost{Routes: []*routev3.Route{
		{Name: "admin", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/api/v1/projects"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "admin"}}}},
		{Name: "app", Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "app"}}}},
	}}
	if a, b := envoyRoute(t, vh, "POST", "/api/v1/projects"), envoyRoute(t, vh, "POST", "/api/v1/projects/"); a == b {
		t.Fatalf("an exact path match sends the trailing slash to the same route %q", a)
	}
	rules := []traefikRule{{"admin", "Method(`POST`) && PathRegexp(`^/api/v1/projects$`)", 100}, {"app", "PathPrefix(`/`)", 1}}
	if a, b := traefikRoute(t, rules, "POST", "/api/v1/projects"), traefikRoute(t, rules, "POST", "/api/v1/projects/"); a == b {
		t.Fatalf("an anchored regex without the slash sends the trailing slash to the same router %q", a)
	}
}
