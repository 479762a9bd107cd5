package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// TestMain lets the test binary stand in for the bench binary when it is
// re-executed as a do-nothing server.
func TestMain(m *testing.M) {
	if len(os.Args) == 3 && (os.Args[1] == flagNoopGRPC || os.Args[1] == flagNoopHTTP) {
		if err := serveNoop(os.Args[1], os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	childproc.StopAll()
	os.Exit(code)
}

// TestLoadAgainstNoop runs a short load against both do-nothing servers,
// as separate processes, and checks the figures are sane.
func TestLoadAgainstNoop(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	valid, invalid := []string{"nex_a", "nex_b"}, []string{"nex_c"}
	spec := loadSpec{Concurrency: 4, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond}

	pg, err := childproc.Start(ctx, "noop-grpc", self, []string{flagNoopGRPC, "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := newGRPCLoad(pg.Addr("grpc"), 2, valid, invalid, false)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	res := runGRPC(ctx, g, spec)
	t.Logf("gRPC: %s", loadCell(res))
	if res.Requests == 0 || res.Errors > 0 || res.Hist.Count() != res.Requests {
		t.Fatalf("gRPC load: %+v", res)
	}
	if m, err := pg.Memory(); err != nil || m.RSS == 0 {
		t.Fatalf("memory: %+v %v", m, err)
	}
	if _, err := pg.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}

	ph, err := childproc.Start(ctx, "noop-http", self, []string{flagNoopHTTP, "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := newHTTPLoad(ph.Addr("http"), 4, valid, invalid, false)
	defer h.Close()
	res = runHTTP(ctx, h, spec)
	t.Logf("HTTP: %s", loadCell(res))
	if res.Requests == 0 || res.Errors > 0 {
		t.Fatalf("HTTP load: %+v", res)
	}
	if _, err := ph.WaitReady(ctx, ph.URL("http")+"/readyz", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := ph.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOnlyClusterFlag: -only cluster keeps the largest -sidecars count
// (unless -sidecars is given) and other values are refused.
func TestOnlyClusterFlag(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "extauthz")
	if err := os.WriteFile(bin, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join("..", "..", "examples", "policies", "nexgent.yaml")
	o, err := parseFlags([]string{"-bin", bin, "-policy", pol, "-only", "cluster"})
	if err != nil || o.only != onlyCluster || len(o.sidecars) != 1 || o.sidecars[0] != 100 {
		t.Fatalf("-only cluster: %+v, %v", o, err)
	}
	if o, err = parseFlags([]string{"-bin", bin, "-policy", pol, "-only", "cluster", "-sidecars", "2,5"}); err != nil || len(o.sidecars) != 2 {
		t.Fatalf("-only cluster -sidecars 2,5: %v, %v", o.sidecars, err)
	}
	if _, err := parseFlags([]string{"-bin", bin, "-policy", pol, "-only", "check"}); err == nil {
		t.Fatal("-only check was accepted")
	}
}
