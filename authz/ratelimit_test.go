package authz_test

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// limitPolicy mints Nexgent-format keys; /search costs 2, /free nothing.
const limitPolicy = `
keys: {formats: [{prefix: nex_, charset: alphanumeric, length: 32}]}
scopes: [read]
routes:
  - {methods: [GET], path: /search, require: read, cost: 2}
  - {methods: [GET], path: /free, require: read, cost: 0}
  - {path: "/**", require: read}
messages: {rateLimited: "Slow down, \"friend\""}
`

func (e *env) usePolicy(yaml string) {
	e.t.Helper()
	p, err := policy.Parse([]byte(yaml))
	if err != nil {
		e.t.Fatal(err)
	}
	e.pol = p
	e.a.SetPolicy(p)
}

func (e *env) mintLimited(l *keystore.RateLimit) (string, *keystore.Key) {
	e.t.Helper()
	raw, k := e.mint(keyOpts{scopes: []string{"read"}})
	if l != nil {
		var err error
		if k, err = e.store.SetKeyRateLimit(k.ID, l, "test"); err != nil {
			e.t.Fatal(err)
		}
	}
	return raw, k
}

// denied429 is every header of a 429 through each door, byte for byte.
func denied429(door, retry, state string) map[string]string {
	h := map[string]string{
		"content-type":     "application/json",
		"retry-after":      retry,
		"ratelimit-policy": `"key";q=3;w=60`,
		"ratelimit":        state,
	}
	if door == "forwardauth" {
		h["cache-control"] = "no-store"
	}
	return h
}

const body429 = `{"error":"Slow down, \"friend\""}`

// TestRateLimitBothDoors: a key limited to 3 per minute gets exactly 3,
// each allowed answer carrying its bucket's state, then a 429 with every
// header byte for byte; a token comes back every 20 s.
func TestRateLimitBothDoors(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			raw, k := e.mintLimited(&keystore.RateLimit{Limit: 3, Duration: time.Minute})
			hdr := map[string]string{"X-API-Key": raw}
			for i, want := range []string{`"key";r=2;t=20`, `"key";r=1;t=40`, `"key";r=0;t=60`} {
				r := d.check(e, "GET", "/items", hdr)
				if r.status != 200 || r.headers["x-auth-key-id"] != k.ID {
					t.Fatalf("request %d: %d %s", i+1, r.status, r.body)
				}
				got := r.headers
				if d.name == "envoy" {
					got = r.client
				}
				if got["ratelimit"] != want || got["ratelimit-policy"] != `"key";q=3;w=60` {
					t.Fatalf("request %d: RateLimit %q, RateLimit-Policy %q; want %q", i+1, got["ratelimit"], got["ratelimit-policy"], want)
				}
			}
			check429 := func(retry, state string) {
				t.Helper()
				r := d.check(e, "GET", "/items", hdr)
				if r.status != 429 || r.body != body429 {
					t.Fatalf("over the limit: %d %s; want 429 %s", r.status, r.body, body429)
				}
				if d.name == "envoy" && r.code != codes.ResourceExhausted {
					t.Fatalf("gRPC status %v; want RESOURCE_EXHAUSTED", r.code)
				}
				if want := denied429(d.name, retry, state); !maps.Equal(r.headers, want) {
					t.Fatalf("429 headers\n%v\nwant\n%v", r.headers, want)
				}
			}
			check429("20", `"key";r=0;t=60`)
			e.clock.Add(20 * time.Second)
			if r := d.check(e, "GET", "/items", hdr); r.status != 200 {
				t.Fatalf("20 s later: %d %s", r.status, r.body)
			}
			e.clock.Add(19*time.Second + 500*time.Millisecond)
			check429("1", `"key";r=0;t=41`)
			e.clock.Add(time.Second)
			if r := d.check(e, "GET", "/items", hdr); r.status != 200 {
				t.Fatalf("20 s after the last: %d %s", r.status, r.body)
			}
			e.clock.Add(time.Minute) // full again: exactly 3 more
			for i := range 3 {
				if r := d.check(e, "GET", "/items", hdr); r.status != 200 {
					t.Fatalf("after refill, request %d: %d", i+1, r.status)
				}
			}
			check429("20", `"key";r=0;t=60`)
		})
	}
}

