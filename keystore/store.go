package keystore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
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
	metaApplied  = []byte("applied") // last consensus log index applied (replicated.go)
	metaAdopted  = []byte("adopted") // set once the store id was taken from a cluster (replicated.go)
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
	// Now is the clock used for record and audit times. Nil means time.Now.
	Now func() time.Time
	// ReleaseMemory lets ReleaseMemory advise the kernel to drop the
	// file map's resident pages (see ReleaseMemory for what that changes
	// and what it does not). Off, ReleaseMemory does nothing: a library
	// does not change a process's memory behind its back, so the program
	// (cmd/extauthz) decides.
	ReleaseMemory bool
}

// Store is the authoritative, bbolt-backed key store of the admin (and
// standalone) process. See the package documentation.
type Store struct {
	*core
	now func() time.Time
	// applied is the consensus log index a view made by Applied records
	// with each write; zero on the store Open returns (replicated.go).
	applied uint64
	// entries is the shared transaction of a view made by ApplyEntries;
	// nil otherwise.
	entries *entriesTx
}

// Open opens or creates the authoritative store file at path, giving it a
// store id when it has none. A file locked by another process yields
// ErrLocked after opts.Timeout.
func Open(path string, opts Options) (*Store, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c, err := openCore(path, fileOptions{timeout: opts.Timeout, noSync: opts.NoSync, authority: true, release: opts.ReleaseMemory})
	if err != nil {
		return nil, err
	}
	return &Store{core: c, now: opts.Now}, nil
}

// Close closes the file. Calls after Close fail.
func (s *Store) Close() error { return s.db.Close() }

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

// GetUser returns the user record; an unknown user is reported as active,
// since users exist implicitly.
func (c *core) GetUser(id string) (User, error) {
	u := User{ID: id, Active: true}
	err := c.db.View(func(tx *bolt.Tx) error {
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
