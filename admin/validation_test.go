package admin

import (
	"strings"
	"testing"

	"github.com/extauthz/extauthz/clip"
)

// TestValidation sends bad input to every body-taking route: each answer is
// a 4xx {"error"} naming what is wrong, never a 5xx.
func TestValidation(t *testing.T) {
	e := newEnv(t, envConfig{policy: nexgentPolicy})
	g := newEnv(t, envConfig{policy: nexgraphPolicy, start: graphEpoch})
	pid, _, gkey := g.createProject(testAdminToken, "v")
	name200 := strings.Repeat("n", 200)
	name201 := strings.Repeat("n", 201)
	runes200 := strings.Repeat("é", 200) // 400 bytes, 200 characters
	huge := `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `","scopes":["signals"]}`

	tests := []struct {
		name    string
		env     *testEnv
		path    string
		token   string
		body    string
		ct      string // "" = application/json; "-" = none
		want    int
		mention []string
	}{
		{"valid", e, "/api/v1/api-keys", testAdminToken, `{"name":"ok","scopes":["signals"]}`, "", 201, nil},
		{"200-character name", e, "/api/v1/api-keys", testAdminToken, `{"name":"` + name200 + `","scopes":["signals"]}`, "", 201, nil},
		{"200 two-byte characters", e, "/api/v1/api-keys", testAdminToken, `{"name":"` + runes200 + `","scopes":["signals"]}`, "", 201, nil},
		{"duplicate scopes are merged", e, "/api/v1/api-keys", testAdminToken, `{"name":"d","scopes":["signals","signals"]}`, "", 201, nil},
		{"content type with charset", e, "/api/v1/api-keys", testAdminToken, `{"name":"ok","scopes":["signals"]}`, "application/json; charset=utf-8", 201, nil},
		{"unknown field", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"colour":"red"}`, "", 400, []string{`unknown field "colour"`}},
		{"unknown scope", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals","moon"]}`, "", 400, []string{"scopes", `"moon"`}},
		{"empty scope string", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":[""]}`, "", 400, []string{"scopes"}},
		{"empty scopes", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":[]}`, "", 400, []string{"scopes"}},
		{"missing scopes", e, "/api/v1/api-keys", testAdminToken, `{"name":"x"}`, "", 400, []string{"scopes"}},
		{"empty name", e, "/api/v1/api-keys", testAdminToken, `{"name":"","scopes":["signals"]}`, "", 400, []string{"name"}},
		{"blank name", e, "/api/v1/api-keys", testAdminToken, `{"name":"   ","scopes":["signals"]}`, "", 400, []string{"name"}},
		{"missing name", e, "/api/v1/api-keys", testAdminToken, `{"scopes":["signals"]}`, "", 400, []string{"name"}},
		{"201-character name", e, "/api/v1/api-keys", testAdminToken, `{"name":"` + name201 + `","scopes":["signals"]}`, "", 400, []string{"name", "200"}},
		{"control character in name", e, "/api/v1/api-keys", testAdminToken, `{"name":"a\u0007b","scopes":["signals"]}`, "", 400, []string{"name"}},
		{"every bad field named", e, "/api/v1/api-keys", testAdminToken, `{"name":"","scopes":["moon"],"expiresAt":"soon"}`, "", 400, []string{"name", "scopes", "expiresAt"}},
		{"expiresAt in the past", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"expiresAt":"2024-01-15T10:29:59Z"}`, "", 400, []string{"expiresAt", "future"}},
		{"expiresAt now", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"expiresAt":"2024-01-15T10:30:00Z"}`, "", 400, []string{"expiresAt"}},
		{"expiresAt not RFC 3339", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"expiresAt":"2025-01-01"}`, "", 400, []string{"expiresAt", "RFC 3339"}},
		{"expiresAt a number", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"expiresAt":1735689600}`, "", 400, []string{"expiresAt"}},
		{"name a number", e, "/api/v1/api-keys", testAdminToken, `{"name":5,"scopes":["signals"]}`, "", 400, []string{"name", "string"}},
		{"scopes a string", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":"signals"}`, "", 400, []string{"scopes"}},
		{"scopes of numbers", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":[1]}`, "", 400, []string{"scopes"}},
		{"userId empty", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"userId":""}`, "", 400, []string{"userId"}},
		{"userId too long", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"userId":"` + name201 + `"}`, "", 400, []string{"userId"}},
		{"projectId with newline", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"projectId":"a\nb"}`, "", 400, []string{"projectId"}},
		{"body is an array", e, "/api/v1/api-keys", testAdminToken, `[{"name":"x"}]`, "", 400, []string{"object"}},
		{"body is null", e, "/api/v1/api-keys", testAdminToken, `null`, "", 400, []string{"object"}},
		{"body is a string", e, "/api/v1/api-keys", testAdminToken, `"hello"`, "", 400, []string{"object"}},
		{"empty body", e, "/api/v1/api-keys", testAdminToken, ``, "", 400, []string{"body"}},
		{"truncated JSON", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]`, "", 400, []string{"JSON"}},
		{"syntax error", e, "/api/v1/api-keys", testAdminToken, `{"name":"x",,}`, "", 400, []string{"JSON"}},
		{"trailing garbage", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]} {"name":"y"}`, "", 400, []string{"after the JSON object"}},
		{"trailing text", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]}garbage`, "", 400, []string{"after the JSON object"}},
		{"invalid UTF-8", e, "/api/v1/api-keys", testAdminToken, "{\"name\":\"\xff\",\"scopes\":[\"signals\"]}", "", 400, []string{"UTF-8"}},
		{"duplicate field", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","name":"y","scopes":["signals"]}`, "", 400, []string{`duplicate field "name"`}},
		{"field name in another case", e, "/api/v1/api-keys", testAdminToken, `{"Name":"x","scopes":["signals"]}`, "", 400, []string{`unknown field "Name"`}},
		{"snake_case on a camelCase route", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"expires_at":"2030-01-01T00:00:00Z"}`, "", 400, []string{`unknown field "expires_at"`}},
		{"1 MiB + 1 body", e, "/api/v1/api-keys", testAdminToken, huge, "", 413, []string{"larger than"}},
		{"text/plain", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]}`, "text/plain", 415, []string{"Content-Type"}},
		{"no content type", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]}`, "-", 415, []string{"Content-Type"}},
		{"latin-1 charset", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]}`, "application/json; charset=latin1", 415, []string{"charset"}},
		{"malformed content type", e, "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"]}`, "application/json; ;", 415, []string{"Content-Type"}},
		{"rotate text/plain", e, "/api/v1/api-keys/x/rotate", testAdminToken, `{"gracePeriod":"1h"}`, "text/plain", 415, nil},
		{"project without name", e, "/api/v1/projects", testAdminToken, `{}`, "", 400, []string{"name"}},
		{"project unknown field", e, "/api/v1/projects", testAdminToken, `{"name":"p","owner":"me"}`, "", 400, []string{`unknown field "owner"`}},
		{"project 201-character name", e, "/api/v1/projects", testAdminToken, `{"name":"` + name201 + `"}`, "", 400, []string{"name"}},
		{"graph key valid", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["read"],"label":"ok"}`, "", 201, nil},
		{"graph key unknown permission", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["admin"],"label":"x"}`, "", 400, []string{"permissions", `"admin"`}},
		{"graph key no permissions", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"label":"x"}`, "", 400, []string{"permissions"}},
		{"graph key no label", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["read"]}`, "", 400, []string{"label"}},
		{"graph key camelCase field", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["read"],"label":"x","expiresAt":"2027-01-01T00:00:00Z"}`, "", 400, []string{`unknown field "expiresAt"`}},
		{"graph key expired", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["read"],"label":"x","expires_at":"2025-01-01T00:00:00Z"}`, "", 400, []string{"expires_at"}},
		{"graph key expires_at not a time", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":["read"],"label":"x","expires_at":"next week"}`, "", 400, []string{"expires_at"}},
		{"graph key upper-case field", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"Permissions":["read"],"label":"x"}`, "", 400, []string{`unknown field "Permissions"`}},
		{"graph key permissions object", g, "/api/v1/projects/" + pid + "/api-keys", gkey, `{"permissions":{"read":true},"label":"x"}`, "", 400, []string{"permissions"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := "application/json"
			switch tc.ct {
			case "":
			case "-":
				ct = ""
			default:
				ct = tc.ct
			}
			r := tc.env.request("POST", tc.path, tc.token, tc.body, "Content-Type", ct)
			if r.status != tc.want {
				t.Fatalf("status = %d %s; want %d", r.status, clip.String(string(r.raw), 300), tc.want)
			}
			if tc.want < 400 {
				return
			}
			msg := r.errorMessage(t)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("error %q does not mention %q", msg, m)
				}
			}
		})
	}
}
