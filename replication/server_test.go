package replication

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/keystore/keystoretest"
)

func do(t *testing.T, method, url, auth, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func errorOf(t *testing.T, b []byte) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error", b)
	}
	return e.Error
}

func TestAuthRequired(t *testing.T) {
	admin := newAdminStore(t)
	ts := serve(t, newServer(t, admin))
	usage := []byte(`{"node":"n","usage":[]}`)
	endpoints := []struct {
		method, path string
		body         []byte
		ok           int
	}{
		{http.MethodGet, PathSnapshot, nil, http.StatusOK},
		{http.MethodGet, PathWatch + "?since=0", nil, http.StatusOK},
		{http.MethodPost, PathUsage, usage, http.StatusNoContent},
	}
	auths := []struct{ name, header string }{
		{"missing", ""},
		{"wrong token", "Bearer wrong-token"},
		{"token prefix", "Bearer " + testToken[:10]},
		{"token plus suffix", "Bearer " + testToken + "x"},
		{"basic scheme", "Basic " + testToken},
		{"no scheme", testToken},
	}
	for _, ep := range endpoints {
		for _, a := range auths {
			t.Run(ep.path+"/"+a.name, func(t *testing.T) {
				resp, b := do(t, ep.method, ts.URL+ep.path, a.header, "application/json", ep.body)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d; want 401", resp.StatusCode)
				}
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("content type %q", ct)
				}
				errorOf(t, b)
			})
		}
		t.Run(ep.path+"/valid", func(t *testing.T) {
			// A watch never ends by itself: ask only for its status.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, ep.method, ts.URL+ep.path, bytes.NewReader(ep.body))
			req.Header.Set("Authorization", "bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != ep.ok {
				t.Errorf("status %d; want %d", resp.StatusCode, ep.ok)
			}
		})
	}

	t.Run("empty configured token refuses all", func(t *testing.T) {
		s := mustServer(t, ServerOptions{Store: admin, Logger: zerolog.Nop()})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, PathSnapshot, nil)
		req.Header.Set("Authorization", "Bearer ")
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("status %d; want 401", rec.Code)
		}
	})
}

func TestWatchRefusals(t *testing.T) {
	admin := newAdminStore(t)
	for i := 0; i < 10; i++ {
		createKey(t, admin, nil)
	}
	if _, err := admin.Compact(4, 0); err != nil {
		t.Fatal(err)
	}
	oldest, _ := admin.OldestRevision()
	ts := serve(t, newServer(t, admin))
	auth := "Bearer " + testToken

	cases := []struct {
		name  string
		query string
		code  int
		msg   string
	}{
		{"no since", "", http.StatusBadRequest, ""},
		{"since not a number", "?since=abc", http.StatusBadRequest, ""},
		{"negative since", "?since=-1", http.StatusBadRequest, ""},
		{"compacted", "?since=2", http.StatusGone, "revision compacted"},
		{"ahead of the store", "?since=11", http.StatusGone, "revision ahead of store"},
		{"other store", "?since=10&store_id=someone-else", http.StatusGone, "store id mismatch"},
		{"empty store id", "?since=10&store_id=", http.StatusGone, "store id mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, http.MethodGet, ts.URL+PathWatch+tc.query, auth, "", nil)
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%s); want %d", resp.StatusCode, b, tc.code)
			}
			msg := errorOf(t, b)
			if tc.msg != "" && msg != tc.msg {
				t.Errorf("error %q; want %q", msg, tc.msg)
			}
			if tc.code == http.StatusGone {
				var body struct{ Oldest uint64 }
				json.Unmarshal(b, &body)
				if body.Oldest != oldest {
					t.Errorf("oldest %d; want %d", body.Oldest, oldest)
				}
			}
		})
	}

	other := []struct {
		method, path string
		code         int
	}{
		{http.MethodPost, PathSnapshot, http.StatusMethodNotAllowed},
		{http.MethodGet, PathUsage, http.StatusMethodNotAllowed},
		{http.MethodGet, "/replication/v1/nothing", http.StatusNotFound},
	}
	for _, o := range other {
		resp, b := do(t, o.method, ts.URL+o.path, auth, "", nil)
		if resp.StatusCode != o.code {
			t.Errorf("%s %s: status %d; want %d", o.method, o.path, resp.StatusCode, o.code)
		}
		errorOf(t, b)
	}
}

