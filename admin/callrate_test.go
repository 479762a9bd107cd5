package admin

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// The clock of these tests is the env's fake clock: buckets refill only
// when the test advances it.

func TestRateLimitPublicProjectCreate(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, publicCreate: true, publicCreateRate: Rate{N: 3, Per: time.Minute}})
	for i := range 3 {
		e.createProject("", fmt.Sprintf("p%d", i))
	}
	r := e.expect(e.request("POST", "/api/v1/projects", "", map[string]any{"name": "p3"}), http.StatusTooManyRequests, "fourth anonymous create")
	if got := r.header.Get("Retry-After"); got != "20" {
		t.Errorf("Retry-After = %q; want 20 (one token per 20 s)", got)
	}
	if msg := r.errorMessage(t); msg == "" {
		t.Error("429 without a message")
	}
	// The refused creation made nothing: three projects' keys exist.
	if st, err := e.store.Stats(e.clock.Now()); err != nil || st.Active != 3 {
		t.Errorf("store holds %+v, %v after a refused creation; want 3 active keys", st, err)
	}
	// The operator is not an anonymous caller and has no limit by default.
	e.createProject(testAdminToken, "by-operator")
	e.clock.Add(19 * time.Second)
	e.expect(e.request("POST", "/api/v1/projects", "", map[string]any{"name": "p3"}), http.StatusTooManyRequests, "create before the token is back")
	e.clock.Add(time.Second)
	e.createProject("", "p3")
}

// TestRateLimitProjectCreateWithAKey: the first key of an anonymous
// project does not lift the per-source limit on creating projects.
func TestRateLimitProjectCreateWithAKey(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, publicCreate: true, principalRate: Rate{N: 100, Per: time.Second}, publicCreateRate: Rate{N: 2, Per: time.Minute}})
	_, _, key := e.createProject("", "first")
	e.createProject(key, "second, with the first one's key")
	e.expect(e.request("POST", "/api/v1/projects", key, map[string]any{"name": "third"}), http.StatusTooManyRequests, "third creation from the same address, with a key")
	e.expect(e.request("POST", "/api/v1/projects", e.userToken("alice"), map[string]any{"name": "third"}), http.StatusTooManyRequests, "third creation from the same address, as a user")
	e.createProject(testAdminToken, "by the operator")
}

func TestRateLimitPerPrincipal(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, principalRate: Rate{N: 2, Per: time.Second}})
	pidA, _, keyA := e.createProject(testAdminToken, "A")
	pidB, _, keyB := e.createProject(testAdminToken, "B")
	list := func(pid, key string) response {
		return e.request("GET", "/api/v1/projects/"+pid+"/api-keys", key, nil)
	}
	e.expect(list(pidA, keyA), http.StatusOK, "A 1")
	e.expect(list(pidA, keyA), http.StatusOK, "A 2")
	r := e.expect(list(pidA, keyA), http.StatusTooManyRequests, "A 3")
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q; want 1", got)
	}
	// Another key has its own bucket; the operator has none.
	e.expect(list(pidB, keyB), http.StatusOK, "B while A is limited")
	for i := range 5 {
		e.expect(list(pidA, testAdminToken), http.StatusOK, fmt.Sprintf("operator %d", i))
	}
	e.clock.Add(500 * time.Millisecond)
	e.expect(list(pidA, keyA), http.StatusOK, "A after half a second")
	e.expect(list(pidA, keyA), http.StatusTooManyRequests, "A again")
	// A refused request still authenticates first: a wrong key is a 401,
	// never a 429 that would tell which keys exist.
	e.expect(list(pidA, "nxg_"+fmt.Sprintf("%064d", 0)), http.StatusUnauthorized, "unknown key")
}

func TestRateLimitUserAndOperator(t *testing.T) {
	e := newEnv(t, envConfig{principalRate: Rate{N: 1, Per: time.Minute}, operatorRate: Rate{N: 2, Per: time.Minute}})
	alice := e.userToken("alice")
	e.expect(e.request("GET", "/api/v1/api-keys", alice, nil), http.StatusOK, "alice 1")
	e.expect(e.request("GET", "/api/v1/api-keys", alice, nil), http.StatusTooManyRequests, "alice 2")
	e.expect(e.request("GET", "/api/v1/api-keys", e.userToken("bob"), nil), http.StatusOK, "bob 1")
	e.expect(e.request("GET", "/api/v1/audit", testAdminToken, nil), http.StatusOK, "operator 1")
	e.expect(e.request("GET", "/api/v1/audit", testAdminToken, nil), http.StatusOK, "operator 2")
	r := e.expect(e.request("GET", "/api/v1/audit", testAdminToken, nil), http.StatusTooManyRequests, "operator 3")
	if got := r.header.Get("Retry-After"); got != "30" {
		t.Errorf("Retry-After = %q; want 30", got)
	}
}

func TestLimitersBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLimiters(Rate{N: 1, Per: time.Second}, 2)
	for _, k := range []string{"a", "b"} {
		if ok, _ := l.allow(k, now); !ok {
			t.Fatalf("%s: first call refused", k)
		}
	}
	// The map is full of busy keys: new keys share the overflow bucket.
	if ok, _ := l.allow("c", now); !ok {
		t.Fatal("c: the overflow bucket's first call refused")
	}
	if ok, _ := l.allow("d", now); ok {
		t.Fatal("d: shares c's overflow bucket and must be refused")
	}
	if n := l.size(); n != 2 {
		t.Fatalf("size = %d; want 2", n)
	}
	// Once a and b are idle long enough to be full again, they are
	// forgotten and new keys get buckets of their own.
	now = now.Add(time.Second)
	if ok, _ := l.allow("d", now); !ok {
		t.Fatal("d after the sweep refused")
	}
	if ok, _ := l.allow("e", now); !ok {
		t.Fatal("e after the sweep refused")
	}
	if n := l.size(); n != 2 {
		t.Fatalf("size = %d; want 2 (d and e)", n)
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"0", Rate{}, true},
		{"20/1s", Rate{20, time.Second}, true},
		{"10/1m", Rate{10, time.Minute}, true},
		{"20", Rate{}, false},
		{"0/1s", Rate{}, false},
		{"-1/1s", Rate{}, false},
		{"5/0s", Rate{}, false},
		{"5/x", Rate{}, false},
	} {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if tc.ok {
			if back, err := ParseRate(got.String()); err != nil || back != got {
				t.Errorf("ParseRate(%q.String()=%q) = %v, %v", tc.in, got.String(), back, err)
			}
		}
	}
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:4242":             "192.0.2.7",
		"[::ffff:192.0.2.7]:1":       "192.0.2.7",
		"[2001:db8:1:2:3:4:5:6]:443": "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff::1]:443": "2001:db8:1:2::/64",
		"[fe80::1%eth0]:80":          "fe80::/64",
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q; want %q", in, got, want)
		}
	}
}
