// Package bearer reads the credential of an "Authorization: Bearer <token>"
// header value, by the one rule every extauthz door uses (the decision
// path, the admin API and the replication feed): the scheme is matched
// case-insensitively, and only HTTP's optional white space (RFC 9110: ASCII
// space and tab) is trimmed around the value and the token. Nothing else is
// trimmed, so a credential wrapped in a no-break space or another Unicode
// space is not the credential.
package bearer
