package manifests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	egv1a1 "github.com/envoyproxy/gateway/api/v1alpha1"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gwapiv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwapiv1b1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// The examples under examples/istio, examples/envoy-gateway and examples/gateway-api call the
// enforcement pool the chart installs with enforcement.doors [grpc, http]: this Service.
const (
	authService   = "extauthz-auth"
	authNamespace = "extauthz"
	authHost      = authService + "." + authNamespace + ".svc.cluster.local"
	// The prefix the HTTP door expects in front of the original path (--forward-headers=envoy).
	authPathPrefix = "/auth"
	// The ext_authz filter's dynamic metadata namespace, where extauthz writes the key's limit.
	extAuthzMetadata = "envoy.filters.http.ext_authz"
	// The key under it holding {requests_per_unit, unit} (authz/envoy's Check response).
	rateLimitMetadataKey = "rate_limit"
)

// checkHeaders are the request headers an HTTP-mode proxy must send to extauthz: the key in
// both its places, the method and path overrides extauthz must see to refuse them (also spelt
// with '_'), and the Content-Type of a POST, which may be a form.
var checkHeaders = []string{"x-api-key", "authorization", "x-http-method-override", "x-http-method", "x-method-override",
	"x_http_method_override", "x_http_method", "x_method_override",
	"x-original-url", "x-rewrite-url", "x_original_url", "x_rewrite_url", "content-type"}

// mixedSpellings are override and identity headers spelt with '_' or '.' for some '-', which
// frameworks that map header names to variables read as the '-' spelling. Istio's sidecars pass such names (Envoy
// Gateway and the Envoy examples reject them), so its example must send them too.
var mixedSpellings = []string{"x-http_method-override", "x_http-method", "x-original_url", "content_type",
	"x.http.method.override", "x.original.url", "x.auth.scopes", "x-auth.user-id", "x_auth_scopes", "x-auth_key.id"}

// istioIncludes reports whether one of Istio's includeRequestHeadersInCheck patterns (exact,
// "prefix*" or "*suffix") matches the lower-case header name h.
func istioIncludes(patterns []string, h string) bool {
	for _, p := range patterns {
		switch {
		case strings.HasPrefix(p, "*"):
			if strings.HasSuffix(h, p[1:]) {
				return true
			}
		case strings.HasSuffix(p, "*"):
			if strings.HasPrefix(h, p[:len(p)-1]) {
				return true
			}
		case p == h:
			return true
		}
	}
	return false
}

// ecoDoc is one example file, as YAML converted to JSON.
type ecoDoc struct {
	name string
	json []byte
}

func readEcoDoc(t *testing.T, rel string) ecoDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "examples", rel))
	if err != nil {
		t.Fatal(err)
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return ecoDoc{rel, j}
}

// protoObject is a Kubernetes object whose spec is an Istio protobuf message.
type protoObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta `json:"metadata"`
	Spec            json.RawMessage   `json:"spec"`
}

// istioExamples is the Istio example decoded strictly: the mesh config with protojson (unknown
// fields are an error by default) and the AuthorizationPolicy's envelope with the Kubernetes
// strict decoder, its spec with protojson.
type istioExamples struct {
	mesh   *meshv1alpha1.MeshConfig
	policy *securityv1beta1.AuthorizationPolicy
	meta   metav1.ObjectMeta
}

func decodeIstio(mesh, policy ecoDoc) (*istioExamples, error) {
	var values struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := decodeStrict(mesh.json, &values); err != nil {
		return nil, fmt.Errorf("%s: %w", mesh.name, err)
	}
	out := &istioExamples{mesh: &meshv1alpha1.MeshConfig{}, policy: &securityv1beta1.AuthorizationPolicy{}}
	if err := protojson.Unmarshal(values.MeshConfig, out.mesh); err != nil {
		return nil, fmt.Errorf("%s: meshConfig: %w", mesh.name, err)
	}
	var obj protoObject
	if err := decodeStrict(policy.json, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", policy.name, err)
	}
	if obj.APIVersion != "security.istio.io/v1" || obj.Kind != "AuthorizationPolicy" {
		return nil, fmt.Errorf("%s: %s %s is not security.istio.io/v1 AuthorizationPolicy", policy.name, obj.APIVersion, obj.Kind)
	}
	if err := protojson.Unmarshal(obj.Spec, out.policy); err != nil {
		return nil, fmt.Errorf("%s: spec: %w", policy.name, err)
	}
	out.meta = obj.Metadata
	return out, nil
}

