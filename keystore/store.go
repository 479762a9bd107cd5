package keystore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the on-disk layout version written into every store.
// 2: key records store their enforcement view first (record.go). Open
// migrates a schema 1 file; older builds refuse a schema 2 file.
const SchemaVersion = 3

var (
	bucketMeta     = []byte("meta")
	bucketKeys     = []byte("keys")     // hash -> key record (record.go)
	bucketIDs      = []byte("ids")      // key id -> hash
	bucketUsers    = []byte("users")    // user id -> JSON User
	bucketProjects = []byte("projects") // project id -> JSON Project
	bucketChanges  = []byte("changes")  // revision (8 bytes BE) -> JSON Change
	bucketAudit    = []byte("audit")    // unix nanos (8) + sequence (8) -> JSON Event
	bucketOwners   = []byte("owners")   // owner entry (ownerKey) -> hash; authoritative stores only

	metaSchema   = []byte("schema")
	metaStoreID  = []byte("store_id")
	metaRevision = []byte("revision")
	metaFileID   = []byte("file_id") // random, given to each file when it is created
)

var allBuckets = [][]byte{bucketMeta, bucketKeys, bucketIDs, bucketUsers, bucketProjects, bucketChanges, bucketAudit, bucketOwners}

// Options configures Open. The zero value is usable.
type Options struct {
	// Timeout bounds the wait for the file lock held by another process.
	// Zero means one second. Open then fails with ErrLocked.
	Timeout time.Duration
	// NoSync skips fsync on commit. Only for bulk loads whose result is
	// synced with Sync before it is trusted.
	NoSync bool
	// Authority makes the store the source of truth: Open gives it a
	// store id when it has none. Replicas take the admin's id instead.
	Authority bool
	// Now is the clock used for record and audit times. Nil means time.Now.
	Now func() time.Time
	// Replica marks a sidecar's replica: it keeps no id index (a replica
	// never looks keys up by id, and a key's hash never changes), and
	// snapshot records, which arrive in hash order, are packed into full
	// pages. GetKey does not work on a replica.
	Replica bool
}

// Store is a bbolt-backed key store. See the package documentation.
type Store struct {
	db      *bolt.DB
	path    string
	now     func() time.Time
	replica bool

	rev     atomic.Uint64 // revision in force, staged changes included
	durable atomic.Uint64 // revision of the file
	storeID atomic.Value  // string
	fileID  string

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at every new revision in force

	cache lookupCache

	staged   staged     // a replica's changes in force but not yet in the file
	commitMu sync.Mutex // one Commit at a time
}

// maxCachedLookups bounds the decoded-record cache of Lookup.
const maxCachedLookups = 1 << 18

// lookupCache keeps decoded Lookup results of known keys for one store
// revision; any new revision in force (committed or staged) empties it.
// Unknown hashes are never cached, so random keys cannot grow it.
type lookupCache struct {
	mu  sync.RWMutex
	rev uint64
	m   map[Hash]LookupResult
}

// Open opens or creates the store file at path. A file locked by another
// process yields ErrLocked after opts.Timeout.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create data dir: %w", err)
	}
	// The admin does not persist its freelist (cheaper commits; open walks
	// the file once). A replica persists it, so a sidecar restarts without
	// walking, and touching, every page of a large file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync, NoFreelistSync: !opts.Replica, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	// bbolt's default 10 ms batch delay caps concurrent creators near
	// 1,000/s whatever the disk does; 2 ms still coalesces a burst.
	db.MaxBatchDelay = 2 * time.Millisecond
	s := &Store{db: db, path: path, now: opts.Now, replica: opts.Replica, changed: make(chan struct{})}
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
			if err := indexOwners(tx, opts.Replica); err != nil {
				return fmt.Errorf("migrate from schema 2: %w", err)
			}
		case len(v) == 8 && binary.BigEndian.Uint64(v) == 2:
			if err := indexOwners(tx, opts.Replica); err != nil {
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
		s.fileID = string(meta.Get(metaFileID))
		if opts.Authority && meta.Get(metaStoreID) == nil {
			if err := meta.Put(metaStoreID, []byte(uuid.NewString())); err != nil {
				return err
			}
		}
		s.storeID.Store(string(meta.Get(metaStoreID)))
		s.rev.Store(getU64(meta.Get(metaRevision)))
		s.durable.Store(s.rev.Load())
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("keystore: init %s: %w", path, err)
	}
	return s, nil
}

// Close commits staged changes and closes the file. Calls after Close fail
// with ErrClosed.
func (s *Store) Close() error {
	err := s.Commit()
	if err != nil && errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		err = nil
	}
	return errors.Join(err, s.db.Close())
}

// FileID identifies this file: it is drawn when the file is created and
// never changes, so a new file at the same path (a snapshot installed over
// a replica) has another. Files created before it existed get one when
// they are next opened.
func (s *Store) FileID() string { return s.fileID }

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

