package authz_test

import (
	"context"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/authz"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/quota"
)

// quota429 is every header of a quota's 429 through each door, byte for
// byte; retry "" means no Retry-After.
func quota429(door, retry, policy, state string) map[string]string {
	h := map[string]string{
		"content-type":     "application/json",
		"ratelimit-policy": policy,
		"ratelimit":        state,
	}
	if retry != "" {
		h["retry-after"] = retry
	}
	if door == "forwardauth" {
		h["cache-control"] = "no-store"
	}
	return h
}

// TestQuotaBothDoors: a key with a quota of 5 on a process whose
// allowance is 3 gets 3 uses, each answer carrying the quota's remaining
// count, then a 429 naming the report interval in Retry-After; once its
// report is recorded and acknowledged at a revision the process has, the
// rest; then a 429 without Retry-After while the exhaustion is not
// replicated, and after it; a refill lets it through again. Every header
// of the 429s byte for byte.
func TestQuotaBothDoors(t *testing.T) {
	ledger := quota.New(quota.Options{Allowance: 3})
	e := newEnv(t, "nexgent.yaml", func(o *authz.Options) { o.Quota, o.QuotaRetryAfter = ledger, 10*time.Second })
	e.usePolicy(limitPolicy)
	for _, d := range doors {
		t.Run(d.name, func(t *testing.T) {
			raw, k := e.mint(keyOpts{scopes: []string{"read"}})
			five := int64(5)
			if _, err := e.store.SetKeyQuota(k.ID, &five, "test"); err != nil {
				t.Fatal(err)
			}
			hdr := map[string]string{"X-API-Key": raw}
			allowed := func(want string) {
				t.Helper()
				r := d.check(e, "GET", "/items", hdr)
				got := r.headers
				if d.name == "envoy" {
					got = r.client
				}
				if r.status != 200 || got["ratelimit"] != want || got["ratelimit-policy"] != `"quota";q=5` {
					t.Fatalf("%d %s: RateLimit %q, RateLimit-Policy %q; want 200 with %q", r.status, r.body, got["ratelimit"], got["ratelimit-policy"], want)
				}
			}
			denied := func(retry, state string) {
				t.Helper()
				r := d.check(e, "GET", "/items", hdr)
				if r.status != 429 || r.body != body429 {
					t.Fatalf("%d %s; want 429 %s", r.status, r.body, body429)
				}
				if d.name == "envoy" && r.code != codes.ResourceExhausted {
					t.Fatalf("gRPC status %v; want RESOURCE_EXHAUSTED", r.code)
				}
				if want := quota429(d.name, retry, `"quota";q=5`, state); !maps.Equal(r.headers, want) {
					t.Fatalf("429 headers\n%v\nwant\n%v", r.headers, want)
				}
			}
			report := func(n uint64) {
				t.Helper()
				batch := []keystore.Usage{{KeyID: k.ID, LastUsedAt: e.clock.Now(), Count: n}}
				if err := e.store.RecordUsage(batch); err != nil {
					t.Fatal(err)
				}
				ledger.Acked(batch, e.store.Revision())
			}
			allowed(`"quota";r=4`)
			allowed(`"quota";r=3`)
			allowed(`"quota";r=2`)
			denied("10", `"quota";r=2`) // the allowance is spent
			report(3)
			allowed(`"quota";r=1`)
			allowed(`"quota";r=0`)
			denied("", `"quota";r=0`) // spent, as this process counts
			report(2)
			denied("", `"quota";r=0`) // exhausted as replicated
			if _, err := e.store.SetKeyQuota(k.ID, &five, "operator"); err != nil {
				t.Fatal(err)
			}
			allowed(`"quota";r=4`)
		})
	}
}

