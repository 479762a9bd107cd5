package manifests

import (
	"os"
	"strings"
	"testing"
)

func loadFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvoyYAML(t *testing.T) {
	b, err := loadBootstrap(loadFile(t, rootEnvoyYAML))
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	facts, probs := checkEnvoy(b, envoyPorts(codePorts(t)))
	reportProblems(t, "envoy.yaml", probs)
	if facts.Mode != "grpc" {
		t.Errorf("envoy.yaml: ext_authz mode %q, want grpc", facts.Mode)
	}
	if len(facts.ListenerPorts) != 1 || facts.ListenerPorts[0] != 8080 {
		t.Errorf("envoy.yaml: listeners on %v, want 8080", facts.ListenerPorts)
	}
	if len(facts.AdminHosts) != 1 || facts.AdminHosts[0].Host != "extauthz-admin" {
		t.Errorf("envoy.yaml: key management goes to %v, want the extauthz-admin Service", facts.AdminHosts)
	}
}

func TestEnvoyHTTPExample(t *testing.T) {
	b, err := loadBootstrap(loadFile(t, httpEnvoyYAML))
	if err != nil {
		t.Fatalf("examples/envoy-http.yaml: %v", err)
	}
	facts, probs := checkEnvoy(b, envoyPorts(codePorts(t)))
	reportProblems(t, "examples/envoy-http.yaml", probs)
	if facts.Mode != "http" {
		t.Errorf("examples/envoy-http.yaml: ext_authz mode %q, want http", facts.Mode)
	}
}

func TestLoadBootstrapRejects(t *testing.T) {
	root := string(loadFile(t, rootEnvoyYAML))
	for name, c := range map[string]struct{ old, new string }{
		"unknown field":                        {"failure_mode_allow: false", "failure_mode_alow: false"},
		"unresolvable @type":                   {"ext_authz.v3.ExtAuthzPerRoute", "ext_authz.v3.ExtAuthzPerRouteX"},
		"bootstrap validation":                 {"connect_timeout: 1s", "connect_timeout: -1s"},
		"typed config validation (nested Any)": {"stat_prefix: ingress_http", "stat_prefix: \"\""},
	} {
		t.Run(name, func(t *testing.T) {
			y := strings.Replace(root, c.old, c.new, 1)
			if y == root {
				t.Fatalf("%q not found in envoy.yaml", c.old)
			}
			if _, err := loadBootstrap([]byte(y)); err == nil {
				t.Fatalf("accepted envoy.yaml with %q", c.new)
			}
		})
	}
}

