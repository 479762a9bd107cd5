//go:build linux

package keystore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMemory drops the resident pages of the store's memory map. They
// are clean file pages (bbolt writes through the file, not the map), so
// the kernel keeps them in its page cache and faults them back in on the
// next read; the process's RSS no longer counts them. Bulk writers such as
// the import call it between chunks, because random-hash inserts touch
// every page of the key bucket.
//
// It runs inside a read transaction, which holds bbolt's mmap lock, so the
// map cannot move while it is advised.
func (s *Store) ReleaseMemory() error {
	return s.db.View(func(tx *bolt.Tx) error {
		data := s.db.Info().Data
		size := uintptr(tx.Size())
		if data == 0 || size == 0 {
			return nil
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, size, unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("keystore: release memory: %w", errno)
		}
		return nil
	})
}