// TestQuotaWithRateLimit: a key with both carries two items in each
// field; a request the rate limit refuses takes nothing from the quota.
func TestQuotaWithRateLimit(t *testing.T) {
	e := newEnv(t, "nexgent.yaml")
	e.usePolicy(limitPolicy)
	for _, d := range doors {
		raw, k := e.mintLimited(&keystore.RateLimit{Limit: 3, Duration: time.Minute})
		hundred := int64(100)
		if _, err := e.store.SetKeyQuota(k.ID, &hundred, "test"); err != nil {
			t.Fatal(err)
		}
		hdr := map[string]string{"X-API-Key": raw}
		for i, want := range []string{`"key";r=2;t=20, "quota";r=99`, `"key";r=1;t=40, "quota";r=98`, `"key";r=0;t=60, "quota";r=97`} {
			r := d.check(e, "GET", "/items", hdr)
			got := r.headers
			if d.name == "envoy" {
				got = r.client
			}
			if r.status != 200 || got["ratelimit"] != want || got["ratelimit-policy"] != `"key";q=3;w=60, "quota";q=100` {
				t.Fatalf("%s request %d: %d, RateLimit %q, RateLimit-Policy %q; want %q", d.name, i+1, r.status, got["ratelimit"], got["ratelimit-policy"], want)
			}
		}
		for range 2 {
			r := d.check(e, "GET", "/items", hdr)
			if want := quota429(d.name, "20", `"key";q=3;w=60, "quota";q=100`, `"key";r=0;t=60, "quota";r=97`); r.status != 429 || !maps.Equal(r.headers, want) {
				t.Fatalf("%s over the rate limit: %d\n%v\nwant\n%v", d.name, r.status, r.headers, want)
			}
		}
	}
}

// lagOnce is a KeyLookup whose next Revision, once armed, answers one
// less than the store's: a check that read the revision just before the
// quota ledger dropped entries settled at the store's.
type lagOnce struct {
	authz.KeyLookup
	armed atomic.Bool
}

func (l *lagOnce) Revision() uint64 {
	rev := l.KeyLookup.Revision()
	if l.armed.CompareAndSwap(true, false) {
		rev--
	}
	return rev
}

// TestQuotaRereadsAfterASweep: a quota'd key whose record was read before
// the ledger dropped settled entries (of any key) is decided again with
// the record read anew, not refused: the soak saw that 429 once.
func TestQuotaRereadsAfterASweep(t *testing.T) {
	var keys *lagOnce
	var ledger *quota.Ledger
	e := newEnv(t, "nexgent.yaml", func(o *authz.Options) {
		keys = &lagOnce{KeyLookup: o.Keys}
		ledger = quota.New(quota.Options{Allowance: 3, Revision: keys.KeyLookup.Revision})
		o.Keys, o.Quota = keys, ledger
	})
	e.usePolicy(limitPolicy)
	ten := int64(10)
	rawA, a := e.mint(keyOpts{scopes: []string{"read"}})
	rawB, b := e.mint(keyOpts{scopes: []string{"read"}})
	for _, id := range []string{a.ID, b.ID} {
		if _, err := e.store.SetKeyQuota(id, &ten, "test"); err != nil {
			t.Fatal(err)
		}
	}
	check := func(raw string) authz.Decision {
		return e.a.Check(context.Background(), &authz.Request{Frontend: "test", Method: "GET", Path: "/items", APIKey: []string{raw}})
	}
	if d := check(rawA); d.Kind != authz.Allow {
		t.Fatalf("first use of a: %s", d.Reason)
	}
	batch := []keystore.Usage{{KeyID: a.ID, LastUsedAt: e.clock.Now(), Count: 1}}
	if err := e.store.RecordUsage(batch); err != nil {
		t.Fatal(err)
	}
	ledger.Acked(batch, e.store.Revision()) // settles a: its entry is dropped
	if ledger.Len() != 0 {
		t.Fatalf("%d ledger entries after a's acknowledged report; want 0", ledger.Len())
	}
	keys.armed.Store(true)
	if d := check(rawB); d.Kind != authz.Allow {
		t.Fatalf("b, read at the revision before the sweep: %v %s; want allowed", d.Kind, d.Reason)
	}
	if keys.armed.Load() {
		t.Fatal("the lagging revision was never read")
	}
}
