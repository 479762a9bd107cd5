package admin

import (
	"net/http"
	"strings"
	"testing"
)

// TestKeyMintedByExpiringKey: a write key with expires_at cannot make a
// key that outlives it. Without expires_at the new key gets its creator's;
// a later one is refused, naming the field; an earlier one is kept.
func TestKeyMintedByExpiringKey(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, start: graphEpoch})
	pid, _, write := e.createProject(testAdminToken, "P")
	keys := "/api/v1/projects/" + pid + "/api-keys"
	const creatorExpiry = "2026-01-15T11:30:00.000Z"
	temp := e.expect(e.request("POST", keys, write, `{"permissions":["read","write"],"label":"temporary","expires_at":"`+creatorExpiry+`"}`), http.StatusCreated, "temporary write key").object(t)["key"].(string)

	inherited := e.expect(e.request("POST", keys, temp, `{"permissions":["read"],"label":"no expiry asked"}`), http.StatusCreated, "key without expires_at").object(t)
	if got := inherited["expires_at"]; got != creatorExpiry {
		t.Errorf("expires_at of a key minted by an expiring key = %v; want the creator's %s", got, creatorExpiry)
	}
	r := e.expect(e.request("POST", keys, temp, `{"permissions":["read"],"label":"later","expires_at":"2027-01-01T00:00:00Z"}`), http.StatusBadRequest, "key expiring after its creator")
	if msg := r.errorMessage(t); !strings.Contains(msg, "expires_at") || !strings.Contains(msg, "2026-01-15T11:30:00") {
		t.Errorf("error %q does not name expires_at and the creator's expiry", msg)
	}
	earlier := e.expect(e.request("POST", keys, temp, `{"permissions":["read"],"label":"earlier","expires_at":"2026-01-15T11:00:00Z"}`), http.StatusCreated, "key expiring before its creator").object(t)
	if got := earlier["expires_at"]; got != "2026-01-15T11:00:00.000Z" {
		t.Errorf("an earlier expires_at was changed to %v", got)
	}
	// A key without expiry, and the operator, are not limited.
	if got := e.expect(e.request("POST", keys, write, `{"permissions":["read"],"label":"permanent"}`), http.StatusCreated, "permanent key").object(t)["expires_at"]; got != nil {
		t.Errorf("a key made by a permanent key got expires_at %v", got)
	}
}
