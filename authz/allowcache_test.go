package authz

import (
	"fmt"
	"testing"

	"github.com/extauthz/extauthz/keystore"
)

// revKeys is a KeyLookup with a settable revision, for the cache reset.
type revKeys struct {
	emptyStore
	rev uint64
}

func (r *revKeys) Revision() uint64 { return r.rev }

// built counts the answers a cache built.
type built struct{ n int }

func (b *built) cache(keys KeyLookup) *AllowCache[*keystore.Key] {
	return NewAllowCache(&Authorizer{keys: keys}, func(d *Decision) (*keystore.Key, bool) {
		b.n++
		return d.Key, true
	})
}

// TestAllowCacheResetsPerRevision: the allow cache only holds entries of
// the current store revision, so churn cannot grow it.
func TestAllowCacheResetsPerRevision(t *testing.T) {
	keys := &revKeys{rev: 1}
	c := new(built).cache(keys)
	for i := 0; i < 10; i++ {
		d := Decision{Kind: Allow, Key: &keystore.Key{ID: fmt.Sprint(i), Prefix: "nex_a1b2"}}
		c.Get(&d)
	}
	if c.Len() != 10 {
		t.Fatalf("cache holds %d entries; want 10", c.Len())
	}
	keys.rev = 2
	d := Decision{Kind: Allow, Key: &keystore.Key{ID: "new", Prefix: "nex_a1b2"}}
	c.Get(&d)
	if c.Len() != 1 {
		t.Fatalf("after a new revision the cache holds %d entries; want 1", c.Len())
	}
}

// TestAllowCacheFollowsTheRecord: an answer is rebuilt when its key record
// changes (another pointer), and kept for the same record.
func TestAllowCacheFollowsTheRecord(t *testing.T) {
	var b built
	c := b.cache(&revKeys{rev: 1})
	d := Decision{Kind: Allow, Key: &keystore.Key{ID: "k"}, Sources: FromAPIKey}
	c.Get(&d)
	c.Get(&d)
	if b.n != 1 {
		t.Fatalf("same record built %d times; want 1", b.n)
	}
	d.Key = &keystore.Key{ID: "k", Scopes: []string{"new"}}
	if got := c.Get(&d); got != d.Key || b.n != 2 {
		t.Fatalf("changed record: answer for %v after %d builds; want a rebuild", got, b.n)
	}
	d.Sources = FromBearer
	c.Get(&d)
	if b.n != 3 || c.Len() != 2 {
		t.Fatalf("another credential source: %d builds, %d entries; want 3 and 2", b.n, c.Len())
	}
}

// TestAllowCacheHoldsABusySidecarsKeys: ten thousand keys answered between
// two changes all stay cached; a smaller bound made a sidecar with that
// many active keys rebuild most answers (BENCHMARKS.md, 1k -> 1M keys).
func TestAllowCacheHoldsABusySidecarsKeys(t *testing.T) {
	var b built
	c := b.cache(&revKeys{rev: 1})
	keys := make([]*keystore.Key, 10_000)
	for i := range keys {
		keys[i] = &keystore.Key{ID: fmt.Sprint(i), Prefix: "nex_a1b2"}
		d := Decision{Kind: Allow, Key: keys[i]}
		c.Get(&d)
	}
	if n := c.Len(); n != len(keys) {
		t.Fatalf("cache holds %d of %d keys", n, len(keys))
	}
	d := Decision{Kind: Allow, Key: keys[0]}
	c.Get(&d)
	if b.n != len(keys) {
		t.Fatal("answer for the first key rebuilt after 10,000 others")
	}
}
