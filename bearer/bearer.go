package bearer

import "strings"

// Token returns the credential of one Authorization header value of the
// form "Bearer <token>", and whether the value is of that form. The token
// is what follows the first space, without optional white space; it may be
// empty, and it may contain spaces: callers that need more (a non-empty
// token, no control characters) check it themselves.
func Token(v string) (string, bool) {
	v = TrimOWS(v)
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return TrimOWS(tok), true
}

// TrimOWS removes the optional white space HTTP allows around a field value
// (RFC 9110: spaces and tabs) and nothing else: a key wrapped in a no-break
// space or another Unicode space is not the key.
func TrimOWS(s string) string {
	return strings.Trim(s, " \t")
}