func TestUsageEndpointValidates(t *testing.T) {
	admin := newAdminStore(t)
	k := createKey(t, admin, nil)
	ts := serve(t, newServer(t, admin))
	auth := "Bearer " + testToken
	cases := []struct {
		name, ct string
		body     string
		code     int
	}{
		{"ok", "application/json", `{"node":"n1","usage":[{"key_id":"` + k.key.ID + `","last_used_at":"2030-01-01T00:00:00Z","count":3}]}`, http.StatusNoContent},
		{"charset param", "application/json; charset=utf-8", `{"node":"n1","usage":[]}`, http.StatusNoContent},
		{"wrong content type", "text/plain", `{"node":"n1","usage":[]}`, http.StatusUnsupportedMediaType},
		{"unknown field", "application/json", `{"node":"n1","usage":[],"extra":1}`, http.StatusBadRequest},
		{"unknown usage field", "application/json", `{"node":"n1","usage":[{"key_id":"a","count":1,"raw":"x"}]}`, http.StatusBadRequest},
		{"missing key id", "application/json", `{"node":"n1","usage":[{"count":1}]}`, http.StatusBadRequest},
		{"not json", "application/json", `nope`, http.StatusBadRequest},
		{"two values", "application/json", `{"node":"n1","usage":[]}{}`, http.StatusBadRequest},
		{"too large", "application/json", `{"node":"` + strings.Repeat("n", MaxUsageBody) + `","usage":[]}`, http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, http.MethodPost, ts.URL+PathUsage, auth, tc.ct, []byte(tc.body))
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d (%s); want %d", resp.StatusCode, b, tc.code)
			}
			if tc.code != http.StatusNoContent {
				errorOf(t, b)
			}
		})
	}
	got, _ := admin.GetKey(k.key.ID)
	if got.UseCount != 3 || got.LastUsedAt == nil {
		t.Errorf("key after usage: count %d last used %v", got.UseCount, got.LastUsedAt)
	}
}

// watchLines opens a watch and returns a channel of its lines.
func watchLines(t *testing.T, ctx context.Context, url string) (<-chan string, *http.Response) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("watch content type %q", ct)
	}
	ch := make(chan string, 1024)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, MaxLineSize)
		for sc.Scan() {
			ch <- sc.Text() + "\n"
		}
	}()
	return ch, resp
}

// next returns the next line or fails after a deadline.
func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-ch:
		if !ok {
			t.Fatal("watch stream ended")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no watch line within 10s")
	}
	return ""
}

