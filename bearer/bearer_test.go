package bearer

import "testing"

func TestToken(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER abc", "abc", true},
		{"BeArEr abc", "abc", true},
		{" \tBearer  abc \t", "abc", true},
		{"Bearer abc def", "abc def", true},
		{"Bearer ", "", false}, // trimmed to "Bearer": no token at all
		{"Bearer  \t", "", false},
		{"Bearer \t x", "x", true},
		{"Bearer", "", false},
		{"", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"Bearer\tabc", "", false}, // the scheme ends at a space
		{"Bearer: abc", "", false},
		{"abc", "", false},
		// The security-reviewed rule: only ASCII space and tab are optional
		// white space. A no-break space, an ideographic space, a newline or
		// a vertical tab around the token is part of it.
		{"Bearer \u00a0abc\u00a0", "\u00a0abc\u00a0", true},
		{"Bearer abc\u00a0", "abc\u00a0", true},
		{"Bearer abc\u3000", "abc\u3000", true},
		{"Bearer abc\n", "abc\n", true},
		{"Bearer abc\v", "abc\v", true},
		{"\u00a0Bearer abc", "", false},
		{"Bearer\u00a0abc", "", false},
	} {
		got, ok := Token(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Token(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTrimOWS(t *testing.T) {
	for in, want := range map[string]string{
		" \t k \t ":    "k",
		"k":            "k",
		"":             "",
		"\u00a0k":      "\u00a0k",
		"k\r":          "k\r",
		" \u2003k\t ":  "\u2003k",
		"  inner sp  ": "inner sp",
	} {
		if got := TrimOWS(in); got != want {
			t.Errorf("TrimOWS(%q) = %q; want %q", in, got, want)
		}
	}
}

func FuzzToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer \u00a0x", "Basic x", "Bearer", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, ok := Token(v)
		if !ok {
			if tok != "" {
				t.Fatalf("Token(%q) = %q without ok", v, tok)
			}
			return
		}
		if tok != TrimOWS(tok) {
			t.Fatalf("Token(%q) = %q: not trimmed", v, tok)
		}
	})
}
