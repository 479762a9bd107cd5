//go:build linux

package keystore

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMemory drops the resident pages of the store's memory map with
// madvise(MADV_DONTNEED), when the store was opened with ReleaseMemory set
// (otherwise it does nothing). They are clean file pages (bbolt writes
// through the file, not the map), so the kernel keeps them in its page
// cache and faults them back in on the next read. Bulk writers such as the
// import call it between chunks, because random-hash inserts touch every
// page of the key bucket.
//
// What it changes is the process's RSS (VmRSS, RssFile) and cgroup v2's
// memory.stat file_mapped. What it does not change is the pod's memory
// accounting: under cgroup v2 a page-cache page stays charged to the
// cgroup that faulted it in until the page itself is freed (reclaimed,
// or its file truncated or deleted), not until it is unmapped, so
// memory.current, memory.stat file, the OOM killer's view and the
// kubelet's working set (memory.current minus inactive_file) are the
// same before and after. Those pages were reclaimable either way.
//
// It runs inside a read transaction, which holds bbolt's mmap lock, so the
// map cannot move while it is advised.
func (c *core) ReleaseMemory() error {
	if !c.release {
		return nil
	}
	return c.db.View(func(tx *bolt.Tx) error {
		data := c.db.Info().Data
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
