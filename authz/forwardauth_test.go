package authz

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestForwardAuthModes: Traefik, nginx auth_request and Envoy's HTTP mode
// all reach the same decision; /auth answers every method and sub-path.
func TestForwardAuthModes(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	agents, _ := e.mint(keyOpts{scopes: []string{"agents"}})
	type tc struct {
		name   string
		method string
		target string
		hdr    map[string]string
		status int
	}
	cases := []tc{
		{"traefik allowed", "GET", "/auth", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/api/v1/agents?page=2"}, 200},
		{"traefik denied by method", "GET", "/auth", map[string]string{"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/api/v1/agents"}, 403},
		{"nginx allowed", "GET", "/auth", map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/agents/12"}, 200},
		{"nginx denied", "GET", "/auth", map[string]string{"X-Original-Method": "GET", "X-Original-URI": "/api/v1/agent-balances"}, 403},
		{"envoy http mode allowed", "GET", "/auth/api/v1/agents?x=1", nil, 200},
		{"envoy http mode keeps the method", "PATCH", "/auth/api/v1/agents", nil, 403},
		{"envoy http mode any method", "OPTIONS", "/auth/api/v1/agent-positions", nil, 403},
		{"envoy http mode ambiguous path", "GET", "/auth/api/v1/agents%2fx", nil, 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, e.http.URL+c.target, nil)
			req.Header.Set("X-API-Key", agents)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			if got := e.do(req); got.status != c.status {
				t.Errorf("%s %s = %d %s; want %d", c.method, c.target, got.status, got.body, c.status)
			}
		})
	}

	// Envoy's HTTP mode sends /auth//x for a client's //x and takes any
	// answer but 200 as a denial: the door must decide it (merging the
	// slashes as the gRPC door does), not redirect as a ServeMux would.
	t.Run("door paths are not routed through a mux", func(t *testing.T) {
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for target, want := range map[string]int{"/auth//api/v1/agents": 200, "/auth/api/v1//agent-balances": 403, "/authx": 404} {
			req, _ := http.NewRequest("GET", e.http.URL+target, nil)
			req.Header.Set("X-API-Key", agents)
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s = %d; want %d", target, resp.StatusCode, want)
			}
		}
	})

	t.Run("untrusted peer's forwarded headers are ignored", func(t *testing.T) {
		none, err := ParseTrustedProxies([]string{"none"})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(NewForwardAuth(e.a, none))
		defer srv.Close()
		req, _ := http.NewRequest("GET", srv.URL+"/auth/api/v1/agent-balances", nil)
		req.Header.Set("X-API-Key", agents)
		req.Header.Set("X-Forwarded-Uri", "/api/v1/agents") // a spoof attempt
		if got := e.do(req); got.status != 403 {
			t.Errorf("spoofed X-Forwarded-Uri from an untrusted peer: status %d; want 403 (own path used)", got.status)
		}
	})
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "1.2.3.4/x"} {
		if _, err := ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil error; want error", bad)
		}
	}
	p, err := ParseTrustedProxies(append([]string{"192.0.2.7"}, DefaultTrustedProxies...))
	if err != nil || len(p) != len(DefaultTrustedProxies)+1 {
		t.Fatalf("ParseTrustedProxies = %v, %v", p, err)
	}
}
