package childproc

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A shell stands in for extauthz: it logs the same lines, then waits.
const script = `echo '{"message":"listening","server":"http","addr":"127.0.0.1:1234"}' >&2
echo '{"message":"started"}' >&2
echo '{"level":"warn","message":"something odd"}' >&2
exec sleep 60`

func TestStartReadsAddressesAndProblems(t *testing.T) {
	p, err := Start(context.Background(), "fake", "/bin/sh", []string{"-c", script}, nil)
	if err != nil {
		t.Skipf("no /bin/sh here: %v", err)
	}
	defer StopAll()
	if got := p.URL("http"); got != "http://127.0.0.1:1234" {
		t.Fatalf("URL(http) = %q; want http://127.0.0.1:1234", got)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if w, _, first := p.Problems(); w == 1 && strings.Contains(first[0], "something odd") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the warn line after start was not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() || p.ExitCode() != -1 {
		t.Fatalf("after SIGTERM: exited %v code %d; want exited, -1 (signal)", p.Exited(), p.ExitCode())
	}
}

func TestStartFailsWhenTheChildDiesEarly(t *testing.T) {
	_, err := Start(context.Background(), "dies", "/bin/sh", []string{"-c", "echo boom >&2; exit 3"}, nil)
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Start = %v; want an error carrying the child's last log line", err)
	}
}
