package keycheck

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// prefixFormat accepts keys that start with "k_".
type prefixFormat struct{}

func (prefixFormat) ValidKey(raw string) bool { return strings.HasPrefix(raw, "k_") }

// fakeKeys is a map of records by hash, or a failing store.
type fakeKeys struct {
	recs    map[keystore.Hash]keystore.LookupResult
	err     error
	lookups int
}

func (f *fakeKeys) Lookup(h keystore.Hash) (keystore.LookupResult, error) {
	f.lookups++
	if f.err != nil {
		return keystore.LookupResult{}, f.err
	}
	r, ok := f.recs[h]
	if !ok {
		return r, fmt.Errorf("lookup: %w", keystore.ErrNotFound)
	}
	return r, nil
}

func TestCheck(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	past, present, future := now.Add(-time.Second), now, now.Add(time.Second)
	rec := func(id string, mod func(*keystore.Key), active bool) (string, keystore.LookupResult) {
		k := &keystore.Key{ID: id}
		if mod != nil {
			mod(k)
		}
		return "k_" + id, keystore.LookupResult{Key: k, OwnerActive: active}
	}
	keys := &fakeKeys{recs: map[keystore.Hash]keystore.LookupResult{}}
	add := func(raw string, r keystore.LookupResult) string {
		keys.recs[keystore.HashKey(raw)] = r
		return raw
	}
	valid := add(rec("valid", nil, true))
	validUntilLater := add(rec("later", func(k *keystore.Key) { k.ExpiresAt = &future }, true))
	expiredNow := add(rec("now", func(k *keystore.Key) { k.ExpiresAt = &present }, true))
	expired := add(rec("past", func(k *keystore.Key) { k.ExpiresAt = &past }, true))
	revoked := add(rec("revoked", func(k *keystore.Key) { k.RevokedAt = &past }, true))
	inactive := add(rec("inactive", nil, false))
	// Revocation is tested before expiry, expiry before the owner.
	revokedExpiredInactive := add(rec("all", func(k *keystore.Key) { k.RevokedAt = &past; k.ExpiresAt = &past }, false))
	expiredInactive := add(rec("both", func(k *keystore.Key) { k.ExpiresAt = &past }, false))

	for _, tc := range []struct {
		raw    string
		want   Result
		withID string
	}{
		{valid, Valid, "valid"},
		{validUntilLater, Valid, "later"},
		{expiredNow, Expired, "now"}, // expires_at <= now is expired
		{expired, Expired, "past"},
		{revoked, Revoked, "revoked"},
		{inactive, InactiveOwner, "inactive"},
		{revokedExpiredInactive, Revoked, "all"},
		{expiredInactive, Expired, "both"},
		{"k_unknown", Unknown, ""},
		{"bad", BadFormat, ""},
		{"", BadFormat, ""},
	} {
		k, got, err := Check(prefixFormat{}, keys, tc.raw, now)
		if err != nil || got != tc.want {
			t.Errorf("Check(%q) = %v, %v; want %v", tc.raw, got, err, tc.want)
			continue
		}
		switch {
		case tc.withID == "" && k != nil:
			t.Errorf("Check(%q) returned record %q; want none", tc.raw, k.ID)
		case tc.withID != "" && (k == nil || k.ID != tc.withID):
			t.Errorf("Check(%q) returned record %v; want %q", tc.raw, k, tc.withID)
		}
	}
}

func TestBadFormatIsNotLookedUp(t *testing.T) {
	keys := &fakeKeys{}
	if _, r, _ := Check(prefixFormat{}, keys, "nope", time.Now()); r != BadFormat || keys.lookups != 0 {
		t.Errorf("= %v after %d lookups; want BadFormat without a lookup", r, keys.lookups)
	}
}

func TestStoreError(t *testing.T) {
	broken := errors.New("store closed")
	k, _, err := Check(prefixFormat{}, &fakeKeys{err: broken}, "k_x", time.Now())
	if !errors.Is(err, broken) || k != nil {
		t.Errorf("= %v, %v; want the store's error and no record", k, err)
	}
}

func TestResultString(t *testing.T) {
	if Valid.String() != "valid" || InactiveOwner.String() != "inactive owner" || Result(200).String() != "invalid result" {
		t.Error("Result.String")
	}
}
