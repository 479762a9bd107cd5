package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/keystore"
)

// noQuorum is a Writer whose every write the cluster cannot make.
type noQuorum struct{ Writer }

type noQuorumError struct{}

func (noQuorumError) Error() string     { return "admin cluster: no quorum of admin members; retry" }
func (noQuorumError) Unavailable() bool { return true }

func (noQuorum) CreateKey(*keystore.Key, string) error { return noQuorumError{} }

func TestWriteTheClusterCannotMakeIs503(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.srv.writer = noQuorum{Writer: e.store}
	// Not through e.request, which fails every 5xx.
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+"/api/v1/api-keys", strings.NewReader(`{"name":"k","scopes":["signals"]}`))
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var got struct{ Error string }
	if resp.StatusCode != http.StatusServiceUnavailable || json.Unmarshal(body, &got) != nil || got.Error != (noQuorumError{}).Error() {
		t.Fatalf("create without quorum = %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	if keys, _ := e.store.ListKeys(nil); len(keys) != 0 {
		t.Fatalf("%d keys stored", len(keys))
	}
	// The cluster's refusal is an answer, not an internal failure.
	if strings.Contains(e.logs.String(), "admin request failed") {
		t.Fatal("a 503 of the cluster was logged as an internal failure")
	}
}

func TestOperatorOnly(t *testing.T) {
	e := newEnv(t, envConfig{})
	h := e.srv.OperatorOnly(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	for _, tc := range []struct {
		token string
		want  int
	}{{testAdminToken, http.StatusTeapot}, {"", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}, {e.userToken("alice"), http.StatusForbidden}} {
		req, _ := http.NewRequest(http.MethodGet, "/api/v1/cluster", nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("token %.8q: %d, want %d", tc.token, rec.Code, tc.want)
		}
	}
}
