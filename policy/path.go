package policy

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// ErrAmbiguousPath is returned by NormalizePath for a request target that
// back ends could interpret differently; such requests must be rejected.
var ErrAmbiguousPath = errors.New("policy: ambiguous request path")

// Detailed reasons, wrapping ErrAmbiguousPath. They are allocated once so
// that rejecting hostile paths does not allocate.
var (
	errNotAbsolute      = fmt.Errorf("%w: not an absolute path", ErrAmbiguousPath)
	errEncodedSeparator = fmt.Errorf("%w: encoded slash or backslash", ErrAmbiguousPath)
	errBackslash        = fmt.Errorf("%w: backslash", ErrAmbiguousPath)
	errEncodedDot       = fmt.Errorf("%w: percent-encoded dot segment", ErrAmbiguousPath)
	errBadEscape        = fmt.Errorf("%w: invalid percent escape", ErrAmbiguousPath)
	errControl          = fmt.Errorf("%w: control character", ErrAmbiguousPath)
	errBadUTF8          = fmt.Errorf("%w: invalid UTF-8", ErrAmbiguousPath)
)

// NormalizePath returns the canonical form of a request target, the path that
// routes are matched against, or an error wrapping ErrAmbiguousPath. See the
// package documentation for the exact rules. When raw needs no change beyond
// dropping the query and fragment, the result is a substring of raw and
// NormalizePath does not allocate.
func NormalizePath(raw string) (string, error) {
	p := raw
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	if p == "" || p[0] != '/' {
		return "", errNotAbsolute
	}
	slow, err := scanPath(p)
	if err != nil {
		return "", err
	}
	if !slow {
		return p, nil
	}
	return normalizeSlow(p)
}

// scanPath checks the raw bytes of p and reports whether p needs the slow
// path: it holds a '%', an empty segment or a dot segment.
func scanPath(p string) (slow bool, err error) {
	high := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			return false, errControl
		case c == '\\':
			return false, errBackslash
		case c == '%':
			slow = true
		case c >= 0x80:
			high = true
		case c == '/' && !slow:
			slow = isEmptyOrDotSegment(p[i+1:])
		}
	}
	if high && !utf8.ValidString(p) {
		return false, errBadUTF8
	}
	return slow, nil
}

// isEmptyOrDotSegment reports whether the segment at the start of rest (which
// follows a '/') is "", "." or "..", with the exception of the final empty
// segment of a trailing slash, which needs no work.
func isEmptyOrDotSegment(rest string) bool {
	if rest == "" {
		return false // trailing slash, kept as is
	}
	seg := rest
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		seg = rest[:i]
	}
	return seg == "" || seg == "." || seg == ".."
}

// normalizeSlow decodes p once, merges repeated slashes and removes dot
// segments. p starts with '/' and has passed scanPath.
func normalizeSlow(p string) (string, error) {
	var buf [16]string
	stack := buf[:0]
	trailing := false
	rest := p[1:]
	for done := false; !done; {
		var seg string
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			seg, done = rest, true
		}
		switch seg {
		case "", ".":
			trailing = true
		case "..":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
			trailing = true
		default:
			if strings.IndexByte(seg, '%') >= 0 {
				decoded, err := decodeSegment(seg)
				if err != nil {
					return "", err
				}
				seg = decoded
			}
			stack = append(stack, seg)
			trailing = false
		}
	}
	if len(stack) == 0 {
		return "/", nil
	}
	n := len(stack) + 1
	for _, s := range stack {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range stack {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailing {
		b.WriteByte('/')
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", errBadUTF8
	}
	return out, nil
}

// decodeSegment percent-decodes one path segment that contains a '%'. It
// validates the whole segment before allocating, so rejections are free.
func decodeSegment(seg string) (string, error) {
	n, dots := len(seg), true
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' {
			var err error
			if c, err = unescapeAt(seg, i); err != nil {
				return "", err
			}
			n -= 2
			i += 2
		}
		dots = dots && c == '.'
	}
	if dots && n <= 2 {
		return "", errEncodedDot // "." or ".." spelt with an escape
	}
	var b strings.Builder
	b.Grow(n)
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '%' {
			c, _ = unescapeAt(seg, i)
			i += 2
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// unescapeAt decodes the escape "%XX" at seg[i], rejecting what would make
// the path ambiguous.
func unescapeAt(seg string, i int) (byte, error) {
	if i+2 >= len(seg) {
		return 0, errBadEscape
	}
	hi, ok1 := unhex(seg[i+1])
	lo, ok2 := unhex(seg[i+2])
	if !ok1 || !ok2 {
		return 0, errBadEscape
	}
	switch c := hi<<4 | lo; {
	case c == '/' || c == '\\':
		return 0, errEncodedSeparator
	case c < 0x20 || c == 0x7f:
		return 0, errControl
	default:
		return c, nil
	}
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