// checkIstio returns what does not fit: the provider the policy names must exist and point at
// the enforcement Service with the door's port, fail closed, and (HTTP) forward the key.
func checkIstio(x *istioExamples, want ports) []string {
	var p problems
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, ep := range x.mesh.GetExtensionProviders() {
		providers[ep.GetName()] = ep
		switch {
		case ep.GetEnvoyExtAuthzGrpc() != nil:
			g := ep.GetEnvoyExtAuthzGrpc()
			if g.GetService() != authHost || g.GetPort() != uint32(want.GRPC) {
				p.add("provider %s: %s:%d is not the gRPC door %s:%d", ep.GetName(), g.GetService(), g.GetPort(), authHost, want.GRPC)
			}
			if g.GetFailOpen() {
				p.add("provider %s: failOpen lets every request through when extauthz is down", ep.GetName())
			}
			if g.GetTimeout() == nil {
				p.add("provider %s: no timeout", ep.GetName())
			}
		case ep.GetEnvoyExtAuthzHttp() != nil:
			h := ep.GetEnvoyExtAuthzHttp()
			if h.GetService() != authHost || h.GetPort() != uint32(want.HTTP) {
				p.add("provider %s: %s:%d is not the HTTP door %s:%d", ep.GetName(), h.GetService(), h.GetPort(), authHost, want.HTTP)
			}
			if h.GetFailOpen() {
				p.add("provider %s: failOpen lets every request through when extauthz is down", ep.GetName())
			}
			if h.GetTimeout() == nil {
				p.add("provider %s: no timeout", ep.GetName())
			}
			if h.GetPathPrefix() != authPathPrefix {
				p.add("provider %s: pathPrefix %q, want %q (the door reads the original path after it)", ep.GetName(), h.GetPathPrefix(), authPathPrefix)
			}
			for _, hd := range append(slices.Clone(checkHeaders), mixedSpellings...) {
				if !istioIncludes(h.GetIncludeRequestHeadersInCheck(), hd) {
					p.add("provider %s: includeRequestHeadersInCheck lacks %s: extauthz never sees it", ep.GetName(), hd)
				}
			}
			for _, hd := range identityHeaders {
				if !slices.Contains(h.GetHeadersToUpstreamOnAllow(), strings.ToLower(hd)) {
					p.add("provider %s: headersToUpstreamOnAllow lacks %s", ep.GetName(), strings.ToLower(hd))
				}
			}
		default:
			p.add("provider %s: neither envoyExtAuthzGrpc nor envoyExtAuthzHttp", ep.GetName())
		}
	}
	if x.policy.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		p.add("AuthorizationPolicy %s: action %s, want CUSTOM", x.meta.Name, x.policy.GetAction())
	}
	if name := x.policy.GetProvider().GetName(); providers[name] == nil {
		p.add("AuthorizationPolicy %s: provider %q is not in meshConfig.extensionProviders", x.meta.Name, name)
	}
	if len(x.policy.GetSelector().GetMatchLabels()) == 0 {
		p.add("AuthorizationPolicy %s: selects no workload (a CUSTOM policy without selector applies to the whole namespace)", x.meta.Name)
	}
	return p
}

// gatewayExamples are the Envoy Gateway and Gateway API examples, decoded strictly into each
// project's own Go types.
type gatewayExamples struct {
	grpc, http *egv1a1.SecurityPolicy
	rateLimit  *egv1a1.BackendTrafficPolicy
	grant      *gwapiv1b1.ReferenceGrant
	route      *gwapiv1.HTTPRoute
}

