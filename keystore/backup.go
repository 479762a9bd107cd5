package keystore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
)

// Backup writes a consistent copy of the whole file to w while the store
// keeps serving: one read transaction (bbolt's Tx.WriteTo), so writers
// are not held up, and the copy is the store as of one revision. It
// returns the bytes written and the revision copied. The copy is a store
// file like any other; Restore puts it back.
func (s *Store) Backup(w io.Writer) (n int64, rev uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		rev = getU64(tx.Bucket(bucketMeta).Get(metaRevision))
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, rev, fmt.Errorf("keystore: backup: %w", err)
	}
	return n, rev, nil
}

// Restored is what Restore put in place.
type Restored struct {
	// StoreID is the new history id the restored file was given.
	StoreID string
	// Revision is the backup's revision, where the new history starts.
	Revision uint64
}

// Restore replaces the authoritative store file at path with the backup
// at backup, which must be a store file (one Backup wrote) that passes
// bbolt's consistency check. No process may hold path: a store open
// elsewhere yields ErrLocked, and the file is left as it is.
//
// The restored file starts a new history: it gets a new store id (and
// file id), so that a replica that followed the replaced history, which
// may hold changes past the backup's revision under the same revision
// numbers, is refused a resume of its watch and loads a new snapshot
// instead of keeping what the restored store no longer has. The backup
// itself is not changed.
//
// The restored file is a single admin's store even when the backup came
// from a member of an admin cluster: the member's consensus bookkeeping
// (the applied log index, the adopted store id) belongs to a raft log the
// backup does not hold, and is dropped. Started as the first member of a
// new cluster, the file is taken over as that cluster's first state
// (package cluster).
func Restore(backup, path string, opts Options) (Restored, error) {
	var r Restored
	// Hold the current file's lock for the whole swap, so that no admin
	// opens it meanwhile (and none holds it now).
	if _, err := os.Stat(path); err == nil {
		cur, err := Open(path, opts)
		if err != nil {
			return r, err
		}
		defer cur.Close()
	}
	tmp := path + ".restore"
	_ = os.Remove(tmp)
	if err := copyToNew(backup, tmp); err != nil {
		return r, err
	}
	defer os.Remove(tmp) // after the rename there is nothing to remove
	st, err := Open(tmp, Options{Timeout: opts.Timeout})
	if err != nil {
		return r, fmt.Errorf("keystore: restore %s: not a store file: %w", backup, err)
	}
	if err := st.Check(); err != nil {
		st.Close()
		return r, fmt.Errorf("keystore: restore %s: consistency check: %w", backup, err)
	}
	r.StoreID = uuid.NewString()
	err = st.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		r.Revision = getU64(meta.Get(metaRevision))
		if err := meta.Put(metaStoreID, []byte(r.StoreID)); err != nil {
			return err
		}
		if err := meta.Delete(metaApplied); err != nil {
			return err
		}
		if err := meta.Delete(metaAdopted); err != nil {
			return err
		}
		return meta.Put(metaFileID, []byte(uuid.NewString()))
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return r, fmt.Errorf("keystore: restore: new history: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return r, fmt.Errorf("keystore: restore: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return r, nil
}

// copyToNew copies src to a new file dst and syncs it.
func copyToNew(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("keystore: restore: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("keystore: restore: %w", err)
	}
	_, err = io.Copy(out, in)
	err = errors.Join(err, out.Sync(), out.Close())
	if err != nil {
		return fmt.Errorf("keystore: restore: copy %s: %w", src, err)
	}
	return nil
}
