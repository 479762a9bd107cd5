package authz_test

import (
	"github.com/extauthz/extauthz/authz/forwardauth"

	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
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
			req, _ := http.NewRequest(c.method, e.httpURL+c.target, nil)
			req.Header.Set("X-API-Key", agents)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			if got := e.do(req); got.status != c.status {
				t.Errorf("%s %s = %d %s; want %d", c.method, c.target, got.status, got.body, c.status)
			}
		})
	}

	// Envoy's HTTP mode sends /auth//x for a client's //x (when the
	// listener does not merge slashes) and takes any answer but 200 as a
	// denial: the door must decide it (an empty segment is ambiguous, as
	// through the gRPC door), not redirect as a ServeMux would.
	t.Run("door paths are not routed through a mux", func(t *testing.T) {
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		for target, want := range map[string]int{"/auth//api/v1/agents": 400, "/auth/api/v1//agent-balances": 400, "/auth/api/v1/agents": 200, "/authx": 404} {
			req, _ := http.NewRequest("GET", e.httpURL+target, nil)
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

	// What net/http's client never sends: lower-case names (nginx passes
	// them as the client wrote them), two requests pipelined on one
	// connection, HEAD, and a body, which the door does not read.
	t.Run("raw HTTP/1.1", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.httpURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		body := strings.Repeat("b", 300<<10) // past what the server prefetches and drains
		reqs := "GET /auth HTTP/1.1\r\nhost: api\r\nx-api-key: " + agents + "\r\nx-forwarded-method: GET\r\nx-forwarded-uri: /api/v1/agents\r\n\r\n" +
			"HEAD /auth/api/v1/agent-balances HTTP/1.1\r\nHost: api\r\nX-API-KEY: " + agents + "\r\n\r\n" +
			"POST /auth/api/v1/agents HTTP/1.1\r\nHost: api\r\nX-Api-Key: " + agents + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		go func() { _, _ = io.WriteString(conn, reqs) }()
		br := bufio.NewReader(conn)
		for _, want := range []struct {
			method string
			status int
			keyID  bool
		}{{"GET", 200, true}, {"HEAD", 403, false}, {"POST", 403, false}} {
			resp, err := http.ReadResponse(br, &http.Request{Method: want.method})
			if err != nil {
				t.Fatalf("%s: %v", want.method, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != want.status || (resp.Header.Get("X-Auth-Key-Id") != "") != want.keyID {
				t.Errorf("%s = %d %v %s; want %d, identity %v", want.method, resp.StatusCode, resp.Header, b, want.status, want.keyID)
			}
			if want.method == "HEAD" && len(b) != 0 {
				t.Errorf("HEAD answered with a body: %q", b)
			}
		}
	})

	t.Run("untrusted peer's forwarded headers are refused", func(t *testing.T) {
		none, err := forwardauth.ParseTrustedProxies([]string{"none"})
		if err != nil {
			t.Fatal(err)
		}
		url := serveHTTP(t, forwardauth.New(e.a, none, forwardauth.FamilyAuto).Handler(http.NotFoundHandler()))
		req, _ := http.NewRequest("GET", url+"/auth/api/v1/agent-balances", nil)
		req.Header.Set("X-API-Key", agents)
		req.Header.Set("X-Forwarded-Uri", "/api/v1/agents") // a spoof attempt
		if got := e.do(req); got.status != 400 || got.body != `{"error":"ambiguous forwarded request"}` {
			t.Errorf("spoofed X-Forwarded-Uri from an untrusted peer: %d %s; want 400 ambiguous forwarded request", got.status, got.body)
		}
		req, _ = http.NewRequest("GET", url+"/auth/api/v1/agents", nil)
		req.Header.Set("X-API-Key", agents)
		if got := e.do(req); got.status != 200 {
			t.Errorf("Envoy HTTP form from an untrusted peer: status %d; want 200 (its own path)", got.status)
		}
	})
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "not-an-ip", "1.2.3.4/x"} {
		if _, err := forwardauth.ParseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil error; want error", bad)
		}
	}
	p, err := forwardauth.ParseTrustedProxies(append([]string{"192.0.2.7"}, forwardauth.DefaultTrustedProxies...))
	if err != nil || len(p) != len(forwardauth.DefaultTrustedProxies)+1 {
		t.Fatalf("ParseTrustedProxies = %v, %v", p, err)
	}
}
