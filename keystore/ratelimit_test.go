package keystore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want RateLimit
	}{
		{"100/1m", RateLimit{100, time.Minute}},
		{"1/1s", RateLimit{1, time.Second}},
		{"5000/1h", RateLimit{5000, time.Hour}},
		{"10000/1d", RateLimit{10000, 24 * time.Hour}},
		{"7/90s", RateLimit{7, 90 * time.Second}},
	} {
		got, err := ParseRateLimit(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseRateLimit(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if back, err := ParseRateLimit(got.String()); err != nil || back != got {
			t.Errorf("%q: String %q does not parse back: %v, %v", tc.in, got.String(), back, err)
		}
	}
	for in, want := range map[string]string{
		"100":           "must be <limit>/<duration>",
		"0/1m":          "limit: must be an integer from 1",
		"-5/1m":         "limit: must be an integer from 1",
		"x/1m":          "limit must be an integer",
		"10/0s":         "duration: must be a whole number of seconds",
		"10/-1m":        "duration: must be a whole number of seconds",
		"10/500ms":      "duration: must be a whole number of seconds",
		"10/1.5s":       "duration: must be a whole number of seconds",
		"10/48h":        "duration: must be a whole number of seconds from 1s to 24h",
		"10/100000h":    "duration: must be a whole number of seconds",
		"10/soon":       "duration must be such as",
		"2000000000/1m": "limit: must be an integer from 1 to 1000000000",
	} {
		_, err := ParseRateLimit(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRateLimit(%q) = %v; want an error containing %q", in, err, want)
		}
	}
}

// TestSetKeyRateLimit: the limit is set, changed and removed through the
// change log (so it replicates), a record written before limits existed
// decodes without one, and a bad limit or a revoked key is refused.
func TestSetKeyRateLimit(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	_, k := newKey(t, "read")
	if err := s.CreateKey(k, "test"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetKey(k.ID); got.RateLimit != nil {
		t.Fatalf("new key has a rate limit %v", got.RateLimit)
	}
	rev := s.Revision()
	for _, l := range []*RateLimit{{100, time.Minute}, {5, time.Second}, nil} {
		got, err := s.SetKeyRateLimit(k.ID, l, "operator")
		if err != nil {
			t.Fatal(err)
		}
		stored, _ := s.GetKey(k.ID)
		for _, g := range []*Key{got, stored} {
			if (g.RateLimit == nil) != (l == nil) || (l != nil && *g.RateLimit != *l) {
				t.Fatalf("rate limit %v after setting %v", g.RateLimit, l)
			}
		}
		var last Change
		if err := s.Changes(rev, 10, func(ch Change) error { last = ch; return nil }); err != nil {
			t.Fatal(err)
		}
		if last.Key == nil || last.Key.ID != k.ID || (last.Key.RateLimit == nil) != (l == nil) {
			t.Fatalf("change log carries %+v for limit %v", last.Key, l)
		}
		rev = last.Revision
	}
	if _, err := s.SetKeyRateLimit(k.ID, &RateLimit{0, time.Minute}, "operator"); err == nil || !strings.Contains(err.Error(), "limit:") {
		t.Fatalf("limit 0 accepted: %v", err)
	}
	if _, err := s.RevokeKey(k.ID, "operator"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetKeyRateLimit(k.ID, &RateLimit{1, time.Second}, "operator"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := s.SetKeyRateLimit("nope", nil, "operator"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}

	var old Key
	if err := json.Unmarshal([]byte(`{"id":"k","hash":"`+strings.Repeat("ab", 32)+`","prefix":"nex_abcd","scopes":[],"created_at":"2030-01-01T00:00:00Z"}`), &old); err != nil || old.RateLimit != nil {
		t.Fatalf("record without a limit: %v, %v", old.RateLimit, err)
	}
}

// FuzzParseRateLimit: any input is an error or a valid limit that prints
// back to itself.
func FuzzParseRateLimit(f *testing.F) {
	for _, s := range []string{"100/1m", "1/1s", "10000/1d", "7/90s", "0/1m", "10/1.5s", "9/366d", "1/-1d", "x/y", "/", "1/9223372036854775807ns"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseRateLimit(s)
		if err != nil {
			return
		}
		if !l.Valid() || l.Validate() != nil {
			t.Fatalf("%q parsed to the invalid %v", s, l)
		}
		back, err := ParseRateLimit(l.String())
		if err != nil || back != l {
			t.Fatalf("%q: %v prints as %q, which parses to %v, %v", s, l, l.String(), back, err)
		}
	})
}