// Sync forces the file to disk; used after NoSync bulk loads.
func (s *Store) Sync() error { return s.db.Sync() }

// Revision returns the revision in force: the last committed one, or on a
// replica the last staged one (see Stage).
func (s *Store) Revision() uint64 { return s.rev.Load() }

// StoreID returns the identity of the authoritative store this data came
// from; empty for a replica that never loaded a snapshot.
func (s *Store) StoreID() string { v, _ := s.storeID.Load().(string); return v }

// Changed returns a channel closed at the next revision in force.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

func (s *Store) notify(rev uint64) {
	s.mu.Lock()
	if rev > s.rev.Load() {
		s.rev.Store(rev)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
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
func (s *Store) Lookup(h Hash) (LookupResult, error) {
	rev := s.rev.Load() // read before the transaction: a cached entry is never older than its tag
	c := &s.cache
	c.mu.RLock()
	if c.rev == rev {
		if res, ok := c.m[h]; ok {
			c.mu.RUnlock()
			return res, nil
		}
	}
	c.mu.RUnlock()
	res, err := s.lookup(h)
	if err != nil {
		return res, err
	}
	c.mu.Lock()
	if c.rev != rev && rev > c.rev {
		c.rev, c.m = rev, nil
	}
	if c.rev == rev {
		if c.m == nil {
			c.m = make(map[Hash]LookupResult)
		}
		if len(c.m) < maxCachedLookups {
			c.m[h] = res
		}
	}
	c.mu.Unlock()
	return res, nil
}

func (s *Store) lookup(h Hash) (LookupResult, error) {
	var res LookupResult
	// Held across the transaction: see staged.
	p := &s.staged
	p.mu.RLock()
	defer p.mu.RUnlock()
	err := s.db.View(func(tx *bolt.Tx) error {
		k := p.keys[h]
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
		if u := p.users[k.UserID]; u != nil {
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

// GetKey returns the record with the given id.
func (s *Store) GetKey(id string) (*Key, error) {
	var k *Key
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = getKeyByID(tx, id)
		return err
	})
	return k, err
}

// GetKeyByHash returns the record with the given hash.
func (s *Store) GetKeyByHash(h Hash) (*Key, error) {
	var k *Key
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = getKey(tx, h)
		return err
	})
	return k, err
}

// ListKeys returns every record for which keep returns true (all when keep
// is nil), oldest first.
func (s *Store) ListKeys(keep func(*Key) bool) ([]*Key, error) {
	var out []*Key
	err := s.ForEachKey(func(k *Key) error {
		if keep == nil || keep(k) {
			out = append(out, k)
		}
		return nil
	})
	sortOldestFirst(out)
	return out, err
}

func sortOldestFirst(keys []*Key) {
	sort.SliceStable(keys, func(i, j int) bool {
		if !keys[i].CreatedAt.Equal(keys[j].CreatedAt) {
			return keys[i].CreatedAt.Before(keys[j].CreatedAt)
		}
		return keys[i].ID < keys[j].ID
	})
}

// Owner selects the keys of one user or one project, for ListOwnedKeys.
type Owner struct {
	UserID    string // the keys whose UserID is this, when not empty
	ProjectID string // else the keys whose ProjectID is this
}

// ListOwnedKeys returns the records of one user's or one project's keys,
// oldest first, through the owner index: it reads only those records,
// whatever the size of the store. It works on an authoritative store (a
// replica keeps no index and returns none).
func (s *Store) ListOwnedKeys(o Owner) ([]*Key, error) {
	kind, id := byte(ownerUser), o.UserID
	if id == "" {
		kind, id = ownerProject, o.ProjectID
	}
	if id == "" {
		return nil, nil
	}
	prefix := ownerPrefix(kind, id)
	var out []*Key
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOwners).Cursor()
		for ek, h := c.Seek(prefix); ek != nil && bytes.HasPrefix(ek, prefix); ek, h = c.Next() {
			v := tx.Bucket(bucketKeys).Get(h)
			if v == nil {
				continue
			}
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			// The entry's key id is the rest of its name; the record must
			// agree, so a stale entry can never show another owner's key.
			if k.ID != string(ek[len(prefix):]) || (kind == ownerUser && k.UserID != id) || (kind == ownerProject && k.ProjectID != id) {
				continue
			}
			out = append(out, k)
		}
		return nil
	})
	sortOldestFirst(out)
	return out, err
}

// ForEachKey calls fn for every record in hash order inside one read
// transaction.
func (s *Store) ForEachKey(fn func(*Key) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			return fn(k)
		})
	})
}

// GetUser returns the user record; an unknown user is reported as active,
// since users exist implicitly.
func (s *Store) GetUser(id string) (User, error) {
	u := User{ID: id, Active: true}
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketUsers).Get([]byte(id)); v != nil {
			return json.Unmarshal(v, &u)
		}
		return nil
	})
	return u, err
}

