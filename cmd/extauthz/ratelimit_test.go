package main

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// limitCheck asks a sidecar's HTTP door as Traefik would and returns the
// status and the rate-limit headers.
func limitCheck(t *testing.T, base, key string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", "POST")
	req.Header.Set("X-Forwarded-Uri", "/api/v1/trading-signals")
	req.Header.Set("X-API-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header
}

// expectBudget checks that every sidecar allows key exactly n more times
// and then answers 429 with Retry-After and the RateLimit fields of limit
// q per window w.
func (c *cluster) expectBudget(what, key string, n int, policy string) {
	c.t.Helper()
	for i, s := range c.sidecars {
		for j := range n {
			if code, h := limitCheck(c.t, s.url("http"), key); code != 200 || h.Get("RateLimit-Policy") != policy {
				c.t.Fatalf("sidecar %d, %s: request %d of %d: %d, RateLimit-Policy %q; want 200 and %q", i, what, j+1, n, code, h.Get("RateLimit-Policy"), policy)
			}
		}
		code, h := limitCheck(c.t, s.url("http"), key)
		if code != 429 || h.Get("Retry-After") == "" || h.Get("RateLimit-Policy") != policy || !strings.HasPrefix(h.Get("RateLimit"), `"key";r=0;t=`) {
			c.t.Fatalf("sidecar %d, %s: after %d: %d %v; want 429 with Retry-After and RateLimit fields", i, what, n, code, h)
		}
	}
}

// sync creates an unlimited key and waits until every sidecar admits it:
// replication is in order, so every earlier change is in force then, and
// no limited key's tokens were spent waiting.
func (c *cluster) sync(what string) {
	c.t.Helper()
	k := c.create(map[string]any{"name": "sentinel", "scopes": []string{"signals"}})
	c.expect(what, k.Key, "POST", "/api/v1/trading-signals", 200)
}

// TestRateLimitsReplicate: limits set through the Nexgent dialect, the
// NexGraph dialect and the CLI reach two sidecar processes over
// replication and are enforced there, each sidecar with its own bucket;
// changed limits apply to the next request, without a restart.
func TestRateLimitsReplicate(t *testing.T) {
	c := newCluster(t, 2)
	cli := &cliHarness{t: t, env: map[string]string{"EXTAUTHZ_ADMIN_URL": c.adminURL(), "EXTAUTHZ_ADMIN_TOKEN": c.token, "EXTAUTHZ_OUTPUT": "json"}}

	nex := c.create(map[string]any{"name": "nexgent", "scopes": []string{"signals"}, "rateLimit": map[string]any{"limit": 2, "duration": "1d"}})

	r := cli.keys("create", "--name", "cli", "--scopes", "signals", "--rate-limit", "3/1d")
	var viaCLI createdKey
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &viaCLI) != nil {
		t.Fatalf("keys create --rate-limit: %v %s %s", r.err, r.stdout, r.stderr)
	}
	if r := cli.keys("create", "--name", "bad", "--scopes", "signals", "--rate-limit", "0/1m"); !errors.Is(r.err, errUsage) || !strings.Contains(r.stderr, "limit: must be an integer from 1") {
		t.Fatalf("--rate-limit 0/1m: %v %s", r.err, r.stderr)
	}

	var project struct {
		Project struct{ ID string }  `json:"project"`
		APIKey  struct{ Key string } `json:"api_key"`
	}
	if code := httpJSON(t, "POST", c.adminURL()+"/api/v1/projects", c.token, map[string]any{"name": "acme"}, &project); code != 201 {
		t.Fatalf("create project: %d", code)
	}
	var graph struct{ ID, Key string }
	keysURL := c.adminURL() + "/api/v1/projects/" + project.Project.ID + "/api-keys"
	if code := httpJSON(t, "POST", keysURL, project.APIKey.Key, map[string]any{"permissions": []string{"signals"}, "label": "ci", "rate_limit": map[string]any{"limit": 1, "duration": "1d"}}, &graph); code != 201 {
		t.Fatalf("create project key: %d", code)
	}
	var refused map[string]string
	if code := httpJSON(t, "POST", keysURL, project.APIKey.Key, map[string]any{"permissions": []string{"signals"}, "label": "x", "rate_limit": map[string]any{"limit": 5, "duration": "48h"}}, &refused); code != 400 || !strings.HasPrefix(refused["error"], "rate_limit.duration:") {
		t.Fatalf("48h: %d %v", code, refused)
	}

	c.sync("limits created")
	c.expectBudget("nexgent 2/1d", nex.Key, 2, `"key";q=2;w=86400`)
	c.expectBudget("cli 3/1d", viaCLI.Key, 3, `"key";q=3;w=86400`)
	c.expectBudget("nexgraph 1/1d", graph.Key, 1, `"key";q=1;w=86400`)

	// Change every limit, each through another way in.
	if r := cli.keys("update", nex.ID, "--rate-limit", "5/1d"); r.err != nil {
		t.Fatalf("keys update: %v %s", r.err, r.stderr)
	}
	// A project key may not lift its project's limits; the operator may,
	// through the NexGraph route too.
	if code := httpJSON(t, "PATCH", keysURL+"/"+graph.ID, project.APIKey.Key, map[string]any{"rate_limit": map[string]any{"limit": 3, "duration": "1d"}}, nil); code != 403 {
		t.Fatalf("nexgraph PATCH raising the limit with a project key: %d; want 403", code)
	}
	if code := httpJSON(t, "PATCH", keysURL+"/"+graph.ID, c.token, map[string]any{"rate_limit": map[string]any{"limit": 3, "duration": "1d"}}, nil); code != 200 {
		t.Fatalf("nexgraph PATCH: %d", code)
	}
	if code := httpJSON(t, "PATCH", c.adminURL()+"/api/v1/api-keys/"+viaCLI.ID, c.token, map[string]any{"rateLimit": nil}, nil); code != 200 {
		t.Fatalf("operator PATCH null: %d", code)
	}
	c.sync("limits changed")
	// The tokens already used count against the new limit.
	c.expectBudget("nexgent raised to 5/1d", nex.Key, 3, `"key";q=5;w=86400`)
	c.expectBudget("nexgraph raised to 3/1d", graph.Key, 2, `"key";q=3;w=86400`)
	for i, s := range c.sidecars {
		for j := range 10 {
			if code, h := limitCheck(t, s.url("http"), viaCLI.Key); code != 200 || h.Get("RateLimit") != "" {
				t.Fatalf("sidecar %d: limit removed, request %d: %d %v", i, j+1, code, h)
			}
		}
	}
}
