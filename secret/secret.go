package secret

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Token is a configured secret. The zero Token, like one made from the
// empty string, matches nothing.
type Token struct {
	sum [sha256.Size]byte
	set bool
}

// NewToken returns the Token for s; an empty s gives a Token that matches
// nothing.
func NewToken(s string) Token {
	if s == "" {
		return Token{}
	}
	return Token{sum: sha256.Sum256([]byte(s)), set: true}
}

// IsSet reports whether t was made from a non-empty secret.
func (t Token) IsSet() bool { return t.set }

// Matches reports whether presented is the secret, in time that depends
// on neither.
func (t Token) Matches(presented string) bool {
	sum := sha256.Sum256([]byte(presented))
	// No secret hashes to the zero digest of an unset Token; set says so
	// explicitly.
	return equalDigests(&sum, &t.sum) && t.set
}

// Equal reports whether a and b are equal, in time that depends on
// neither: for comparisons of two presented values, where no Token is
// configured.
func Equal(a, b string) bool {
	x, y := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return equalDigests(&x, &y)
}

func equalDigests(a, b *[sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