// Stats counts keys by state at now.
type Stats struct{ Active, Expired, Revoked int }

// Stats walks the key bucket and counts keys by state.
func (s *Store) Stats(now time.Time) (Stats, error) {
	var st Stats
	err := s.ForEachKey(func(k *Key) error {
		switch {
		case k.Revoked():
			st.Revoked++
		case k.Expired(now):
			st.Expired++
		default:
			st.Active++
		}
		return nil
	})
	return st, err
}

func getKey(tx *bolt.Tx, h Hash) (*Key, error) {
	v := tx.Bucket(bucketKeys).Get(h[:])
	if v == nil {
		return nil, ErrNotFound
	}
	return decodeKey(v)
}

func getKeyByID(tx *bolt.Tx, id string) (*Key, error) {
	hv := tx.Bucket(bucketIDs).Get([]byte(id))
	if len(hv) != HashSize {
		return nil, ErrNotFound
	}
	var h Hash
	copy(h[:], hv)
	return getKey(tx, h)
}

func putKey(tx *bolt.Tx, k *Key) error {
	v, err := encodeKey(k)
	if err != nil {
		return err
	}
	return putKeyBytes(tx, k, v, true)
}

// putKeyBytes stores the encoded record v of k, and its id and owner index
// entries when index is true. A key's owner and project never change (no
// API changes them), so the owner entries are written when the record is
// new or its id moved to another hash, not on every update.
func putKeyBytes(tx *bolt.Tx, k *Key, v []byte, index bool) error {
	if !index {
		return tx.Bucket(bucketKeys).Put(k.Hash[:], v)
	}
	ids := tx.Bucket(bucketIDs)
	old := ids.Get([]byte(k.ID))
	// A replica may receive a record whose id moved to another hash; drop the stale entry.
	if old != nil && !bytes.Equal(old, k.Hash[:]) {
		if err := tx.Bucket(bucketKeys).Delete(old); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketKeys).Put(k.Hash[:], v); err != nil {
		return err
	}
	if old == nil || !bytes.Equal(old, k.Hash[:]) {
		if err := putOwners(tx, k); err != nil {
			return err
		}
	}
	return ids.Put([]byte(k.ID), k.Hash[:])
}

// Owner entries: a kind byte, the owner id with its length first (so that
// no id is a prefix of another's entries), then the key id.
const (
	ownerUser    = 'u'
	ownerProject = 'p'
)

func ownerPrefix(kind byte, owner string) []byte {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(owner))
	b = append(b, kind)
	b = binary.AppendUvarint(b, uint64(len(owner)))
	return append(b, owner...)
}

func putOwners(tx *bolt.Tx, k *Key) error {
	b := tx.Bucket(bucketOwners)
	for _, o := range []struct {
		kind byte
		id   string
	}{{ownerUser, k.UserID}, {ownerProject, k.ProjectID}} {
		if o.id == "" {
			continue
		}
		if err := b.Put(append(ownerPrefix(o.kind, o.id), k.ID...), k.Hash[:]); err != nil {
			return err
		}
	}
	return nil
}

// indexOwners builds the owner index of a schema 2 file and marks it
// schema 3, in the transaction that opens it. A replica keeps no index.
func indexOwners(tx *bolt.Tx, replica bool) error {
	if first, _ := tx.Bucket(bucketIDs).Cursor().First(); !replica && first != nil {
		err := tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			return putOwners(tx, k)
		})
		if err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, u64(SchemaVersion))
}

// migrateChunk bounds the records migrateKeys holds decoded at once.
var migrateChunk = 10_000

// migrateKeys rewrites every key record of a schema 1 file in the schema 2
// form, in the transaction that opens it, migrateChunk records at a time.
func migrateKeys(tx *bolt.Tx) error {
	keys := tx.Bucket(bucketKeys)
	var from []byte // first hash of the next chunk
	for done := false; !done; {
		type rec struct{ h, v []byte }
		var recs []rec
		c := keys.Cursor()
		h, v := c.First()
		if from != nil {
			h, v = c.Seek(from)
		}
		for ; h != nil && len(recs) < migrateChunk; h, v = c.Next() {
			k, err := decodeKey(v)
			if err != nil {
				return err
			}
			nv, err := encodeKey(k)
			if err != nil {
				return err
			}
			if !bytes.Equal(nv, v) { // a replica's records are already the view alone
				recs = append(recs, rec{bytes.Clone(h), nv})
			}
		}
		done, from = h == nil, bytes.Clone(h)
		for _, r := range recs {
			if err := keys.Put(r.h, r.v); err != nil {
				return err
			}
		}
	}
	// Left by development builds between the two schemas.
	if tx.Bucket([]byte("enforcement")) != nil {
		if err := tx.DeleteBucket([]byte("enforcement")); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(metaSchema, u64(SchemaVersion))
}

func putUser(tx *bolt.Tx, u *User) error {
	v, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketUsers).Put([]byte(u.ID), v)
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}
