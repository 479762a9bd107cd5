package authz_test

import (
	"github.com/extauthz/extauthz/authz/forwardauth"

	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// exchange writes raw on a new connection to the HTTP port at url and reads
// one response. The deadline only bounds a broken run.
func exchange(t *testing.T, url, raw, method string) *http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

// TestDoorDeclaredBodyNeverSent: nginx's auth_request subrequest inherits
// the client's Content-Length and, unless the configuration clears it,
// sends no body. The door answers at once (without the body it never
// reads) and closes the connection; it must not wait for the body and
// answer 408 after the read timeout.
func TestDoorDeclaredBodyNeverSent(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	agents, _ := e.mint(keyOpts{scopes: []string{"agents"}})
	nginx := "X-Original-Method: POST\r\nX-Original-URI: /api/v1/agents\r\nX-Api-Key: " + agents + "\r\nContent-Length: 100\r\n"
	for name, raw := range map[string]string{
		"HTTP/1.0, Connection: close (nginx's default)": "GET /auth HTTP/1.0\r\nHost: api\r\nConnection: close\r\n" + nginx + "\r\n",
		"HTTP/1.1 keep-alive (nginx with keepalive)":    "GET /auth HTTP/1.1\r\nHost: api\r\n" + nginx + "\r\n",
	} {
		resp := exchange(t, e.httpURL, raw, "GET")
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d; want 403 (agents may not POST agents), answered without the body", name, resp.StatusCode)
		}
		if !resp.Close {
			t.Errorf("%s: connection kept open after a request whose body was never read", name)
		}
	}
	// A body that does come is not read as the next request: the
	// connection closes after the answer.
	resp := exchange(t, e.httpURL, "GET /auth/api/v1/agents HTTP/1.1\r\nHost: api\r\nX-Api-Key: "+agents+"\r\nContent-Length: 35\r\n\r\nGET /auth/api/v1/agents HTTP/1.1\r\n\r\n", "GET")
	if resp.StatusCode != 200 || !resp.Close {
		t.Errorf("body sent: %d, close %v; want 200 and close", resp.StatusCode, resp.Close)
	}
}

// TestHTTPServerRecoversPanics: a handler that panics gets its request
// answered 500 and its connection closed; the server keeps serving.
func TestHTTPServerRecoversPanics(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	fa := forwardauth.New(e.a, nil, forwardauth.FamilyAuto)
	url := serveHTTP(t, fa.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("probe bug") })))
	resp := exchange(t, url, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 500 || !resp.Close || string(b) != `{"error":"internal error"}` {
		t.Errorf("panicking handler: %d close %v %q; want 500, close and the JSON error", resp.StatusCode, resp.Close, b)
	}
	if resp := exchange(t, url, "GET /auth/api/v1/agents HTTP/1.1\r\nHost: x\r\n\r\n", "GET"); resp.StatusCode != 401 {
		t.Errorf("door after a panic: %d; want 401", resp.StatusCode)
	}
}

// TestProbeBadTarget: a target net/http cannot parse, on a path other than
// the door's, is the client's error (400), not the server's.
func TestProbeBadTarget(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	resp := exchange(t, e.httpURL, "GET /healthz%zz HTTP/1.1\r\nHost: x\r\n\r\n", "GET")
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 400 || string(b) != `{"error":"bad request target"}` {
		t.Errorf("GET /healthz%%zz = %d %q; want 400 and the JSON error", resp.StatusCode, b)
	}
	if resp := exchange(t, e.httpURL, "GET /auth%zz HTTP/1.1\r\nHost: x\r\n\r\n", "GET"); resp.StatusCode != 400 {
		t.Errorf("GET /auth%%zz = %d; want 400", resp.StatusCode)
	}
}
