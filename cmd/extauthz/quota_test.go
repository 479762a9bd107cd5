package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// quotaAllowance is the sidecars' --quota-allowance in TestQuotaOverTwoSidecars.
const quotaAllowance = 50

// TestQuotaOverTwoSidecars: a key with a quota of 1,000 under concurrent
// load through two sidecar processes is allowed from 1,000 to 1,000 + 2 ×
// the allowance times in total (the bound of docs/ratelimits.md), is then
// denied on both, and the admin shows it exhausted; a refill through the
// CLI lets it through both again. The CLI sets, reads back and refuses
// usage limits.
func TestQuotaOverTwoSidecars(t *testing.T) {
	c := newCluster(t, 2, "--quota-allowance", fmt.Sprint(quotaAllowance))
	cli := &cliHarness{t: t, env: map[string]string{"EXTAUTHZ_ADMIN_URL": c.adminURL(), "EXTAUTHZ_ADMIN_TOKEN": c.token, "EXTAUTHZ_OUTPUT": "json"}}
	r := cli.keys("create", "--name", "metered", "--scopes", "signals", "--usage-limit", "1000")
	var k struct {
		createdKey
		UsageLimit struct{ Limit, Remaining int64 } `json:"usageLimit"`
	}
	if r.err != nil || json.Unmarshal([]byte(r.stdout), &k) != nil || k.UsageLimit.Limit != 1000 || k.UsageLimit.Remaining != 1000 {
		t.Fatalf("keys create --usage-limit 1000: %v %s %s", r.err, r.stdout, r.stderr)
	}
	for _, bad := range []string{"0", "-1", "1.5", "lots", "1000000000001"} {
		if r := cli.keys("create", "--name", "bad", "--scopes", "signals", "--usage-limit", bad); !errors.Is(r.err, errUsage) || !strings.Contains(r.stderr, "--usage-limit: ") {
			t.Fatalf("--usage-limit %s: %v %s", bad, r.err, r.stderr)
		}
	}
	c.sync("quota created")

	var allowed, denied atomic.Int64
	var wg sync.WaitGroup
	for _, s := range c.sidecars {
		for range 6 {
			wg.Go(func() {
				for {
					code, h := limitCheck(t, s.url("http"), k.Key)
					switch {
					case code == 200:
						allowed.Add(1)
						continue
					case code != 429 || h.Get("RateLimit-Policy") != `"quota";q=1000`:
						t.Errorf("%d %v; want 200 or the quota's 429", code, h)
						return
					}
					denied.Add(1)
					if h.Get("Retry-After") == "" {
						return // exhausted: no wait helps
					}
				}
			})
		}
	}
	wg.Wait()
	n := allowed.Load()
	t.Logf("quota 1000, 2 sidecars, allowance %d: %d allowed (overshoot %d), %d denied on the way", quotaAllowance, n, n-1000, denied.Load())
	if n < 1000 || n > 1000+2*quotaAllowance {
		t.Fatalf("allowed %d; want from 1000 to %d", n, 1000+2*quotaAllowance)
	}
	c.expect("exhausted", k.Key, "POST", "/api/v1/trading-signals", 429)
	eventually(t, "the admin shows the quota exhausted", func() bool {
		r := cli.keys("get", k.ID)
		var got struct {
			UsageLimit struct{ Limit, Remaining int64 } `json:"usageLimit"`
		}
		return r.err == nil && json.Unmarshal([]byte(r.stdout), &got) == nil && got.UsageLimit.Limit == 1000 && got.UsageLimit.Remaining == 0
	})
	// A refill larger than the uses that may still be reported: those a
	// sidecar allowed last are charged to it when their report arrives.
	if r := cli.keys("update", k.ID, "--usage-limit", "500"); r.err != nil || !strings.Contains(r.stdout, `"remaining": 500`) {
		t.Fatalf("keys update --usage-limit 500: %v %s %s", r.err, r.stdout, r.stderr)
	}
	c.expect("refilled", k.Key, "POST", "/api/v1/trading-signals", 200)
	if r := cli.keys("update", k.ID, "--usage-limit", "none"); r.err != nil || strings.Contains(r.stdout, "usageLimit") {
		t.Fatalf("keys update --usage-limit none: %v %s %s", r.err, r.stdout, r.stderr)
	}
	if r := cli.keys("update", k.ID, "--usage-limit", "0"); !errors.Is(r.err, errUsage) || !strings.Contains(r.stderr, "--usage-limit: must be an integer from 1") {
		t.Fatalf("keys update --usage-limit 0: %v %s", r.err, r.stderr)
	}
}
