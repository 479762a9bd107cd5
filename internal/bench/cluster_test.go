package main

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// TestPrefillAdmin checks that a prefilled store holds every key, that the
// sampled raw keys resolve to their ids, and that invalid keys are unknown.
// BENCH_PREFILL_KEYS=1000000 times a full-size prefill.
func TestPrefillAdmin(t *testing.T) {
	n := 5_000
	if v := os.Getenv("BENCH_PREFILL_KEYS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	dir := t.TempDir()
	c, err := newCluster(dir, "/bin/true", filepath.Join("..", "..", "examples", "policies", "nexgent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ks, err := c.prefillAdmin(filepath.Join(dir, "admin"), n, 1000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("prefilled %d keys in %v", n, time.Since(start))
	if fi, err := os.Stat(filepath.Join(dir, "admin", adminStoreFile)); err == nil {
		t.Logf("store file %d MiB", fi.Size()>>20)
	}
	st, err := keystore.Open(filepath.Join(dir, "admin", adminStoreFile), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	total := 0
	if err := st.ForEachKey(func(*keystore.Key) error { total++; return nil }); err != nil {
		t.Fatal(err)
	}
	if total != n {
		t.Fatalf("store holds %d keys, want %d", total, n)
	}
	for i, raw := range ks.Valid {
		res, err := st.Lookup(keystore.HashKey(raw))
		if err != nil {
			t.Fatalf("sample key %d: %v", i, err)
		}
		if res.Key.ID != ks.IDs[i] || res.Key.Scopes[0] != "signals" {
			t.Fatalf("sample key %d: got id %s scopes %v, want id %s", i, res.Key.ID, res.Key.Scopes, ks.IDs[i])
		}
	}
	for _, raw := range ks.Invalid {
		if _, err := st.Lookup(keystore.HashKey(raw)); err == nil {
			t.Fatal("an invalid key is in the store")
		}
	}
	if oldest, _ := st.OldestRevision(); n > changeLogKeep && st.Revision()-oldest >= changeLogKeep {
		t.Fatalf("change log not compacted: oldest %d, head %d", oldest, st.Revision())
	}
}
