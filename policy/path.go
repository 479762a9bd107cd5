package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// ErrAmbiguousPath is returned by NormalizePath for a request target that
// back ends could interpret differently; such requests must be rejected.
var ErrAmbiguousPath = errors.New("policy: ambiguous request path")

// Detailed reasons, wrapping ErrAmbiguousPath. They are allocated once so
// that rejecting hostile paths does not allocate.
var (
	errNotAbsolute      = fmt.Errorf("%w: not an absolute path", ErrAmbiguousPath)
	errFragment         = fmt.Errorf("%w: fragment in a request target", ErrAmbiguousPath)
	errEncodedSeparator = fmt.Errorf("%w: encoded slash or backslash", ErrAmbiguousPath)
	errBackslash        = fmt.Errorf("%w: backslash", ErrAmbiguousPath)
	errParameter        = fmt.Errorf("%w: ';' path parameter", ErrAmbiguousPath)
	errEmptySegment     = fmt.Errorf("%w: empty segment", ErrAmbiguousPath)
	errDotSegment       = fmt.Errorf("%w: dot segment", ErrAmbiguousPath)
	errTrailingDot      = fmt.Errorf("%w: segment ending in a dot or a space", ErrAmbiguousPath)
	errEncodedDot       = fmt.Errorf("%w: percent-encoded dot segment", ErrAmbiguousPath)
	errDoubleEncoding   = fmt.Errorf("%w: percent escape left after decoding", ErrAmbiguousPath)
	errBadEscape        = fmt.Errorf("%w: invalid percent escape", ErrAmbiguousPath)
	errControl          = fmt.Errorf("%w: control character", ErrAmbiguousPath)
	errBadUTF8          = fmt.Errorf("%w: invalid UTF-8", ErrAmbiguousPath)
	errLookalike        = fmt.Errorf("%w: non-ASCII character that folds to ASCII", ErrAmbiguousPath)
)

// NormalizePath returns the canonical form of a request target, the path that
// routes are matched against, or an error wrapping ErrAmbiguousPath. The
// canonical form is the path without its query, percent-decoded once; a
// target that is not already in that form but for its escapes, or that any
// mainstream back end could read as another path, is ambiguous. See the
// package documentation for the exact rules. When raw holds no escape, the
// result is a substring of raw and NormalizePath does not allocate.
func NormalizePath(raw string) (string, error) {
	p := raw
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		return "", errNotAbsolute
	}
	escaped, high, err := scanPath(p)
	if err != nil {
		return "", err
	}
	if high {
		if err := checkText(p); err != nil {
			return "", err
		}
	}
	if !escaped {
		return p, nil
	}
	return decodePath(p)
}

// scanPath checks the raw bytes of p, which starts with '/', and reports
// whether p holds a percent escape and a byte above 0x7f.
func scanPath(p string) (escaped, high bool, err error) {
	segStart := 1 // index of the first byte of the current segment
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if err := checkSegment(p[segStart:i], i == len(p)); err != nil {
				return false, false, err
			}
			segStart = i + 1
			continue
		}
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return false, false, errControl
		case c == '\\':
			return false, false, errBackslash
		case c == ';':
			return false, false, errParameter
		case c == '#':
			return false, false, errFragment
		case c == '%':
			escaped = true
		case c >= 0x80:
			high = true
		}
	}
	return escaped, high, nil
}

// checkSegment rejects a raw segment that is empty (but for the last one:
// "/" and a trailing slash) or made only of dots.
func checkSegment(seg string, last bool) error {
	if seg == "" {
		if last {
			return nil
		}
		return errEmptySegment
	}
	if onlyDots(seg) {
		return errDotSegment
	}
	if c := seg[len(seg)-1]; c == '.' || c == ' ' {
		return errTrailingDot
	}
	return nil
}

func onlyDots(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '.' {
			return false
		}
	}
	return s != ""
}

