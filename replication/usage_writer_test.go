package replication

import (
	"net/http"
	"testing"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/keystore"
)

type noQuorumError struct{}

func (noQuorumError) Error() string     { return "admin cluster: no quorum of admin members; retry" }
func (noQuorumError) Unavailable() bool { return true }

func TestUsageGoesThroughRecordUsageAndAnUnavailableOneIs503(t *testing.T) {
	admin := newAdminStore(t)
	var got []keystore.Usage
	fail := false
	srv := NewServer(ServerOptions{Store: admin, Token: testToken, Logger: zerolog.Nop(), RecordUsage: func(b []keystore.Usage) error {
		if fail {
			return noQuorumError{}
		}
		got = append(got, b...)
		return nil
	}})
	t.Cleanup(srv.Close)
	ts := serve(t, srv)
	body := []byte(`{"node":"n1","usage":[{"key_id":"k1","count":2}]}`)
	if resp, b := do(t, http.MethodPost, ts.URL+PathUsage, "Bearer "+testToken, "application/json", body); resp.StatusCode != http.StatusNoContent || len(got) != 1 {
		t.Fatalf("status %d (%s), %d reports passed on", resp.StatusCode, b, len(got))
	}
	fail = true
	resp, b := do(t, http.MethodPost, ts.URL+PathUsage, "Bearer "+testToken, "application/json", body)
	if resp.StatusCode != http.StatusServiceUnavailable || errorOf(t, b) != (noQuorumError{}).Error() {
		t.Fatalf("without quorum: status %d (%s)", resp.StatusCode, b)
	}
}
