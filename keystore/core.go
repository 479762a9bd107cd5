package keystore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// core is what the authoritative Store and the Replica share: the bbolt
// file, the revision in force and its notification, and the lookup path
// with its cache. Each role adds its own writes on top.
type core struct {
	db      *bolt.DB
	path    string
	fileID  string // drawn when the file was created; set by openCore, then read-only
	release bool   // ReleaseMemory advises the kernel; set by openCore, then read-only

	rev     atomic.Uint64 // revision in force, a replica's staged changes included
	storeID atomic.Value  // string: the authoritative store's id

	mu      sync.Mutex    // guards changed
	changed chan struct{} // closed and replaced at every new revision in force

	cache lookupCache

	// staged is a replica's changes in force but not yet in its file; nil
	// on an authoritative store. Set by openCore, then read-only (the
	// staged value guards its own content).
	staged *staged
}

// maxCachedLookups bounds the decoded-record cache of Lookup.
const maxCachedLookups = 1 << 18

// lookupCache keeps decoded Lookup results of known keys for one store
// revision; any new revision in force (committed or staged) empties it.
// Unknown hashes are never cached, so random keys cannot grow it.
type lookupCache struct {
	mu  sync.RWMutex // guards rev and m
	rev uint64
	m   map[Hash]LookupResult
}

// fileOptions are the bbolt settings of openCore.
type fileOptions struct {
	timeout   time.Duration
	noSync    bool
	replica   bool // persist the freelist, keep no indexes
	authority bool // give the file a store id when it has none
	release   bool // see Options.ReleaseMemory
}

// openCore opens or creates the file at path, creating its buckets and
// migrating an older schema in the transaction that opens it.
func openCore(path string, fo fileOptions) (*core, error) {
	if fo.timeout <= 0 {
		fo.timeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create data dir: %w", err)
	}
	// The admin does not persist its freelist (cheaper commits; open walks
	// the file once). A replica persists it, so a sidecar restarts without
	// walking, and touching, every page of a large file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: fo.timeout, NoSync: fo.noSync, NoFreelistSync: !fo.replica, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	// bbolt's default 10 ms batch delay caps concurrent creators near
	// 1,000/s whatever the disk does; 2 ms still coalesces a burst.
	db.MaxBatchDelay = 2 * time.Millisecond
	c := &core{db: db, path: path, release: fo.release, changed: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(metaSchema); {
		case v == nil:
			if err := meta.Put(metaSchema, u64(SchemaVersion)); err != nil {
				return err
			}
		case len(v) == 8 && binary.BigEndian.Uint64(v) == 1:
			if err := migrateKeys(tx); err != nil {
				return fmt.Errorf("migrate from schema 1: %w", err)
			}
			if err := indexOwners(tx, fo.replica); err != nil {
				return fmt.Errorf("migrate from schema 2: %w", err)
			}
		case len(v) == 8 && binary.BigEndian.Uint64(v) == 2:
			if err := indexOwners(tx, fo.replica); err != nil {
				return fmt.Errorf("migrate from schema 2: %w", err)
			}
		case len(v) != 8 || binary.BigEndian.Uint64(v) != SchemaVersion:
			return ErrSchema
		}
		if meta.Get(metaFileID) == nil {
			if err := meta.Put(metaFileID, []byte(uuid.NewString())); err != nil {
				return err
			}
		}
		c.fileID = string(meta.Get(metaFileID))
		if fo.authority && meta.Get(metaStoreID) == nil {
			if err := meta.Put(metaStoreID, []byte(uuid.NewString())); err != nil {
				return err
			}
		}
		c.storeID.Store(string(meta.Get(metaStoreID)))
		c.rev.Store(getU64(meta.Get(metaRevision)))
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("keystore: init %s: %w", path, err)
	}
	return c, nil
}

// FileID identifies this file: it is drawn when the file is created and
// never changes, so a new file at the same path (a snapshot installed over
// a replica) has another. Files created before it existed get one when
// they are next opened.
func (c *core) FileID() string { return c.fileID }

// Path returns the file the store lives in.
func (c *core) Path() string { return c.path }

