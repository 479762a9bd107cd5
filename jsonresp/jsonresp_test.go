package jsonresp

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func checkHeaders(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	for name, want := range map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(name); got != want {
			t.Errorf("%s = %q; want %q", name, got, want)
		}
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusCreated, struct {
		Key  string `json:"key"`
		Note string `json:"note"`
	}{"nex_abc", "<b>&</b>"})
	if rec.Code != http.StatusCreated {
		t.Errorf("status %d", rec.Code)
	}
	checkHeaders(t, rec)
	// encoding/json's bytes, HTML escaped, and a newline.
	if want := `{"key":"nex_abc","note":"\u003cb\u003e\u0026\u003c/b\u003e"}` + "\n"; rec.Body.String() != want {
		t.Errorf("body %q; want %q", rec.Body.String(), want)
	}
}

func TestWriteUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusOK, map[string]any{"f": func() {}})
	if rec.Code != http.StatusInternalServerError || rec.Body.String() != `{"error":"internal error"}`+"\n" {
		t.Errorf("= %d %q; want 500 internal error", rec.Code, rec.Body.String())
	}
	checkHeaders(t, rec)
}

func TestError(t *testing.T) {
	rec := httptest.NewRecorder()
	Error(rec, http.StatusGone, `say "no"`)
	if rec.Code != http.StatusGone || rec.Body.String() != `{"error":"say \"no\""}`+"\n" {
		t.Errorf("= %d %q", rec.Code, rec.Body.String())
	}
	checkHeaders(t, rec)
}

func TestUnmatched(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /thing", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("POST /other", func(http.ResponseWriter, *http.Request) {})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
		body         string
	}{
		{"POST", "/thing", 405, "GET, HEAD", `{"error":"method not allowed"}` + "\n"},
		{"GET", "/other", 405, "POST", `{"error":"method not allowed"}` + "\n"},
		{"GET", "/nothing", 404, "", `{"error":"not found"}` + "\n"},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		h, pattern := mux.Handler(r)
		if pattern != "" {
			t.Fatalf("%s %s matched %q", tc.method, tc.path, pattern)
		}
		rec := httptest.NewRecorder()
		Unmatched(rec, r, h)
		if rec.Code != tc.status || rec.Header().Get("Allow") != tc.allow || rec.Body.String() != tc.body {
			t.Errorf("%s %s = %d Allow %q %q; want %d %q %q", tc.method, tc.path, rec.Code, rec.Header().Get("Allow"), rec.Body.String(), tc.status, tc.allow, tc.body)
		}
		checkHeaders(t, rec)
	}
}
