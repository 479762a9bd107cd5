package authz

import (
	"strings"

	"github.com/extauthz/extauthz/keystore"
)

// Identity headers set on the upstream request of an allowed check.
const (
	HeaderKeyID     = "x-auth-key-id"
	HeaderKeyPrefix = "x-auth-key-prefix"
	HeaderScopes    = "x-auth-scopes"
	HeaderProjectID = "x-auth-project-id"
	HeaderUserID    = "x-auth-user-id"
)

// Credential headers a key is read from.
const (
	HeaderAPIKey        = "x-api-key"
	HeaderAuthorization = "authorization"
)

// IdentityHeaderNames are every identity header, in Identity's order.
var IdentityHeaderNames = [5]string{HeaderKeyID, HeaderKeyPrefix, HeaderScopes, HeaderProjectID, HeaderUserID}

// Identity lists the identity headers for k in a fixed order; the value is
// empty for a header the key has no value for, which the front doors then
// remove so a client-sent copy never survives.
func Identity(k *keystore.Key) [5][2]string {
	return [5][2]string{
		{HeaderKeyID, k.ID},
		{HeaderKeyPrefix, k.Prefix},
		{HeaderScopes, strings.Join(k.Scopes, ",")},
		{HeaderProjectID, k.ProjectID},
		{HeaderUserID, k.UserID},
	}
}

// CredentialHeaders returns the headers to strip upstream for sources.
func CredentialHeaders(sources uint8) []string {
	switch sources {
	case FromAPIKey:
		return []string{HeaderAPIKey}
	case FromBearer:
		return []string{HeaderAuthorization}
	case FromAPIKey | FromBearer:
		return []string{HeaderAPIKey, HeaderAuthorization}
	}
	return nil
}