func decodeTyped(d ecoDoc, apiVersion, kind string, v any) error {
	var head metav1.TypeMeta
	if err := json.Unmarshal(d.json, &head); err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	if head.APIVersion != apiVersion || head.Kind != kind {
		return fmt.Errorf("%s: %s %s, want %s %s", d.name, head.APIVersion, head.Kind, apiVersion, kind)
	}
	if err := decodeStrict(d.json, v); err != nil {
		return fmt.Errorf("%s: %w", d.name, err)
	}
	return nil
}

func decodeGateways(docs map[string]ecoDoc) (*gatewayExamples, error) {
	g := &gatewayExamples{grpc: &egv1a1.SecurityPolicy{}, http: &egv1a1.SecurityPolicy{},
		rateLimit: &egv1a1.BackendTrafficPolicy{}, grant: &gwapiv1b1.ReferenceGrant{}, route: &gwapiv1.HTTPRoute{}}
	eg := egv1a1.GroupVersion.String()
	for _, d := range []struct {
		file, apiVersion, kind string
		v                      any
	}{
		{"envoy-gateway/securitypolicy-grpc.yaml", eg, egv1a1.KindSecurityPolicy, g.grpc},
		{"envoy-gateway/securitypolicy-http.yaml", eg, egv1a1.KindSecurityPolicy, g.http},
		{"envoy-gateway/backendtrafficpolicy-ratelimit.yaml", eg, egv1a1.KindBackendTrafficPolicy, g.rateLimit},
		{"envoy-gateway/referencegrant.yaml", gwapiv1b1.GroupVersion.String(), "ReferenceGrant", g.grant},
		{"gateway-api/httproute.yaml", gwapiv1.GroupVersion.String(), "HTTPRoute", g.route},
	} {
		if err := decodeTyped(docs[d.file], d.apiVersion, d.kind, d.v); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// backendRefersTo reports whether a Gateway API backend reference names the enforcement
// Service on port.
func backendRefersTo(ref gwapiv1.BackendObjectReference, port int32) bool {
	return (ref.Group == nil || *ref.Group == "") && (ref.Kind == nil || *ref.Kind == "Service") &&
		string(ref.Name) == authService && ref.Namespace != nil && string(*ref.Namespace) == authNamespace &&
		ref.Port != nil && int32(*ref.Port) == port
}

func (g *gatewayExamples) granted(fromKind, fromNS string) bool {
	if g.grant.Namespace != authNamespace {
		return false
	}
	from := slices.ContainsFunc(g.grant.Spec.From, func(f gwapiv1b1.ReferenceGrantFrom) bool {
		return string(f.Kind) == fromKind && string(f.Namespace) == fromNS
	})
	to := slices.ContainsFunc(g.grant.Spec.To, func(r gwapiv1b1.ReferenceGrantTo) bool {
		return r.Group == "" && r.Kind == "Service" && (r.Name == nil || string(*r.Name) == authService)
	})
	return from && to
}

// targetsRoute reports whether policy target references name the example HTTPRoute.
func (g *gatewayExamples) targetsRoute(refs []gwapiv1.LocalPolicyTargetReferenceWithSectionName) bool {
	return slices.ContainsFunc(refs, func(r gwapiv1.LocalPolicyTargetReferenceWithSectionName) bool {
		return r.Group == gwapiv1.GroupName && r.Kind == "HTTPRoute" && string(r.Name) == g.route.Name
	})
}

func checkGateways(g *gatewayExamples, want ports) []string {
	var p problems
	for _, sp := range []*egv1a1.SecurityPolicy{g.grpc, g.http} {
		where := "SecurityPolicy " + sp.Name
		ea := sp.Spec.ExtAuth
		if ea == nil {
			p.add("%s: no extAuth", where)
			continue
		}
		if ea.FailOpen == nil || *ea.FailOpen {
			p.add("%s: failOpen must be set to false", where)
		}
		if ea.Timeout == nil {
			p.add("%s: no timeout", where)
		}
		if sp.Namespace != g.route.Namespace || !g.targetsRoute(sp.Spec.TargetRefs) {
			p.add("%s: targets no HTTPRoute %s/%s", where, g.route.Namespace, g.route.Name)
		}
		if !g.granted(egv1a1.KindSecurityPolicy, sp.Namespace) {
			p.add("%s: no ReferenceGrant in %s lets namespace %s reach Service %s", where, authNamespace, sp.Namespace, authService)
		}
		var refs []egv1a1.BackendRef
		port := want.GRPC
		switch {
		case ea.GRPC != nil && ea.HTTP == nil:
			refs = ea.GRPC.BackendRefs
		case ea.HTTP != nil && ea.GRPC == nil:
			refs, port = ea.HTTP.BackendRefs, want.HTTP
			if ea.HTTP.Path == nil || *ea.HTTP.Path != authPathPrefix {
				p.add("%s: http.path must be %q (the door reads the original path after it)", where, authPathPrefix)
			}
			for _, hd := range checkHeaders {
				if !slices.Contains(ea.HeadersToExtAuth, hd) {
					p.add("%s: headersToExtAuth lacks %s: extauthz never sees it", where, hd)
				}
			}
			for _, hd := range identityHeaders {
				if !slices.Contains(ea.HTTP.HeadersToBackend, strings.ToLower(hd)) {
					p.add("%s: http.headersToBackend lacks %s", where, strings.ToLower(hd))
				}
			}
		default:
			p.add("%s: exactly one of extAuth.grpc and extAuth.http", where)
		}
		if len(refs) != 1 || !backendRefersTo(refs[0].BackendObjectReference, port) {
			p.add("%s: backendRefs %v do not name Service %s/%s port %d", where, refs, authNamespace, authService, port)
		}
	}

	rl := g.rateLimit.Spec.RateLimit
	switch {
	case !g.targetsRoute(g.rateLimit.Spec.TargetRefs):
		p.add("BackendTrafficPolicy %s: targets no HTTPRoute %s", g.rateLimit.Name, g.route.Name)
	case rl == nil || rl.Global == nil || len(rl.Global.Rules) == 0:
		p.add("BackendTrafficPolicy %s: no global rate limit rule", g.rateLimit.Name)
	default:
		for i, r := range rl.Global.Rules {
			if fm := r.Limit.FromMetadata; fm == nil || fm.Namespace != extAuthzMetadata {
				p.add("BackendTrafficPolicy %s: rule %d does not read its limit from %s metadata", g.rateLimit.Name, i, extAuthzMetadata)
			} else if fm.Key != rateLimitMetadataKey {
				p.add("BackendTrafficPolicy %s: rule %d reads metadata key %q, extauthz writes %q", g.rateLimit.Name, i, fm.Key, rateLimitMetadataKey)
			}
		}
	}

	var found bool
	for _, rule := range g.route.Spec.Rules {
		for _, f := range rule.Filters {
			if f.Type != gwapiv1.HTTPRouteFilterExternalAuth {
				continue
			}
			found = true
			ea := f.ExternalAuth
			if ea == nil || ea.ExternalAuthProtocol != gwapiv1.HTTPRouteExternalAuthGRPCProtocol || !backendRefersTo(ea.BackendRef, want.GRPC) {
				p.add("HTTPRoute %s: ExternalAuth filter does not call Service %s/%s over gRPC on port %d", g.route.Name, authNamespace, authService, want.GRPC)
			}
		}
		if !found {
			p.add("HTTPRoute %s: a rule reaches the backend without the ExternalAuth filter", g.route.Name)
		}
	}
	if !g.granted("HTTPRoute", g.route.Namespace) {
		p.add("HTTPRoute %s: no ReferenceGrant in %s lets namespace %s reach Service %s", g.route.Name, authNamespace, g.route.Namespace, authService)
	}
	return p
}

var istioFiles = []string{"istio/meshconfig.yaml", "istio/authorizationpolicy.yaml"}

var gatewayFiles = []string{
	"envoy-gateway/securitypolicy-grpc.yaml",
	"envoy-gateway/securitypolicy-http.yaml",
	"envoy-gateway/backendtrafficpolicy-ratelimit.yaml",
	"envoy-gateway/referencegrant.yaml",
	"gateway-api/httproute.yaml",
}

func TestIstioExample(t *testing.T) {
	x, err := decodeIstio(readEcoDoc(t, istioFiles[0]), readEcoDoc(t, istioFiles[1]))
	if err != nil {
		t.Fatal(err)
	}
	reportProblems(t, "istio", checkIstio(x, codePorts(t)))
	if n := len(x.mesh.GetExtensionProviders()); n != 2 {
		t.Errorf("%d extension providers, want the gRPC and the HTTP one", n)
	}
}

func TestGatewayExamples(t *testing.T) {
	docs := map[string]ecoDoc{}
	for _, f := range gatewayFiles {
		docs[f] = readEcoDoc(t, f)
	}
	g, err := decodeGateways(docs)
	if err != nil {
		t.Fatal(err)
	}
	reportProblems(t, "gateways", checkGateways(g, codePorts(t)))
}

// TestEcosystemExamplesReachTheChartsService: the Service every example calls is the one the
// chart renders with ci/gateway-values.yaml, with both doors.
func TestEcosystemExamplesReachTheChartsService(t *testing.T) {
	want := codePorts(t)
	o := renderedChart(t, "gateway").get("Service", authNamespace, authService)
	if o == nil {
		t.Fatalf("the chart's gateway variant renders no Service %s/%s", authNamespace, authService)
	}
	var got []int32
	for _, p := range o.Obj.(*corev1.Service).Spec.Ports {
		got = append(got, p.Port)
	}
	if !slices.Equal(got, []int32{want.GRPC, want.HTTP}) {
		t.Errorf("Service %s ports %v, want %v", authService, got, []int32{want.GRPC, want.HTTP})
	}
}

// mutateJSON changes a decoded copy of a document and re-encodes it.
func mutateJSON(t *testing.T, d ecoDoc, f func(m map[string]any)) ecoDoc {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(d.json, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return ecoDoc{d.name, b}
}

// at returns the map at a path of keys and list indexes in a decoded document.
func at(m any, path ...any) map[string]any {
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m = m.(map[string]any)[k]
		case int:
			m = m.([]any)[k]
		}
	}
	return m.(map[string]any)
}

// TestEcosystemExamplesCatchMistakes proves the decoders and checks can fail: each case breaks a
// copy of one example (a misspelt field, a wrong type, a broken reference, a fail-open).
func TestEcosystemExamplesCatchMistakes(t *testing.T) {
	want := codePorts(t)
	cases := []struct {
		name, file string
		mutate     func(m map[string]any)
		expect     string // in the decode error or a problem
	}{
		{"istio misspelt field", istioFiles[0], func(m map[string]any) {
			at(m, "meshConfig", "extensionProviders", 0, "envoyExtAuthzGrpc")["failopen"] = false
		}, "failopen"},
		{"istio fail open", istioFiles[0], func(m map[string]any) {
			at(m, "meshConfig", "extensionProviders", 0, "envoyExtAuthzGrpc")["failOpen"] = true
		}, "failOpen lets every request through"},
		{"istio wrong port", istioFiles[0], func(m map[string]any) {
			at(m, "meshConfig", "extensionProviders", 0, "envoyExtAuthzGrpc")["port"] = want.HTTP
		}, "is not the gRPC door"},
		{"istio key header not forwarded", istioFiles[0], func(m map[string]any) {
			at(m, "meshConfig", "extensionProviders", 1, "envoyExtAuthzHttp")["includeRequestHeadersInCheck"] = []string{"authorization"}
		}, "lacks x-api-key"},
		{"istio path replaced", istioFiles[0], func(m map[string]any) {
			delete(at(m, "meshConfig", "extensionProviders", 1, "envoyExtAuthzHttp"), "pathPrefix")
		}, "pathPrefix"},
		{"istio policy misspelt field", istioFiles[1], func(m map[string]any) {
			at(m, "spec")["provder"] = at(m, "spec")["provider"]
		}, "provder"},
		{"istio policy unknown provider", istioFiles[1], func(m map[string]any) {
			at(m, "spec", "provider")["name"] = "extauthz"
		}, `provider "extauthz" is not in`},
		{"istio policy not CUSTOM", istioFiles[1], func(m map[string]any) {
			at(m, "spec")["action"] = "ALLOW"
		}, "want CUSTOM"},
		{"envoy gateway misspelt field", gatewayFiles[0], func(m map[string]any) {
			at(m, "spec", "extAuth")["failopen"] = false
		}, "failopen"},
		{"envoy gateway fail open", gatewayFiles[0], func(m map[string]any) {
			at(m, "spec", "extAuth")["failOpen"] = true
		}, "failOpen must be set to false"},
		{"envoy gateway wrong Service", gatewayFiles[0], func(m map[string]any) {
			at(m, "spec", "extAuth", "grpc", "backendRefs", 0)["name"] = "extauthz-admin"
		}, "do not name Service"},
		{"envoy gateway other route", gatewayFiles[0], func(m map[string]any) {
			at(m, "spec", "targetRefs", 0)["name"] = "web"
		}, "targets no HTTPRoute"},
		{"envoy gateway key header not forwarded", gatewayFiles[1], func(m map[string]any) {
			at(m, "spec", "extAuth")["headersToExtAuth"] = []string{"authorization"}
		}, "headersToExtAuth lacks x-api-key"},
		{"rate limit from elsewhere", gatewayFiles[2], func(m map[string]any) {
			at(m, "spec", "rateLimit", "global", "rules", 0, "limit", "fromMetadata")["namespace"] = "envoy.filters.http.ext_proc"
		}, "does not read its limit"},
		{"rate limit from another key", gatewayFiles[2], func(m map[string]any) {
			at(m, "spec", "rateLimit", "global", "rules", 0, "limit", "fromMetadata")["key"] = "ratelimit"
		}, `reads metadata key "ratelimit"`},
		{"rate limit misspelt field", gatewayFiles[2], func(m map[string]any) {
			at(m, "spec", "rateLimit", "global", "rules", 0, "limit")["fromMetadta"] = map[string]any{}
		}, "fromMetadta"},
		{"grant for another namespace", gatewayFiles[3], func(m map[string]any) {
			at(m, "spec", "from", 0)["namespace"] = "web"
		}, "no ReferenceGrant"},
		{"route filter misspelt", gatewayFiles[4], func(m map[string]any) {
			at(m, "spec", "rules", 0, "filters", 0)["externalAuthz"] = at(m, "spec", "rules", 0, "filters", 0)["externalAuth"]
		}, "externalAuthz"},
		{"route filter wrong port", gatewayFiles[4], func(m map[string]any) {
			at(m, "spec", "rules", 0, "filters", 0, "externalAuth", "backendRef")["port"] = want.Admin
		}, "ExternalAuth filter does not call"},
		{"route without the filter", gatewayFiles[4], func(m map[string]any) {
			delete(at(m, "spec", "rules", 0), "filters")
		}, "without the ExternalAuth filter"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var probs []string
			var err error
			if slices.Contains(istioFiles, tc.file) {
				docs := []ecoDoc{readEcoDoc(t, istioFiles[0]), readEcoDoc(t, istioFiles[1])}
				i := slices.Index(istioFiles, tc.file)
				docs[i] = mutateJSON(t, docs[i], tc.mutate)
				var x *istioExamples
				if x, err = decodeIstio(docs[0], docs[1]); err == nil {
					probs = checkIstio(x, want)
				}
			} else {
				docs := map[string]ecoDoc{}
				for _, f := range gatewayFiles {
					docs[f] = readEcoDoc(t, f)
				}
				docs[tc.file] = mutateJSON(t, docs[tc.file], tc.mutate)
				var g *gatewayExamples
				if g, err = decodeGateways(docs); err == nil {
					probs = checkGateways(g, want)
				}
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.expect) {
					t.Fatalf("decode error %q does not mention %q", err, tc.expect)
				}
				return
			}
			if !problemsContain(probs, tc.expect) {
				t.Fatalf("no problem mentions %q; got:\n%s", tc.expect, strings.Join(probs, "\n"))
			}
		})
	}
}
