//go:build linux

package keystore

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseMemoryDropsMappedPages: after reading every record, the
// store's file pages are resident; ReleaseMemory gives them back, and only
// when the program asked for it (Options.ReleaseMemory).
func TestReleaseMemoryDropsMappedPages(t *testing.T) {
	s := mustOpen(t, "", nil)
	batch := make([]*Key, 0, 1000)
	for i := 0; i < 40000; i++ {
		_, k := newKey(t, "signals")
		k.Name = strings.Repeat("n", 100)
		batch = append(batch, k)
		if len(batch) == cap(batch) {
			if _, err := s.ImportKeys(batch, "t"); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.ForEachKey(func(*Key) error { return nil }); err != nil {
		t.Fatal(err)
	}
	before := rssFileKiB(t)
	if err := s.ReleaseMemory(); err != nil {
		t.Fatal(err)
	}
	if after := rssFileKiB(t); before-after >= 8<<10 {
		t.Fatalf("RssFile %d KiB before, %d KiB after ReleaseMemory without the option; want no drop", before, after)
	}
	s.release = true // as Open with Options.ReleaseMemory
	if err := s.ReleaseMemory(); err != nil {
		t.Fatal(err)
	}
	after := rssFileKiB(t)
	// The file is tens of MiB; at least 8 MiB of it must leave RSS.
	if before-after < 8<<10 {
		t.Fatalf("RssFile %d KiB before, %d KiB after ReleaseMemory; want a drop of 8 MiB or more", before, after)
	}
}
