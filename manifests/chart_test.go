package manifests

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

const chartDir = "../charts/extauthz"

// helmLabels are the labels the chart adds to every object and pod template besides those of
// the kustomize tree; selectors carry none of them, so the two installs select the same pods.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

// chartVariants are the documented values files (charts/extauthz/ci), "" being the defaults.
var chartVariants = []string{"", "envoy", "traefik", "gateway", "ha"}

func variantValues(t testing.TB, variant string) map[string]any {
	t.Helper()
	vals := map[string]any{}
	if variant == "" {
		return vals
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "ci", variant+"-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &vals); err != nil {
		t.Fatalf("%s values: %v", variant, err)
	}
	return vals
}

// renderChart renders the chart with Helm's own loader and engine, as `helm template extauthz
// charts/extauthz -n extauthz -f <values>` does, and returns each object as JSON.
func renderChart(t testing.TB, vals map[string]any) []json.RawMessage {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	rv, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: "extauthz", Namespace: "extauthz", IsInstall: true, Revision: 1},
		common.DefaultCapabilities, false)
	if err != nil {
		t.Fatal(err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	var out []json.RawMessage
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(files[name], "\n---\n") {
			j, err := yaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if string(j) == "null" {
				continue
			}
			// Helm sets the namespace at install time; write it in, as kubectl would see it.
			var m map[string]any
			if err := json.Unmarshal(j, &m); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			meta, _ := m["metadata"].(map[string]any)
			if meta != nil && meta["namespace"] == nil {
				meta["namespace"] = "extauthz"
			}
			b, _ := json.Marshal(m)
			out = append(out, b)
		}
	}
	return out
}

func renderedChart(t testing.TB, variant string) *objectSet {
	t.Helper()
	set, err := decodeObjects("chart "+variant, renderChart(t, variantValues(t, variant)))
	if err != nil {
		t.Fatalf("decode chart %s: %v", variant, err)
	}
	return set
}

// TestChartFitsTogether decodes every object of each documented variant strictly into its Go
// type (Kubernetes, Traefik, Prometheus Operator) and applies the kustomize tree's fit rules.
func TestChartFitsTogether(t *testing.T) {
	want := codePorts(t)
	for _, v := range chartVariants {
		t.Run("variant="+v, func(t *testing.T) {
			set := renderedChart(t, v)
			reportProblems(t, "chart "+v, checkManifests(set, want))
			for _, o := range set.Objs {
				for _, l := range helmLabels {
					if o.Labels[l] == "" {
						t.Errorf("%s: Helm label %s missing", o, l)
					}
				}
			}
		})
	}
}