func TestEnvoyDriftIsReported(t *testing.T) {
	code := codePorts(t)
	cases := []struct {
		name     string
		file     string
		old, new string // a change to the YAML, applied once
		ports    func(envoyWant) envoyWant
		expect   []string
	}{
		{name: "code moves the gRPC port", file: rootEnvoyYAML,
			ports:  func(w envoyWant) envoyWant { w.GRPC = 7000; return w },
			expect: []string{"cluster extauthz", "want 127.0.0.1:7000"}},
		{name: "yaml moves the gRPC port", file: rootEnvoyYAML,
			old: "port_value: 9191", new: "port_value: 9999",
			expect: []string{"cluster extauthz", "127.0.0.1:9999", "want 127.0.0.1:9191"}},
		{name: "code moves the admin port", file: rootEnvoyYAML,
			ports:  func(w envoyWant) envoyWant { w.Admin = 7002; return w },
			expect: []string{"skips ext_authz", "port 7002"}},
		{name: "fail open", file: rootEnvoyYAML,
			old: "failure_mode_allow: false", new: "failure_mode_allow: true",
			expect: []string{"failure_mode_allow is true"}},
		{name: "403 on error", file: rootEnvoyYAML,
			old: "code: ServiceUnavailable", new: "code: Forbidden",
			expect: []string{"status_on_error is 403"}},
		{name: "no explicit timeout", file: rootEnvoyYAML,
			old: "timeout: 0.25s # deliberate", new: "# deliberate",
			expect: []string{"grpc_service", "no explicit timeout"}},
		{name: "panic threshold", file: rootEnvoyYAML,
			old: "healthy_panic_threshold: {value: 0}", new: "healthy_panic_threshold: {value: 50}",
			expect: []string{"healthy_panic_threshold"}},
		{name: "HTTP/1.1 to the gRPC server", file: rootEnvoyYAML,
			old: "http2_protocol_options: {}", new: "http_protocol_options: {}",
			expect: []string{"HTTP/2 is not configured"}},
		{name: "health check not gRPC", file: rootEnvoyYAML,
			old: "grpc_health_check:\n            service_name: envoy.service.auth.v3.Authorization", new: "tcp_health_check: {}",
			expect: []string{"not a grpc_health_check"}},
		{name: "health route checked", file: rootEnvoyYAML,
			old: "disabled: true", new: "check_settings: {}",
			expect: []string{"no route for /healthz with ext_authz disabled"}},
		{name: "per-route config keyed by another name", file: rootEnvoyYAML,
			old: "envoy.filters.http.ext_authz: &authz_disabled", new: "ext_authz: &authz_disabled",
			expect: []string{"typed_per_filter_config key \"ext_authz\" names no http filter"}},
		{name: "app route bypasses the check", file: rootEnvoyYAML,
			old: "route: {cluster: extauthz_admin, timeout: 10s}", new: "route: {cluster: app}",
			expect: []string{"skips ext_authz but goes to cluster \"app\""}},
		{name: "access log without the key id", file: rootEnvoyYAML,
			old: "envoy.filters.http.ext_authz:key_id", new: "envoy.filters.http.ext_authz:key",
			expect: []string{"no access log format contains %DYNAMIC_METADATA(envoy.filters.http.ext_authz:key_id)%"}},
		{name: "admin exposed", file: rootEnvoyYAML,
			old: "address: 127.0.0.1, port_value: 9901", new: "address: 0.0.0.0, port_value: 9901",
			expect: []string{"admin interface on 0.0.0.0"}},
		{name: "HTTP: code moves the HTTP port", file: httpEnvoyYAML,
			ports:  func(w envoyWant) envoyWant { w.HTTP = 7001; return w },
			expect: []string{"cluster extauthz_http", "want 127.0.0.1:7001"}},
		{name: "HTTP: yaml moves the HTTP port", file: httpEnvoyYAML,
			old: "port_value: 9192", new: "port_value: 9999",
			expect: []string{"cluster extauthz_http", "127.0.0.1:9999"}},
		{name: "HTTP: path prefix", file: httpEnvoyYAML,
			old: "path_prefix: /auth", new: "path_prefix: /check",
			expect: []string{"path_prefix is \"/check\""}},
		{name: "HTTP: API key not sent", file: httpEnvoyYAML,
			old: "- {exact: x-api-key}", new: "- {exact: x-api-kee}",
			expect: []string{"allowed_headers lacks x-api-key"}},
		{name: "HTTP: identity not copied upstream", file: httpEnvoyYAML,
			old: "- {exact: x-auth-scopes}", new: "- {exact: x-auth-scope}",
			expect: []string{"allowed_upstream_headers lacks x-auth-scopes"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			y := string(loadFile(t, tc.file))
			if tc.old != "" {
				changed := strings.Replace(y, tc.old, tc.new, 1)
				if changed == y {
					t.Fatalf("%q not found in %s", tc.old, tc.file)
				}
				y = changed
			}
			b, err := loadBootstrap([]byte(y))
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			want := envoyPorts(code)
			if tc.ports != nil {
				want = tc.ports(want)
			}
			_, got := checkEnvoy(b, want)
			if !problemsContain(got, tc.expect...) {
				t.Fatalf("no problem mentions %q; got:\n%s", tc.expect, strings.Join(got, "\n"))
			}
		})
	}
}