// decodePath percent-decodes p, which has passed scanPath, once. It
// validates the whole of p before allocating, so rejections are free.
func decodePath(p string) (string, error) {
	n, high := 0, false
	segStart := true
	dots := 0 // decoded bytes of the current segment, while all are dots
	allDots := true
	var prev1, prev2 byte // the two decoded bytes before the current one
	uHex := -1            // hex digits decoded since a decoded "%u", -1 if none
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '/' {
			if !segStart && allDots && dots > 0 {
				return "", errEncodedDot
			}
			if !segStart && (prev1 == '.' || prev1 == ' ') {
				return "", errTrailingDot
			}
			segStart, allDots, dots = true, true, 0
			prev1, prev2, uHex = 0, 0, -1
			n++
			continue
		}
		if c == '%' {
			var err error
			if c, err = unescapeAt(p, i); err != nil {
				return "", err
			}
			i += 2
		}
		if c >= 0x80 {
			high = true
		}
		// A decoded "%XY" would be decoded again by a back end that
		// decodes twice: the same path must not mean two things.
		if prev2 == '%' && isHex(prev1) && isHex(c) {
			return "", errDoubleEncoding
		}
		// So would a decoded "%uXXXX", by one that knows the UTF-16 escape
		// (IIS, System.Web's HttpUtility.UrlDecode, JavaScript's unescape).
		switch {
		case prev1 == '%' && (c == 'u' || c == 'U'):
			uHex = 0
		case uHex >= 0 && isHex(c):
			if uHex++; uHex == 4 {
				return "", errDoubleEncoding
			}
		default:
			uHex = -1
		}
		prev2, prev1 = prev1, c
		segStart = false
		if c == '.' {
			dots++
		} else {
			allDots = false
		}
		n++
	}
	if !segStart && allDots && dots > 0 {
		return "", errEncodedDot
	}
	if !segStart && (prev1 == '.' || prev1 == ' ') {
		return "", errTrailingDot
	}
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' {
			c, _ = unescapeAt(p, i)
			i += 2
		}
		b.WriteByte(c)
	}
	out := b.String()
	if high {
		if err := checkText(out); err != nil {
			return "", err
		}
	}
	return out, nil
}

// unescapeAt decodes the escape "%XX" at p[i], rejecting what would make
// the path ambiguous.
func unescapeAt(p string, i int) (byte, error) {
	if i+2 >= len(p) {
		return 0, errBadEscape
	}
	hi, ok1 := unhex(p[i+1])
	lo, ok2 := unhex(p[i+2])
	if !ok1 || !ok2 {
		return 0, errBadEscape
	}
	switch c := hi<<4 | lo; {
	case c == '/' || c == '\\':
		return 0, errEncodedSeparator
	case c == ';':
		return 0, errParameter
	case c < 0x20 || c == 0x7f:
		return 0, errControl
	default:
		return c, nil
	}
}

// checkText rejects a path whose non-ASCII text is not valid UTF-8 or holds
// a character that some back end could read as ASCII: one that NFKC maps
// to text with an ASCII character (full-width "．" is "."), or whose case
// mapping or simple case folding reaches ASCII (the Kelvin sign is "k",
// "ſ" is "s", dotless "ı" upper-cases to "I").
func checkText(p string) error {
	if !utf8.ValidString(p) {
		return errBadUTF8
	}
	for _, r := range p {
		if r < utf8.RuneSelf {
			continue
		}
		if foldsToASCII(r) {
			return errLookalike
		}
	}
	return nil
}

// lookalikeSeparators are characters that are not compatibility
// equivalents of '/', '\' or '.' but render like them, and that best-fit
// code page conversions (Windows) or confusable folding may turn into them.
const lookalikeSeparators = "\u2215\u2044\u29f8\u2216\u29f5\u29f9\u3002\ufe12"

func foldsToASCII(r rune) bool {
	if strings.ContainsRune(lookalikeSeparators, r) {
		return true
	}
	if unicode.ToLower(r) < utf8.RuneSelf || unicode.ToUpper(r) < utf8.RuneSelf {
		return true
	}
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return true
		}
	}
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], r)
	if norm.NFKC.IsNormal(buf[:n]) {
		return false
	}
	for _, c := range norm.NFKC.Bytes(buf[:n]) {
		if c < utf8.RuneSelf {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	_, ok := unhex(c)
	return ok
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	default:
		return 0, false
	}
}
