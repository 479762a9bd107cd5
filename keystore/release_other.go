//go:build !linux

package keystore

// ReleaseMemory is a no-op where madvise is not used.
func (s *Store) ReleaseMemory() error { return nil }