// TestRateLimitCostDefaultAndHeaders: the route's cost is what a request
// takes; keys without a limit take the policy's default; headers: false
// keeps the RateLimit fields off both allowed answers and 429s, but not
// Retry-After; a key without any limit gets none of it.
func TestRateLimitCostDefaultAndHeaders(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	for _, d := range doors {
		raw, _ := e.mintLimited(&keystore.RateLimit{Limit: 3, Duration: time.Minute})
		hdr := map[string]string{"X-API-Key": raw}
		if r := d.check(e, "GET", "/search", hdr); r.status != 200 {
			t.Fatalf("%s: first search: %d", d.name, r.status)
		}
		if r := d.check(e, "GET", "/search", hdr); r.status != 429 || r.headers["ratelimit"] != `"key";r=1;t=40` {
			t.Fatalf("%s: second search (cost 2, 1 left): %d %v", d.name, r.status, r.headers)
		}
		for range 5 {
			if r := d.check(e, "GET", "/free", hdr); r.status != 200 {
				t.Fatalf("%s: a cost-0 route refused: %d", d.name, r.status)
			}
		}
		if r := d.check(e, "GET", "/items", hdr); r.status != 200 {
			t.Fatalf("%s: the last token: %d", d.name, r.status)
		}

		unlimited, _ := e.mintLimited(nil)
		for range 10 {
			r := d.check(e, "GET", "/items", map[string]string{"X-API-Key": unlimited})
			if r.status != 200 || r.headers["ratelimit"] != "" || len(r.client) != 0 || r.limit != nil {
				t.Fatalf("%s: a key without a limit: %d %v %v %v", d.name, r.status, r.headers, r.client, r.limit)
			}
		}
	}

	e.usePolicy(limitPolicy + "rateLimits: {default: {limit: 2, duration: 1s}, headers: false}\n")
	for _, d := range doors {
		raw, _ := e.mintLimited(nil)
		hdr := map[string]string{"X-API-Key": raw}
		for range 2 {
			r := d.check(e, "GET", "/items", hdr)
			if r.status != 200 || r.headers["ratelimit"] != "" || len(r.client) != 0 {
				t.Fatalf("%s: headers: false, allowed: %d %v %v", d.name, r.status, r.headers, r.client)
			}
			if d.name == "envoy" && (r.limit["requests_per_unit"] != 2.0 || r.limit["unit"] != "SECOND") {
				t.Fatalf("envoy rate_limit metadata %v; want {requests_per_unit: 2, unit: SECOND}", r.limit)
			}
		}
		r := d.check(e, "GET", "/items", hdr)
		want := map[string]string{"content-type": "application/json", "retry-after": "1"}
		if d.name == "forwardauth" {
			want["cache-control"] = "no-store"
		}
		if r.status != 429 || !maps.Equal(r.headers, want) {
			t.Fatalf("%s: headers: false, 429: %d %v; want %v", d.name, r.status, r.headers, want)
		}
	}
}

// TestRateLimitMetadata: Envoy's dynamic metadata carries a limit of one
// unit as {requests_per_unit, unit} beside key_id, and none for others.
func TestRateLimitMetadata(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	for l, want := range map[keystore.RateLimit]map[string]any{
		{Limit: 100, Duration: time.Minute}:    {"requests_per_unit": 100.0, "unit": "MINUTE"},
		{Limit: 5, Duration: time.Hour}:        {"requests_per_unit": 5.0, "unit": "HOUR"},
		{Limit: 9, Duration: 24 * time.Hour}:   {"requests_per_unit": 9.0, "unit": "DAY"},
		{Limit: 9, Duration: 10 * time.Second}: nil,
	} {
		raw, k := e.mintLimited(&l)
		r := e.viaEnvoy("GET", "/items", map[string]string{"X-API-Key": raw})
		if r.status != 200 || r.meta["key_id"] != k.ID || !maps.Equal(r.limit, want) {
			t.Errorf("%v: %d key_id %q rate_limit %v; want %v", l, r.status, r.meta["key_id"], r.limit, want)
		}
	}
}

// TestRateLimitConcurrentCallers: concurrent requests through both doors
// at one instant get exactly the limit, no token lost or given twice.
func TestRateLimitConcurrentCallers(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	raw, _ := e.mintLimited(&keystore.RateLimit{Limit: 50, Duration: time.Hour})
	hdr := map[string]string{"X-API-Key": raw}
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for range 10 {
				switch doors[g%2].check(e, "GET", "/items", hdr).status {
				case 200:
					ok.Add(1)
				case 429:
					limited.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 50 || limited.Load() != 110 {
		t.Fatalf("%d allowed, %d limited of 160; want exactly 50 and 110", ok.Load(), limited.Load())
	}
}

// TestChangedLimitAppliesToNextRequest: a new limit on the record (a new
// store revision) is what the very next check enforces.
func TestChangedLimitAppliesToNextRequest(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	for _, d := range doors {
		raw, k := e.mintLimited(&keystore.RateLimit{Limit: 1, Duration: time.Hour})
		hdr := map[string]string{"X-API-Key": raw}
		d.check(e, "GET", "/items", hdr)
		if r := d.check(e, "GET", "/items", hdr); r.status != 429 {
			t.Fatalf("%s: over 1/1h: %d", d.name, r.status)
		}
		if _, err := e.store.SetKeyRateLimit(k.ID, &keystore.RateLimit{Limit: 3, Duration: time.Hour}, "test"); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if r := d.check(e, "GET", "/items", hdr); r.status != 200 || (d.name == "envoy" && r.limit["requests_per_unit"] != 3.0) {
				t.Fatalf("%s: raised to 3/1h, request %d: %d %v", d.name, i+1, r.status, r.limit)
			}
		}
		if r := d.check(e, "GET", "/items", hdr); r.status != 429 {
			t.Fatalf("%s: 4th under 3/1h: %d", d.name, r.status)
		}
		if _, err := e.store.SetKeyRateLimit(k.ID, nil, "test"); err != nil {
			t.Fatal(err)
		}
		if r := d.check(e, "GET", "/items", hdr); r.status != 200 || r.headers["ratelimit"] != "" || len(r.client) != 0 {
			t.Fatalf("%s: limit removed: %d %v", d.name, r.status, r.client)
		}
	}
	_ = fmt.Sprint
}
