package policy

import "strings"

// Charset names the characters a key body is made of.
type Charset string

// The supported key charsets.
const (
	// CharsetAlphanumeric is [A-Za-z0-9].
	CharsetAlphanumeric Charset = "alphanumeric"
	// CharsetHex is lower-case [0-9a-f].
	CharsetHex Charset = "hex"
)

const (
	alphabetAlphanumeric = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	alphabetHex          = "0123456789abcdef"
)

// maxKeyLength is the largest accepted Format.Length.
const maxKeyLength = 512

// Format is one accepted API-key format: Prefix followed by exactly Length
// characters of Charset.
type Format struct {
	Prefix  string  `json:"prefix"`
	Charset Charset `json:"charset"`
	Length  int     `json:"length"`
}

// Alphabet returns the characters a minted key body draws from, or "" for an
// unknown charset.
func (f Format) Alphabet() string {
	switch f.Charset {
	case CharsetAlphanumeric:
		return alphabetAlphanumeric
	case CharsetHex:
		return alphabetHex
	default:
		return ""
	}
}

// Match reports whether raw is Prefix followed by exactly Length characters of
// Charset. It does not allocate.
func (f Format) Match(raw string) bool {
	if f.Length <= 0 || len(raw) != len(f.Prefix)+f.Length || !strings.HasPrefix(raw, f.Prefix) {
		return false
	}
	body := raw[len(f.Prefix):]
	switch f.Charset {
	case CharsetAlphanumeric:
		for i := 0; i < len(body); i++ {
			if !isAlphanumeric(body[i]) {
				return false
			}
		}
		return true
	case CharsetHex:
		for i := 0; i < len(body); i++ {
			if !isLowerHex(body[i]) {
				return false
			}
		}
		return true
	default:
		return false
	}
}

func isAlphanumeric(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

func isLowerHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f'
}
