//go:build !linux

package keystore

// ReleaseMemory is a no-op where madvise is not used.
func (c *core) ReleaseMemory() error { return nil }
