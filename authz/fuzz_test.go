package authz

import (
	"strings"
	"testing"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// FuzzExtractKey: key extraction never panics, and whatever it returns was
// present in the headers.
func FuzzExtractKey(f *testing.F) {
	for _, s := range []struct{ x, a string }{
		{"nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6", ""},
		{"", "Bearer nex_a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6"},
		{"a,b", "bearer  x , Bearer y"},
		{" ", "Basic dXNlcjpwYXNz"},
		{"k", "BEARER k"},
		{"\x00\xff", "Bearer"},
	} {
		f.Add(s.x, s.a)
	}
	sources := []policy.Source{policy.SourceAPIKey, policy.SourceBearer}
	f.Fuzz(func(t *testing.T, x, a string) {
		r := &Request{APIKey: []string{x}, Authorization: []string{a}}
		key, from, multiple := extractKey(sources, r)
		if key != "" && !strings.Contains(x, key) && !strings.Contains(a, key) {
			t.Fatalf("extracted %q from neither header", key)
		}
		if key == "" && (from != 0 || multiple) {
			t.Fatalf("no key but sources %b multiple %v", from, multiple)
		}
	})
}

// emptyStore knows no key.
type emptyStore struct{}

func (emptyStore) Lookup(keystore.Hash) (keystore.LookupResult, error) {
	return keystore.LookupResult{}, keystore.ErrNotFound
}

func (emptyStore) Revision() uint64 { return 0 }