// Sync forces the file to disk; used after NoSync bulk loads.
func (c *core) Sync() error { return c.db.Sync() }

// Revision returns the revision in force: the last committed one, or on a
// replica the last staged one (see Replica.Stage).
func (c *core) Revision() uint64 { return c.rev.Load() }

// StoreID returns the identity of the authoritative store this data came
// from; empty for a replica that never loaded a snapshot.
func (c *core) StoreID() string { v, _ := c.storeID.Load().(string); return v }

// Changed returns a channel closed at the next revision in force.
func (c *core) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *core) notify(rev uint64) {
	c.mu.Lock()
	if rev > c.rev.Load() {
		c.rev.Store(rev)
	}
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// LookupResult is what a check needs to know about a presented key.
type LookupResult struct {
	Key *Key
	// OwnerActive is false when the key has an owner who was deactivated.
	OwnerActive bool
}

// Lookup finds the key whose hash is h. It returns ErrNotFound for an
// unknown hash, and another error only when the store cannot be read.
// Results of known keys are cached until the next revision in force; the
// returned Key is shared and must not be modified.
func (c *core) Lookup(h Hash) (LookupResult, error) {
	rev := c.rev.Load() // read before the transaction: a cached entry is never older than its tag
	lc := &c.cache
	lc.mu.RLock()
	if lc.rev == rev {
		if res, ok := lc.m[h]; ok {
			lc.mu.RUnlock()
			return res, nil
		}
	}
	lc.mu.RUnlock()
	res, err := c.lookup(h)
	if err != nil {
		return res, err
	}
	lc.mu.Lock()
	if lc.rev != rev && rev > lc.rev {
		lc.rev, lc.m = rev, nil
	}
	if lc.rev == rev {
		if lc.m == nil {
			lc.m = make(map[Hash]LookupResult)
		}
		if len(lc.m) < maxCachedLookups {
			lc.m[h] = res
		}
	}
	lc.mu.Unlock()
	return res, nil
}

func (c *core) lookup(h Hash) (LookupResult, error) {
	var res LookupResult
	var keys map[Hash]*Key
	var users map[string]*User
	if p := c.staged; p != nil {
		// Held across the transaction: see staged.
		p.mu.RLock()
		defer p.mu.RUnlock()
		keys, users = p.keys, p.users
	}
	err := c.db.View(func(tx *bolt.Tx) error {
		k := keys[h]
		if k == nil {
			v := tx.Bucket(bucketKeys).Get(h[:])
			if v == nil {
				return ErrNotFound
			}
			var err error
			if k, err = decodeKey(v); err != nil {
				return err
			}
		}
		// The seek already matched; compare the stored hash in constant time
		// so no byte-wise early exit ever depends on secret material.
		if !k.Hash.Equal(h) {
			return ErrNotFound
		}
		res.Key = k
		res.OwnerActive = true
		if k.UserID == "" {
			return nil
		}
		if u := users[k.UserID]; u != nil {
			res.OwnerActive = u.Active
		} else if uv := tx.Bucket(bucketUsers).Get([]byte(k.UserID)); uv != nil {
			var u User
			if err := json.Unmarshal(uv, &u); err != nil {
				return fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			res.OwnerActive = u.Active
		}
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrCorrupt) {
		err = fmt.Errorf("keystore: lookup: %w", err)
	}
	return res, err
}

// GetKeyByHash returns the record with the given hash as the file holds
// it (on a replica, without its staged changes).
func (c *core) GetKeyByHash(h Hash) (*Key, error) {
	var k *Key
	err := c.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = getKey(tx, h)
		return err
	})
	return k, err
}

// ForEachKey calls fn for every record in hash order inside one read
// transaction.
func (c *core) ForEachKey(fn func(*Key) error) error {
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			return fn(k)
		})
	})
}

// Check runs bbolt's consistency check of the whole file (every page
// reachable once, freelist and branches in order) in one read transaction
// and returns every problem it finds, joined; ErrClosed after Close.
func (c *core) Check() error {
	err := c.db.View(func(tx *bolt.Tx) error {
		var errs []error
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	})
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
