package policy

import (
	"strings"
	"testing"
)

var (
	nexFormat = Format{Prefix: "nex_", Charset: CharsetAlphanumeric, Length: 32}
	nxgFormat = Format{Prefix: "nxg_", Charset: CharsetHex, Length: 64}
)

// formatCases are the Format.Match cases.
var formatCases = []struct {
	name   string
	format Format
	raw    string
	want   bool
}{
	{"alphanumeric ok", nexFormat, "nex_" + strings.Repeat("aZ09", 8), true},
	{"alphanumeric all letters", nexFormat, "nex_" + strings.Repeat("Q", 32), true},
	{"wrong prefix", nexFormat, "nxg_" + strings.Repeat("a", 32), false},
	{"prefix case differs", nexFormat, "NEX_" + strings.Repeat("a", 32), false},
	{"missing prefix", nexFormat, strings.Repeat("a", 36), false},
	{"body too short", nexFormat, "nex_" + strings.Repeat("a", 31), false},
	{"body too long", nexFormat, "nex_" + strings.Repeat("a", 33), false},
	{"prefix only", nexFormat, "nex_", false},
	{"empty", nexFormat, "", false},
	{"underscore in body", nexFormat, "nex_" + strings.Repeat("a", 31) + "_", false},
	{"dash in body", nexFormat, "nex_" + strings.Repeat("a", 31) + "-", false},
	{"space in body", nexFormat, "nex_" + strings.Repeat("a", 31) + " ", false},
	{"non-ASCII in body", nexFormat, "nex_" + strings.Repeat("a", 30) + "é", false},
	{"NUL in body", nexFormat, "nex_" + strings.Repeat("a", 31) + "\x00", false},
	{"hex ok", nxgFormat, "nxg_" + strings.Repeat("0123456789abcdef", 4), true},
	{"hex upper-case", nxgFormat, "nxg_" + strings.Repeat("0123456789ABCDEF", 4), false},
	{"hex one upper-case digit", nxgFormat, "nxg_" + strings.Repeat("a", 63) + "F", false},
	{"hex letter beyond f", nxgFormat, "nxg_" + strings.Repeat("a", 63) + "g", false},
	{"hex too short", nxgFormat, "nxg_" + strings.Repeat("a", 63), false},
	{"unknown charset", Format{Prefix: "k_", Charset: "base64", Length: 2}, "k_ab", false},
	{"zero length", Format{Prefix: "k_", Charset: CharsetHex}, "k_", false},
	{"negative length", Format{Prefix: "k_", Charset: CharsetHex, Length: -2}, "", false},
}

func TestFormatMatch(t *testing.T) {
	for _, tc := range formatCases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.format.Match(tc.raw); got != tc.want {
				t.Errorf("%+v.Match(%q) = %v, want %v", tc.format, tc.raw, got, tc.want)
			}
		})
	}
}

func TestFormatMatchDoesNotAllocate(t *testing.T) {
	raw := "nex_" + strings.Repeat("aZ09", 8)
	var ok bool
	if got := testing.AllocsPerRun(100, func() { ok = nexFormat.Match(raw) }); got != 0 || !ok {
		t.Errorf("Match() allocations = %v, want 0", got)
	}
}

func TestFormatAlphabet(t *testing.T) {
	tests := []struct {
		name    string
		charset Charset
		want    string
	}{
		{"alphanumeric", CharsetAlphanumeric, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"},
		{"hex", CharsetHex, "0123456789abcdef"},
		{"unknown", "base64", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := Format{Prefix: "k_", Charset: tc.charset, Length: 8}
			got := f.Alphabet()
			if got != tc.want {
				t.Fatalf("Alphabet() = %q, want %q", got, tc.want)
			}
			// Every minted key must be accepted by Match.
			if got != "" && !f.Match("k_"+got[:8]) {
				t.Errorf("Match() rejects a body drawn from Alphabet()")
			}
			for i := 0; i < len(got); i++ {
				if !f.Match("k_" + strings.Repeat(got[i:i+1], 8)) {
					t.Errorf("Match() rejects alphabet character %q", got[i])
				}
			}
		})
	}
}
