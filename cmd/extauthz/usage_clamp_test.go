package main

import (
	"bytes"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// TestForgedUsageReport: a usage report from the replication token's
// holder claiming a use in 2099 and a count of 2^64-1, sent to a real
// admin's usage endpoint, does not pin the key's lastUsedAt in the future.
func TestForgedUsageReport(t *testing.T) {
	c := newCluster(t, 0)
	k := signalsKey(c, "reported")
	body := `{"node":"forger","usage":[{"key_id":"` + k.ID + `","last_used_at":"2099-01-01T00:00:00Z","count":18446744073709551615}]}`
	req, _ := http.NewRequest(http.MethodPost, c.adminURL()+"/replication/v1/usage", bytes.NewReader([]byte(body)))
	req.Header.Set("Authorization", "Bearer "+readToken(t, filepath.Join(c.dir, "replication-token")))
	req.Header.Set("Content-Type", "application/json")
	resp, err := faultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("usage report: %d", resp.StatusCode)
	}
	var rec struct {
		LastUsedAt *time.Time `json:"lastUsedAt"`
	}
	if code := httpJSON(t, "GET", c.adminURL()+"/api/v1/api-keys/"+k.ID, c.token, nil, &rec); code != 200 {
		t.Fatalf("get key: %d", code)
	}
	if rec.LastUsedAt == nil || rec.LastUsedAt.After(time.Now().Add(10*time.Minute)) {
		t.Fatalf("lastUsedAt after a forged report: %v", rec.LastUsedAt)
	}
}
