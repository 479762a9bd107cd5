package secret

import "testing"

func TestToken(t *testing.T) {
	tok := NewToken("operator-token")
	if !tok.IsSet() {
		t.Fatal("IsSet = false for a non-empty secret")
	}
	for presented, want := range map[string]bool{
		"operator-token":     true,
		"operator-token ":    false,
		"operator-toke":      false,
		"Operator-token":     false,
		"":                   false,
		"operator-token\x00": false,
	} {
		if got := tok.Matches(presented); got != want {
			t.Errorf("Matches(%q) = %v; want %v", presented, got, want)
		}
	}
}

func TestUnsetTokenMatchesNothing(t *testing.T) {
	for _, tok := range []Token{{}, NewToken("")} {
		if tok.IsSet() {
			t.Error("IsSet = true for an empty secret")
		}
		// The SHA-256 of "" is a perfectly good digest: an unset token
		// must still refuse it.
		for _, presented := range []string{"", "x"} {
			if tok.Matches(presented) {
				t.Errorf("unset token matches %q", presented)
			}
		}
	}
}

func TestEqual(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"p1", "p1", true},
		{"p1", "p2", false},
		{"p1", "p10", false},
		{"", "", true},
		{"", "p", false},
	} {
		if got := Equal(tc.a, tc.b); got != tc.want {
			t.Errorf("Equal(%q, %q) = %v; want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