// TestChartContent pins what each variant installs.
func TestChartContent(t *testing.T) {
	kinds := func(set *objectSet) map[string]int {
		m := map[string]int{}
		for _, o := range set.Objs {
			m[o.Kind]++
		}
		return m
	}
	for v, want := range map[string]map[string]int{
		"":        {"ServiceAccount": 1, "ConfigMap": 1, "StatefulSet": 1, "Service": 1, "NetworkPolicy": 1, "PodDisruptionBudget": 1},
		"gateway": {"ServiceAccount": 1, "ConfigMap": 2, "StatefulSet": 1, "Deployment": 1, "Service": 2, "NetworkPolicy": 2, "PodDisruptionBudget": 2, "ServiceMonitor": 1, "PrometheusRule": 1},
		"ha":      {"ServiceAccount": 1, "ConfigMap": 2, "StatefulSet": 1, "Deployment": 1, "Service": 4, "NetworkPolicy": 2, "PodDisruptionBudget": 1},
	} {
		if got := kinds(renderedChart(t, v)); !reflect.DeepEqual(got, want) {
			t.Errorf("variant %q: %v, want %v", v, got, want)
		}
	}
	ha := renderedChart(t, "ha")
	sts := ha.get("StatefulSet", "extauthz", "extauthz-admin")
	if sts == nil || workloadsOf(&objectSet{Objs: []*object{sts}})[0].replicas != 3 {
		t.Fatal("ha: no 3-replica admin StatefulSet")
	}
	args := strings.Join(workloadsOf(&objectSet{Objs: []*object{sts}})[0].spec().Containers[0].Args, " ")
	for _, f := range []string{"--node-id=$(POD_NAME)", "--raft-addr=", "--raft-tls-cert-file=", "--raft-tls-key-file=", "--raft-tls-ca-file=",
		"--raft-peers=extauthz-admin-0=extauthz-admin-0.extauthz-admin-raft.extauthz.svc:8300,extauthz-admin-1="} {
		if !strings.Contains(args, f) {
			t.Errorf("ha admin args %q lack %s", args, f)
		}
	}
	// The sidecars follow every ready admin, through the headless Service of the members.
	if svc := ha.get("Service", "extauthz", "extauthz-admin-members"); svc == nil || svc.Obj.(*corev1.Service).Spec.ClusterIP != "None" {
		t.Error("ha: no headless Service extauthz-admin-members")
	}
	for _, w := range workloadsOf(ha) {
		for _, c := range w.spec().Containers {
			if len(c.Args) > 0 && c.Args[0] == "sidecar" && !slices.Contains(c.Args, "--admin-url=http://extauthz-admin-members:8181") {
				t.Errorf("ha: %s's sidecar args %q do not follow the admin members", w.obj, c.Args)
			}
		}
	}
	// The PrometheusRule carries the tested rule file unchanged.
	gw := renderedChart(t, "gateway")
	// monitoring.allowFrom admits Prometheus to each /metrics port, and only to it.
	for name, port := range map[string]int32{"extauthz-admin": 8181, "extauthz-auth": 9192} {
		np := gw.get("NetworkPolicy", "extauthz", name)
		if np == nil {
			t.Fatalf("gateway: no NetworkPolicy %s", name)
		}
		var scraped bool
		for _, r := range np.Obj.(*networkingv1.NetworkPolicy).Spec.Ingress {
			for _, f := range r.From {
				if f.NamespaceSelector != nil && f.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] == "monitoring" {
					scraped = len(r.Ports) == 1 && r.Ports[0].Port.IntVal == port
				}
			}
		}
		if !scraped {
			t.Errorf("gateway: NetworkPolicy %s does not admit the monitoring namespace to :%d alone", name, port)
		}
	}
	if pr := gw.byKind("PrometheusRule"); len(pr) == 1 {
		b, _ := json.Marshal(pr[0].Obj)
		for _, a := range []string{"ExtauthzReplicaStale", "ExtauthzAdminUnreachable", "{{ $labels.pod }}"} {
			if !strings.Contains(string(b), a) {
				t.Errorf("PrometheusRule lacks %q", a)
			}
		}
	}
}

// normalized decodes objects into generic maps without the Helm labels, for comparison.
func normalized(t *testing.T, raws []json.RawMessage, dropNamespace bool) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, raw := range raws {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		meta := m["metadata"].(map[string]any)
		if dropNamespace {
			delete(meta, "namespace")
		}
		stripLabels(meta)
		if spec, ok := m["spec"].(map[string]any); ok {
			if tmpl, ok := spec["template"].(map[string]any); ok {
				stripLabels(tmpl["metadata"].(map[string]any))
			}
		}
		out[m["kind"].(string)+"/"+meta["name"].(string)] = m
	}
	return out
}

func stripLabels(meta map[string]any) {
	l, _ := meta["labels"].(map[string]any)
	for _, k := range helmLabels {
		delete(l, k)
	}
}

// TestChartMatchesKustomize: one source of truth. The chart's defaults render manifests/base,
// ci/envoy-values.yaml manifests/envoy, ci/traefik-values.yaml manifests/traefik and
// ci/ha-values.yaml manifests/ha, object for
// object, field for field, once Helm's labels are set aside.
func TestChartMatchesKustomize(t *testing.T) {
	for variant, dir := range map[string]string{"": "base", "envoy": "envoy", "traefik": "traefik", "ha": "ha"} {
		t.Run(dir, func(t *testing.T) {
			kust, err := RenderObjects(dir)
			if err != nil {
				t.Fatal(err)
			}
			k := normalized(t, kust, dir == "base")
			h := normalized(t, renderChart(t, variantValues(t, variant)), dir == "base")
			for _, id := range slices.Sorted(maps.Keys(k)) {
				if h[id] == nil {
					t.Errorf("%s: rendered by kustomize, not by the chart", id)
				} else if d := diffPaths(k[id], h[id], ""); len(d) > 0 {
					t.Errorf("%s differs (kustomize, then chart):\n%s", id, strings.Join(d, "\n"))
				}
			}
			for _, id := range slices.Sorted(maps.Keys(h)) {
				if k[id] == nil {
					t.Errorf("%s: rendered by the chart, not by kustomize", id)
				}
			}
		})
	}
}

// TestChartLint runs Helm's own linter (what `helm lint --strict` runs) on every variant.
func TestChartLint(t *testing.T) {
	for _, v := range chartVariants {
		linter := lint.RunAll(chartDir, variantValues(t, v), "extauthz")
		for _, m := range linter.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("variant %q: %s", v, m)
			}
		}
	}
}

