package admin

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

func TestRotate(t *testing.T) {
	tests := []struct {
		name  string
		body  any
		grace time.Duration // 0: revoked at once
	}{
		{"explicit grace period", `{"gracePeriod":"1h"}`, time.Hour},
		{"zero grace revokes at once", `{"gracePeriod":"0s"}`, 0},
		{"empty body uses the default", nil, DefaultGracePeriod},
		{"empty object uses the default", `{}`, DefaultGracePeriod},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envConfig{})
			jwt := e.userToken("carol")
			old := e.createNexKey(jwt, `{"name":"bot","scopes":["signals","agents"]}`)
			oldKey, oldID := old["key"].(string), old["id"].(string)
			e.clock.Add(time.Minute)

			r := e.expect(e.request("POST", "/api/v1/api-keys/"+oldID+"/rotate", jwt, tc.body), http.StatusCreated, "rotate")
			next := r.object(t)
			checkShape(t, "rotate response", next, nexCreateShape)
			newKey := next["key"].(string)
			if !nexKeyRE.MatchString(newKey) || newKey == oldKey || next["id"] == oldID {
				t.Fatalf("rotate returned key %q id %v; want a fresh nex_ key", newKey, next["id"])
			}
			if next["name"] != "bot" || strings.Join(strs(next["scopes"]), ",") != "signals,agents" {
				t.Errorf("new key name %v scopes %v; want the old key's", next["name"], next["scopes"])
			}
			rec, err := e.store.GetKey(next["id"].(string))
			if err != nil || rec.UserID != "carol" {
				t.Fatalf("new record %+v, %v; want owned by carol", rec, err)
			}
			if !e.keyValid(newKey) {
				t.Errorf("new key is not valid")
			}

			res, err := e.store.Lookup(keystore.HashKey(oldKey))
			if err != nil {
				t.Fatal(err)
			}
			if tc.grace == 0 {
				if !res.Key.Revoked() || e.keyValid(oldKey) {
					t.Errorf("old key revoked=%v valid=%v; want revoked at once", res.Key.Revoked(), e.keyValid(oldKey))
				}
				return
			}
			want := e.clock.Now().Add(tc.grace)
			if res.Key.Revoked() || res.Key.ExpiresAt == nil || !res.Key.ExpiresAt.Equal(want) {
				t.Fatalf("old key revoked=%v expiresAt=%v; want live until %v", res.Key.Revoked(), res.Key.ExpiresAt, want)
			}
			e.clock.Add(tc.grace - time.Nanosecond)
			if !e.keyValid(oldKey) {
				t.Errorf("old key invalid just before the grace period ends")
			}
			e.clock.Add(time.Nanosecond)
			if e.keyValid(oldKey) {
				t.Errorf("old key still valid when the grace period ends")
			}
			if !e.keyValid(newKey) {
				t.Errorf("new key invalid after the grace period")
			}
			// The old key is still listed (live = not revoked) with its expiry.
			jwt = e.userToken("carol")
			list := e.request("GET", "/api/v1/api-keys", jwt, nil).array(t)
			if len(list) != 2 {
				t.Errorf("list after rotation = %d keys; want 2", len(list))
			}
			// An expired key cannot be rotated again.
			e.expect(e.request("POST", "/api/v1/api-keys/"+oldID+"/rotate", jwt, nil), http.StatusConflict, "rotate expired")
		})
	}
}

func TestRotateErrors(t *testing.T) {
	e := newEnv(t, envConfig{})
	k := e.createNexKey(testAdminToken, `{"name":"svc","scopes":["full_access"],"userId":"dave","expiresAt":"2024-03-01T00:00:00Z"}`)
	id := k["id"].(string)
	for _, tc := range []struct {
		name  string
		body  string
		want  int
		field string
	}{
		{"not a duration", `{"gracePeriod":"tomorrow"}`, http.StatusBadRequest, "gracePeriod"},
		{"negative", `{"gracePeriod":"-1h"}`, http.StatusBadRequest, "gracePeriod"},
		{"too long", `{"gracePeriod":"9000h"}`, http.StatusBadRequest, "gracePeriod"},
		{"number instead of string", `{"gracePeriod":3600}`, http.StatusBadRequest, "gracePeriod"},
		{"unknown field", `{"grace":"1h"}`, http.StatusBadRequest, "grace"},
		{"expiresAt in the past", `{"expiresAt":"2020-01-01T00:00:00Z"}`, http.StatusBadRequest, "expiresAt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.expect(e.request("POST", "/api/v1/api-keys/"+id+"/rotate", testAdminToken, tc.body), tc.want, tc.name)
			if msg := r.errorMessage(t); !strings.Contains(msg, tc.field) {
				t.Errorf("error %q does not name %s", msg, tc.field)
			}
		})
	}
	// The new key inherits the old expiry unless the body gives one.
	next := e.expect(e.request("POST", "/api/v1/api-keys/"+id+"/rotate", testAdminToken, `{"gracePeriod":"0s"}`), http.StatusCreated, "rotate").object(t)
	if next["expiresAt"] != "2024-03-01T00:00:00.000Z" {
		t.Errorf("rotated expiresAt = %v; want the old key's 2024-03-01T00:00:00.000Z", next["expiresAt"])
	}
	rec, _ := e.store.GetKey(next["id"].(string))
	if rec == nil || rec.UserID != "dave" {
		t.Errorf("rotated record = %+v; want owner dave", rec)
	}
	e.expect(e.request("POST", "/api/v1/api-keys/"+id+"/rotate", testAdminToken, nil), http.StatusNotFound, "rotate a revoked key")
	e.expect(e.request("POST", "/api/v1/api-keys/no-such-id/rotate", testAdminToken, nil), http.StatusNotFound, "rotate an unknown key")
}
