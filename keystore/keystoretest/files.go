package keystoretest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// NoRawKeysInFiles fails t when a file under any of dirs (a store, a raft
// log, raft snapshots, a replica) holds one of raws, or when a raw key is
// empty (a create that returned none), and returns how many files it
// searched, for the caller to check the search covered what it expects.
func NoRawKeysInFiles(t testing.TB, dirs, raws []string) int {
	t.Helper()
	files := 0
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			for _, raw := range raws {
				if raw == "" || bytes.Contains(b, []byte(raw)) {
					t.Errorf("%s holds a raw key (or a create returned none)", p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return files
}
