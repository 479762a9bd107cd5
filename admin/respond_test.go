package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDecodeErrorMessages pins the exact 400 messages of the strict body
// decoder as clients see them. The first group is unchanged from the
// hand-written decoder; the second documents what changed when decoding
// moved to encoding/json/v2 (package strictjson):
//   - a bad array element is named with its index and its own type;
//   - with several problems the first in the body is named (the old
//     decoder named a bad field name before any earlier type error);
//   - the byte offset of a syntax error is v2's;
//   - an escaped lone surrogate is refused (it was taken as U+FFFD).
func TestDecodeErrorMessages(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, tc := range []struct{ body, want string }{
		{`{"name":"x","scopes":["signals"],"colour":"red"}`, `unknown field "colour"`},
		{`{"Name":"x","scopes":["signals"]}`, `unknown field "Name"`},
		{`{"name":"x","name":"y","scopes":["signals"]}`, `duplicate field "name"`},
		{`{"name":5,"scopes":["signals"]}`, `name: must be a string, got number`},
		{`{"name":"x","scopes":"signals"}`, `scopes: must be an array of strings, got string`},
		{`[{"name":"x"}]`, `request body must be a JSON object`},
		{"{\"name\":\"\xff\"}", `request body is not valid UTF-8`},
		{`{"name":"x","scopes":["signals"]`, `malformed JSON: unexpected end of input`},
		{`{"name":"x",,}`, `malformed JSON at byte 12`},
		{`{"name":"x","scopes":["signals"]} {"name":"y"}`, `unexpected data after the JSON object`},

		{`{"name":"x","scopes":[1]}`, `scopes[0]: must be a string, got number`},
		{`{"name":5,"colour":"red"}`, `name: must be a string, got number`},
		{`{"name":"x",}`, `malformed JSON at byte 11`},
		{`{"name":"\ud800","scopes":["signals"]}`, `malformed JSON at byte 9`},
	} {
		r := e.expect(e.request("POST", "/api/v1/api-keys", testAdminToken, tc.body), http.StatusBadRequest, tc.body)
		if got := r.errorMessage(t); got != tc.want {
			t.Errorf("%.60q: error %q; want %q", tc.body, got, tc.want)
		}
	}
}

// TestBearerOnlyTrimsSpaceAndTab: the admin reads the credential by the
// decision path's rule (package bearer): spaces and tabs around it are
// optional white space, a no-break space is part of it. (The admin used
// strings.TrimSpace, which took "<token>\u00a0" as the token.)
func TestBearerOnlyTrimsSpaceAndTab(t *testing.T) {
	e := newEnv(t, envConfig{})
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + testAdminToken, http.StatusOK},
		{"bearer  " + testAdminToken + " \t", http.StatusOK},
		{"Bearer " + testAdminToken + "\u00a0", http.StatusUnauthorized},
		{"Bearer \u00a0" + testAdminToken, http.StatusUnauthorized},
		{"Bearer " + testAdminToken + "\u3000", http.StatusUnauthorized},
		{"Bearer\u00a0" + testAdminToken, http.StatusUnauthorized},
	} {
		r := e.request("GET", "/api/v1/audit", "", nil, "Authorization", tc.header)
		if r.status != tc.want {
			t.Errorf("Authorization %q: %d; want %d", strings.Replace(tc.header, testAdminToken, "<token>", 1), r.status, tc.want)
		}
	}
}

// TestUnexpectedErrorIs500: an error that is not a client error (here the
// store is closed) is answered 500 "internal error" without details, and
// logged once with the route and the actor.
func TestUnexpectedErrorIs500(t *testing.T) {
	e := newEnv(t, envConfig{})
	if err := e.served.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/api/v1/audit", "/api/v1/api-keys"} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+testAdminToken)
		rec := httptest.NewRecorder()
		e.srv.ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"error":"internal error"}`+"\n" {
			t.Errorf("GET %s = %d %q; want 500 internal error", path, rec.Code, rec.Body.String())
		}
		if got := rec.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("Cache-Control = %q", got)
		}
	}
	logs := e.logs.String()
	if n := strings.Count(logs, `"message":"admin request failed"`); n != 2 {
		t.Errorf("%d failure log lines; want 2:\n%s", n, logs)
	}
	if !strings.Contains(logs, `"route":"GET /api/v1/audit"`) || !strings.Contains(logs, `"actor":"operator"`) {
		t.Errorf("failure log lacks route or actor:\n%s", logs)
	}
}
