package admin

import (
	"net/http"
	"testing"
	"time"
)

func TestProjectIsolation(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgraphPolicy, start: graphEpoch})
	pidP, _, writeP := e.createProject(testAdminToken, "P")
	pidQ, kidQ, writeQ := e.createProject(testAdminToken, "Q")
	readP := e.expect(e.request("POST", "/api/v1/projects/"+pidP+"/api-keys", writeP, `{"permissions":["read"],"label":"ro"}`), http.StatusCreated, "read key").object(t)
	roP := readP["key"].(string)
	victimP := e.expect(e.request("POST", "/api/v1/projects/"+pidP+"/api-keys", writeP, `{"permissions":["read"],"label":"victim"}`), http.StatusCreated, "victim key").object(t)
	expiring := e.expect(e.request("POST", "/api/v1/projects/"+pidP+"/api-keys", writeP, `{"permissions":["read","write"],"label":"short","expires_at":"2026-01-15T11:30:00Z"}`), http.StatusCreated, "expiring key").object(t)
	revoked := e.expect(e.request("POST", "/api/v1/projects/"+pidP+"/api-keys", writeP, `{"permissions":["read","write"],"label":"gone"}`), http.StatusCreated, "to revoke").object(t)
	e.expect(e.request("DELETE", "/api/v1/projects/"+pidP+"/api-keys/"+revoked["id"].(string), writeP, nil), http.StatusOK, "revoke")
	userJWT := e.userToken("someone")

	const (
		wrongProject = "Forbidden: API key does not belong to this project"
		needsWrite   = "Insufficient permissions: requires write"
		invalid      = "Invalid or expired API key"
	)
	keysOf := func(pid string) string { return "/api/v1/projects/" + pid + "/api-keys" }
	tests := []struct {
		name, method, path, token string
		body                      any
		want                      int
		msg                       string
	}{
		{"P write key lists Q", "GET", keysOf(pidQ), writeP, nil, http.StatusForbidden, wrongProject},
		{"P write key creates in Q", "POST", keysOf(pidQ), writeP, `{"permissions":["read"],"label":"x"}`, http.StatusForbidden, wrongProject},
		{"P write key deletes Q's key", "DELETE", keysOf(pidQ) + "/" + kidQ, writeP, nil, http.StatusForbidden, wrongProject},
		{"P write key deletes Q's key via P's path", "DELETE", keysOf(pidP) + "/" + kidQ, writeP, nil, http.StatusNotFound, "API key not found"},
		{"P write key on unknown project", "GET", keysOf("no-such-project"), writeP, nil, http.StatusForbidden, wrongProject},
		{"P read key creates in P", "POST", keysOf(pidP), roP, `{"permissions":["read"],"label":"x"}`, http.StatusForbidden, needsWrite},
		{"P read key deletes in P", "DELETE", keysOf(pidP) + "/" + victimP["id"].(string), roP, nil, http.StatusForbidden, needsWrite},
		{"P read key lists P", "GET", keysOf(pidP), roP, nil, http.StatusOK, ""},
		{"P read key lists Q", "GET", keysOf(pidQ), roP, nil, http.StatusForbidden, wrongProject},
		{"Q write key lists Q", "GET", keysOf(pidQ), writeQ, nil, http.StatusOK, ""},
		{"revoked key", "GET", keysOf(pidP), revoked["key"].(string), nil, http.StatusUnauthorized, invalid},
		{"user JWT on a project route", "GET", keysOf(pidP), userJWT, nil, http.StatusForbidden, msgProjectKeyOnly},
		{"project key on a user route", "GET", "/api/v1/api-keys", writeP, nil, http.StatusForbidden, msgUserOrOperator},
		{"project key on an operator route", "GET", "/api/v1/audit", writeP, nil, http.StatusForbidden, msgOperatorOnly},
		{"project key creates a project", "POST", "/api/v1/projects", writeP, `{"name":"R"}`, http.StatusForbidden, msgOperatorOnly},
		{"operator lists Q", "GET", keysOf(pidQ), testAdminToken, nil, http.StatusOK, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.request(tc.method, tc.path, tc.token, tc.body)
			if r.status != tc.want {
				t.Fatalf("%s %s = %d %s; want %d", tc.method, tc.path, r.status, r.raw, tc.want)
			}
			if tc.msg != "" {
				if got := r.errorMessage(t); got != tc.msg {
					t.Errorf("error = %q; want %q", got, tc.msg)
				}
			}
		})
	}
	if !e.keyValid(victimP["key"].(string)) || !e.keyValid(writeQ) {
		t.Errorf("a refused request changed a key")
	}

	// Expiry is checked against the injected clock: valid until expires_at,
	// refused from that instant on.
	e.expect(e.request("GET", keysOf(pidP), expiring["key"].(string), nil), http.StatusOK, "before expiry")
	e.clock.Add(time.Hour)
	r := e.expect(e.request("GET", keysOf(pidP), expiring["key"].(string), nil), http.StatusUnauthorized, "at expiry")
	if got := r.errorMessage(t); got != invalid {
		t.Errorf("expired: error = %q", got)
	}
}