// TestChartCatchesMistakes: values or a template that break a reference, a field or a rule.
func TestChartCatchesMistakes(t *testing.T) {
	want := codePorts(t)
	for name, tc := range map[string]struct {
		vals   map[string]any
		expect string
	}{
		"tokens from an undocumented Secret":   {map[string]any{"existingSecret": "tokens"}, `Secret "tokens" is not one of the documented`},
		"traefik to a missing backend":         {map[string]any{"enforcement": map[string]any{"enabled": true}, "traefik": map[string]any{"enabled": true}}, "no Service echo"},
		"admin memory request above its limit": {map[string]any{"admin": map[string]any{"resources": map[string]any{"requests": map[string]any{"memory": "1Gi"}}}}, "memory request 1Gi is above its limit"},
	} {
		t.Run(name, func(t *testing.T) {
			set, err := decodeObjects(name, renderChart(t, tc.vals))
			if err != nil {
				t.Fatal(err)
			}
			if probs := checkManifests(set, want); !problemsContain(probs, tc.expect) {
				t.Fatalf("no problem mentions %q; got:\n%s", tc.expect, strings.Join(probs, "\n"))
			}
		})
	}
	// An HA admin whose StatefulSet lost a voter.
	ha, err := decodeObjects("ha", renderChart(t, variantValues(t, "ha")))
	if err != nil {
		t.Fatal(err)
	}
	two := int32(2)
	ha.get("StatefulSet", "extauthz", "extauthz-admin").Obj.(*appsv1.StatefulSet).Spec.Replicas = &two
	if probs := checkManifests(ha, want); !problemsContain(probs, "2 replicas for 3 raft voters") {
		t.Errorf("an admin with 2 replicas for 3 voters passes:\n%s", strings.Join(probs, "\n"))
	}
	// values.schema.json refuses misspelt and out-of-range values before anything renders.
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	for what, vals := range map[string]map[string]any{
		"admin.replicas 2":       {"admin": map[string]any{"replicas": 2}},
		"misspelt enforcement":   {"enforcment": map[string]any{"enabled": true}},
		"unknown forwardHeaders": {"enforcement": map[string]any{"forwardHeaders": "haproxy"}},
		"unknown door":           {"enforcement": map[string]any{"doors": []any{"grpc", "tcp"}}},
	} {
		_, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
			common.ReleaseOptions{Name: "extauthz", Namespace: "extauthz", IsInstall: true}, common.DefaultCapabilities, false)
		if err == nil {
			t.Errorf("%s: accepted by values.schema.json", what)
		}
	}
	// A misspelt field in a rendered object fails strict decoding.
	raws := renderChart(t, nil)
	for i, r := range raws {
		if strings.Contains(string(r), `"kind":"StatefulSet"`) {
			raws[i] = json.RawMessage(strings.Replace(string(r), `"serviceName"`, `"servicename"`, 1))
		}
	}
	if _, err := decodeObjects("misspelt", raws); err == nil || !strings.Contains(err.Error(), "servicename") {
		t.Errorf("a misspelt StatefulSet field decoded: %v", err)
	}
}

// diffPaths lists where two decoded JSON values differ.
func diffPaths(a, b any, path string) []string {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		var out []string
		for _, k := range slices.Sorted(maps.Keys(am)) {
			out = append(out, diffPaths(am[k], bm[k], path+"."+k)...)
		}
		for _, k := range slices.Sorted(maps.Keys(bm)) {
			if _, ok := am[k]; !ok {
				out = append(out, diffPaths(nil, bm[k], path+"."+k)...)
			}
		}
		return out
	}
	al, aok := a.([]any)
	bl, bok := b.([]any)
	if aok && bok && len(al) == len(bl) {
		var out []string
		for i := range al {
			out = append(out, diffPaths(al[i], bl[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	}
	if reflect.DeepEqual(a, b) {
		return nil
	}
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return []string{fmt.Sprintf("  %s: %.200s | %.200s", path, ab, bb)}
}

// TestChartFileCopies: Helm reads only files inside the chart, so envoy.yaml and the policy are
// copies; they must stay byte-identical to the repository's.
func TestChartFileCopies(t *testing.T) {
	for copyPath, orig := range map[string]string{
		filepath.Join(chartDir, "files", "envoy.yaml"):  "../envoy.yaml",
		filepath.Join(chartDir, "files", "policy.yaml"): policyCopy,
	} {
		a, errA := os.ReadFile(copyPath)
		b, errB := os.ReadFile(orig)
		if errA != nil || errB != nil {
			t.Fatal(errA, errB)
		}
		if string(a) != string(b) {
			t.Errorf("%s differs from %s: copy it over", copyPath, orig)
		}
	}
}
