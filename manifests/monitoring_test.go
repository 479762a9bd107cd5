package manifests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"

	"github.com/extauthz/extauthz/internal/childproc"
)

const (
	rulesFile     = "../charts/extauthz/files/prometheus-rules.yaml"
	dashboardFile = "../charts/extauthz/files/grafana-dashboard.json"
)

// pendingMetrics are named by the dashboard or the alerts before the binary exports them: the
// panels and the alert evaluate to nothing until then. Remove a name here when its feature lands.
var pendingMetrics = map[string]string{
	"extauthz_tls_certificate_expiry_timestamp_seconds": "TLS listeners",
	"extauthz_raft_leader":                              "HA admin (raft)",
	"extauthz_raft_term":                                "HA admin (raft)",
	"extauthz_raft_applied_index":                       "HA admin (raft)",
}

var promParser = parser.NewParser(parser.Options{})

func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, promParser, nil)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", rulesFile, errs)
	}
	return groups
}

// grafanaVars replaces the dashboard's variables with values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$namespace", "extauthz")

// dashboardExprs returns every query of the dashboard: panel targets, and the metric selectors
// of label_values() variables.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" {
		t.Errorf("%s: no uid (provisioning would duplicate it on every load)", dashboardFile)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[fmt.Sprintf("panel %q %s", p.Title, tg.RefID)] = tg.Expr
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*\w+\)$`)
	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil {
			continue // the datasource variable's query is a plain string
		}
		m := labelValues.FindStringSubmatch(q.Query)
		if m == nil {
			t.Errorf("variable %s: query %q is not label_values(selector, label)", v.Name, q.Query)
			continue
		}
		out["variable "+v.Name] = m[1]
	}
	return out
}

// allExprs is every PromQL expression shipped: alerts and dashboard.
func allExprs(t *testing.T) map[string]string {
	out := dashboardExprs(t)
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			out["alert "+r.Alert] = r.Expr
		}
	}
	return out
}

// metricNames returns the metric names an expression selects.
func metricNames(e parser.Expr) []string {
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			for _, m := range vs.LabelMatchers {
				if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
					names = append(names, m.Value)
				}
			}
		}
		return nil
	})
	return names
}

// liveMetrics builds the binary, runs an admin and a sidecar following it, makes one check and
// one admin request (counter vectors appear only once used) and returns the sample names of
// both /metrics pages.
func liveMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "extauthz")
	build := exec.Command("go", "build", "-o", bin, "../cmd/extauthz")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	adminTok, replTok := filepath.Join(dir, "admin-token"), filepath.Join(dir, "replication-token")
	for _, f := range []string{adminTok, replTok} {
		if err := os.WriteFile(f, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policy := "../examples/policies/nexgent.yaml"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(childproc.StopAll)
	admin, err := childproc.Start(ctx, "admin", bin, []string{"admin", "--data-dir", filepath.Join(dir, "admin"),
		"--admin-addr", "127.0.0.1:0", "--admin-token-file", adminTok, "--replication-token-file", replTok,
		"--policy", policy, "--log-format", "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sidecar, err := childproc.Start(ctx, "sidecar", bin, []string{"sidecar", "--admin-url", admin.URL("admin"),
		"--replication-token-file", replTok, "--policy", policy, "--data-dir", filepath.Join(dir, "sidecar"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sidecar.WaitReady(ctx, sidecar.URL("http")+"/readyz", childproc.StartTimeout); err != nil {
		t.Fatal(err)
	}
	get := func(url string, hdr map[string]string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	get(sidecar.URL("http")+"/auth", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/agents", "X-Forwarded-Host": "api.example.com"}).Body.Close()
	get(admin.URL("admin")+"/api/v1/users", nil).Body.Close()

	names := map[string]bool{}
	for _, u := range []string{admin.URL("admin") + "/metrics", sidecar.URL("http") + "/metrics"} {
		resp := get(u, nil)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if line == "" || line[0] == '#' {
				continue
			}
			if i := strings.IndexAny(line, "{ "); i > 0 {
				names[line[:i]] = true
			}
		}
		resp.Body.Close()
	}
	return names
}

// TestMonitoringQueries parses every query of the dashboard and the alerts and checks that each
// metric it names is on a live /metrics page of the real binary (or listed in pendingMetrics).
func TestMonitoringQueries(t *testing.T) {
	exprs := allExprs(t)
	live := liveMetrics(t)
	used := map[string]bool{}
	for where, src := range exprs {
		e, err := promParser.ParseExpr(grafanaVars.Replace(src))
		if err != nil {
			t.Errorf("%s: %q: %v", where, src, err)
			continue
		}
		names := metricNames(e)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, src)
		}
		for _, n := range names {
			used[n] = true
			if _, pending := pendingMetrics[n]; !live[n] && !pending {
				t.Errorf("%s: metric %s is not exported by the binary", where, n)
			}
		}
	}
	for n, why := range pendingMetrics {
		if live[n] {
			t.Errorf("%s is exported now (%s landed): remove it from pendingMetrics", n, why)
		}
	}
	// Every extauthz metric the binary exports is on the dashboard or in an alert.
	var missing []string
	for n := range live {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(n, "extauthz_") && !used[n] && !used[base+"_bucket"] && n != "extauthz_replica_persisted_revision" {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("exported but on no panel and in no alert: %v", missing)
	}
}

// TestMonitoringQueriesCatchMistakes: a typo in a metric name or a syntax error fails.
func TestMonitoringQueriesCatchMistakes(t *testing.T) {
	live := map[string]bool{"extauthz_checks_total": true}
	if _, err := promParser.ParseExpr(`sum by (reason) (rate(extauthz_checks_total[5m])`); err == nil {
		t.Error("an unbalanced expression parsed")
	}
	e, err := promParser.ParseExpr(`sum(rate(extauthz_check_total[5m]))`)
	if err != nil {
		t.Fatal(err)
	}
	if n := metricNames(e); len(n) != 1 || live[n[0]] {
		t.Errorf("misspelt metric %v passes", n)
	}
}

// alertCase is a synthetic history (promqltest "load" syntax, one sample a minute) and whether
// the alert fires when evaluated every minute up to at.
type alertCase struct {
	name   string
	series string
	at     time.Duration
	fires  bool
}

var alertCases = map[string][]alertCase{
	"ExtauthzReplicaStale": {
		{"a replica without heartbeats for 10 minutes", `extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 0+60x30`, 10 * time.Minute, true},
		{"heartbeats every 5 s", `extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 5x30`, 10 * time.Minute, false},
		{"stale for less than the hold", `extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 0+60x30`, 4 * time.Minute, false},
	},
	"ExtauthzAdminUnreachable": {
		{"every replica stale, resyncs failing", `
  extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 0+60x30
  extauthz_replica_staleness_seconds{namespace="a",pod="p2"} 0+60x30
  extauthz_replica_resyncs_total{namespace="a",pod="p1",result="failed"} 0+1x30
  extauthz_replica_resyncs_total{namespace="a",pod="p2",result="failed"} 0+1x30`, 10 * time.Minute, true},
		{"one replica of three stale", `
  extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 0+60x30
  extauthz_replica_staleness_seconds{namespace="a",pod="p2"} 5x30
  extauthz_replica_staleness_seconds{namespace="a",pod="p3"} 5x30
  extauthz_replica_resyncs_total{namespace="a",pod="p1",result="failed"} 0+1x30`, 10 * time.Minute, false},
		{"stale but reconnections succeed", `
  extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 0+60x30
  extauthz_replica_resyncs_total{namespace="a",pod="p1",result="failed"} 0x30`, 10 * time.Minute, false},
	},
	"ExtauthzChecksUnavailable": {
		{"9% of checks unavailable", `
  extauthz_checks_total{namespace="a",decision="unavailable",reason="replica_unavailable"} 0+10x30
  extauthz_checks_total{namespace="a",decision="allow",reason="ok"} 0+100x30`, 15 * time.Minute, true},
		{"none unavailable", `
  extauthz_checks_total{namespace="a",decision="unavailable",reason="replica_unavailable"} 0x30
  extauthz_checks_total{namespace="a",decision="allow",reason="ok"} 0+100x30`, 15 * time.Minute, false},
	},
	"ExtauthzAdminErrors": {
		{"a sixth of admin requests fail", `
  extauthz_admin_requests_total{namespace="a",route="POST /api/v1/api-keys",code="500"} 0+10x30
  extauthz_admin_requests_total{namespace="a",route="POST /api/v1/api-keys",code="201"} 0+50x30`, 20 * time.Minute, true},
		{"one in a hundred fails", `
  extauthz_admin_requests_total{namespace="a",route="POST /api/v1/api-keys",code="500"} 0+1x30
  extauthz_admin_requests_total{namespace="a",route="POST /api/v1/api-keys",code="201"} 0+100x30`, 20 * time.Minute, false},
	},
	"ExtauthzDenialSpike": {
		{"half the checks denied at 10/s", `
  extauthz_checks_total{namespace="a",decision="unauthenticated",reason="unknown_key"} 0+600x30
  extauthz_checks_total{namespace="a",decision="allow",reason="ok"} 0+600x30`, 20 * time.Minute, true},
		{"half denied but under 1/s", `
  extauthz_checks_total{namespace="a",decision="unauthenticated",reason="unknown_key"} 0+30x30
  extauthz_checks_total{namespace="a",decision="allow",reason="ok"} 0+30x30`, 20 * time.Minute, false},
		{"1% denied", `
  extauthz_checks_total{namespace="a",decision="forbidden",reason="missing_scope"} 0+60x30
  extauthz_checks_total{namespace="a",decision="allow",reason="ok"} 0+6000x30`, 20 * time.Minute, false},
	},
	"ExtauthzAdminCertificateRefused": {
		{"a replica refuses the admin's certificate", `extauthz_replication_tls_errors_total{namespace="a",pod="p1",reason="unknown_authority"} 0+2x30`, 10 * time.Minute, true},
		{"no refusal", `extauthz_replication_tls_errors_total{namespace="a",pod="p1",reason="unknown_authority"} 0x30`, 10 * time.Minute, false},
		{"one refusal long ago", `extauthz_replication_tls_errors_total{namespace="a",pod="p1",reason="wrong_name"} 0 1x30`, 30 * time.Minute, false},
	},
	"ExtauthzCertificateExpiresSoon": {
		{"expires in 7 days", `extauthz_tls_certificate_expiry_timestamp_seconds{namespace="a",pod="p1",listener="grpc"} 604800x120`, 90 * time.Minute, true},
		{"expires in 30 days", `extauthz_tls_certificate_expiry_timestamp_seconds{namespace="a",pod="p1",listener="grpc"} 2592000x120`, 90 * time.Minute, false},
		{"no TLS: metric absent", `extauthz_replica_staleness_seconds{namespace="a",pod="p1"} 5x120`, 90 * time.Minute, false},
	},
}

// TestAlerts evaluates each alert with the Prometheus rule engine (rules.AlertingRule on the
// promql engine, over a TSDB filled with promqltest's load syntax), the way Prometheus evaluates
// a rule group: every minute, the for: hold counted across evaluations.
func TestAlerts(t *testing.T) {
	groups := loadRules(t)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	seen := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			seen[r.Alert] = true
			cases := alertCases[r.Alert]
			if len(cases) == 0 {
				t.Errorf("alert %s has no test case", r.Alert)
			}
			if !slices.ContainsFunc(cases, func(c alertCase) bool { return c.fires }) || !slices.ContainsFunc(cases, func(c alertCase) bool { return !c.fires }) {
				t.Errorf("alert %s needs a case that fires and one that does not", r.Alert)
			}
			if r.Annotations["runbook_url"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s: runbook_url annotation and severity label are required", r.Alert)
			}
			for _, c := range cases {
				t.Run(r.Alert+"/"+c.name, func(t *testing.T) {
					if got := fires(t, engine, r, c); got != c.fires {
						t.Errorf("fires = %v, want %v", got, c.fires)
					}
				})
			}
		}
	}
	for name := range alertCases {
		if !seen[name] {
			t.Errorf("test cases for %s, which is not in %s", name, rulesFile)
		}
	}
}

func fires(t *testing.T, engine promql.QueryEngine, r rulefmt.Rule, c alertCase) bool {
	st := promqltest.LoadedStorage(t, "load 1m\n  "+strings.TrimSpace(c.series))
	defer st.Close()
	expr, err := promParser.ParseExpr(r.Expr)
	if err != nil {
		t.Fatal(err)
	}
	rule := rules.NewAlertingRule(r.Alert, expr, time.Duration(r.For), time.Duration(r.KeepFiringFor),
		labels.FromMap(r.Labels), labels.FromMap(r.Annotations), labels.EmptyLabels(), "", true, nil)
	query := rules.EngineQueryFunc(engine, st)
	for ts := time.Duration(0); ts <= c.at; ts += time.Minute {
		if _, err := rule.Eval(context.Background(), 0, time.Unix(0, 0).Add(ts), query, nil, 0); err != nil {
			t.Fatalf("eval at %s: %v", ts, err)
		}
	}
	for _, a := range rule.ActiveAlerts() {
		if a.State == rules.StateFiring {
			return true
		}
	}
	return false
}
