package clip

import "unicode/utf8"

// String cuts s to at most n bytes on a character boundary, marking the
// cut with an ellipsis.
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