func TestWatchStream(t *testing.T) {
	admin := newAdminStore(t)
	k1 := createKey(t, admin, nil)
	reg := prometheus.NewRegistry()
	srv := mustServer(t, ServerOptions{Store: admin, Token: testToken, Heartbeat: time.Hour, Logger: zerolog.Nop(), Registerer: reg})
	ts := serve(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	ch, resp := watchLines(t, ctx, ts.URL+PathWatch+"?since=0&store_id="+admin.StoreID())
	defer resp.Body.Close()
	l, err := decodeWatchLine([]byte(next(t, ch)))
	if err != nil || l.Type != typeKey || l.Revision != 1 || l.Key.ID != k1.key.ID {
		t.Fatalf("first line %+v, %v; want key %s at revision 1", l, err, k1.key.ID)
	}
	// The catch-up ends with a heartbeat at the revision reached, at once
	// even though the interval is an hour.
	if l, _ := decodeWatchLine([]byte(next(t, ch))); l.Type != typeHeartbeat || l.Revision != 1 {
		t.Fatalf("after catch-up: %+v; want heartbeat at 1", l)
	}
	if got := metric(t, reg, "extauthz_watchers", ""); got != 1 {
		t.Errorf("extauthz_watchers = %v; want 1", got)
	}
	if got := metric(t, reg, "extauthz_store_revision", ""); got != 1 {
		t.Errorf("extauthz_store_revision = %v; want 1", got)
	}

	if _, err := admin.SetUserActive("u1", false, "tester"); err != nil {
		t.Fatal(err)
	}
	k2 := createKey(t, admin, nil)
	l1, _ := decodeWatchLine([]byte(next(t, ch)))
	l2, _ := decodeWatchLine([]byte(next(t, ch)))
	if l1.Type != typeUser || l1.Revision != 2 || l1.User.Active || l2.Type != typeKey || l2.Revision != 3 || l2.Key.ID != k2.key.ID {
		t.Fatalf("pushed lines %+v %+v", l1, l2)
	}

	srv.Close()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the watch")
	}
	waitFor(t, "watcher gauge back to 0", func() bool { return metric(t, reg, "extauthz_watchers", "") == 0 })
	r2, b := do(t, http.MethodGet, ts.URL+PathWatch+"?since=0", "Bearer "+testToken, "", nil)
	if r2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("watch after Close: %d %s; want 503", r2.StatusCode, b)
	}
}

func TestHeartbeatInterval(t *testing.T) {
	admin := newAdminStore(t)
	ts := serve(t, newServer(t, admin))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, resp := watchLines(t, ctx, ts.URL+PathWatch+"?since=0")
	defer resp.Body.Close()
	for i := 0; i < 3; i++ {
		if l, err := decodeWatchLine([]byte(next(t, ch))); err != nil || l.Type != typeHeartbeat || l.Revision != 0 {
			t.Fatalf("line %d: %+v %v; want heartbeat at 0", i, l, err)
		}
	}
}

func TestNoSecretsOnTheWire(t *testing.T) {
	admin := newAdminStore(t)
	var logs keystoretest.LogBuffer
	log := zerolog.New(&logs).Level(zerolog.DebugLevel)
	srv := mustServer(t, ServerOptions{Store: admin, Token: testToken, Heartbeat: testHeartbeat, Logger: log})
	defer srv.Close()
	ts := serve(t, srv)

	const name = "the-secret-key-name-4711"
	secret := createKey(t, admin, func(k *keystore.Key) {
		k.Name = name
		k.Metadata = map[string]string{"note": "metadata-value-0815"}
		k.UserID = "u1"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, resp := watchLines(t, ctx, ts.URL+PathWatch+"?since=0")
	defer resp.Body.Close()
	var watched strings.Builder
	watched.WriteString(next(t, ch))
	// A change pushed live, not only the catch-up.
	live := createKey(t, admin, func(k *keystore.Key) { k.Name = name })
	for !strings.Contains(watched.String(), live.key.ID) {
		watched.WriteString(next(t, ch))
	}
	snapshot := string(fetch(t, ts.URL, PathSnapshot))

	f, _ := newFollower(t, t.TempDir(), ts.URL, func(o *FollowerOptions) { o.Logger = log })
	run(t, f)
	caughtUp(t, f, admin)

	forbidden := map[string]string{
		"raw key":        secret.raw,
		"live raw key":   live.raw,
		"key name":       name,
		"metadata":       "metadata-value-0815",
		"creating actor": "tester",
		"name field":     `"name"`,
	}
	for where, text := range map[string]string{"snapshot": snapshot, "watch": watched.String()} {
		if !strings.Contains(text, secret.key.ID) {
			t.Fatalf("%s does not carry the key at all: %s", where, text)
		}
		for what, s := range forbidden {
			if strings.Contains(text, s) {
				t.Errorf("%s contains the %s", where, what)
			}
		}
	}
	for what, s := range map[string]string{"raw key": secret.raw, "token": testToken, "key name": name} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs contain the %s", what)
		}
	}
}
