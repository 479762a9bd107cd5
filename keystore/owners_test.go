package keystore

import (
	"math"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ownedKeys mints n keys for each (user, project) pair into s.
func ownedKeys(t *testing.T, s *Store, c *clock, user, project string, n int) []*Key {
	t.Helper()
	var out []*Key
	for range n {
		_, k := newKey(t, "read")
		k.UserID, k.ProjectID = user, project
		if err := s.CreateKey(k, "test"); err != nil {
			t.Fatal(err)
		}
		c.add(1)
		out = append(out, k)
	}
	return out
}

// ownersEpoch is the clock start of the owner-index tests.
var ownersEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func ids(keys []*Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

func equalIDs(a, b []*Key) bool {
	x, y := ids(a), ids(b)
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// TestListOwnedKeys: a user's or a project's keys come back oldest first,
// exactly those, revoked ones included (callers filter), and an owner id
// that is a prefix of another's, or shares its bytes up to a NUL, never
// shows the other's keys.
func TestListOwnedKeys(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	a := ownedKeys(t, s, c, "a", "p1", 3)
	ab := ownedKeys(t, s, c, "ab", "p1", 2)
	nul := ownedKeys(t, s, c, "a\x00b", "p", 2)
	none := ownedKeys(t, s, c, "", "p2", 1)
	if _, err := s.RevokeKey(a[1].ID, "test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		owner Owner
		want  []*Key
	}{
		{Owner{UserID: "a"}, a},
		{Owner{UserID: "ab"}, ab},
		{Owner{UserID: "a\x00b"}, nul},
		{Owner{ProjectID: "p1"}, append(append([]*Key{}, a...), ab...)},
		{Owner{ProjectID: "p2"}, none},
		{Owner{ProjectID: "p"}, nul},
		{Owner{UserID: "nobody"}, nil},
		{Owner{}, nil},
	} {
		got, err := s.ListOwnedKeys(tc.owner)
		if err != nil {
			t.Fatal(err)
		}
		if !equalIDs(got, tc.want) {
			t.Errorf("ListOwnedKeys(%+v) = %q; want %q", tc.owner, ids(got), ids(tc.want))
		}
	}
	if got, _ := s.ListOwnedKeys(Owner{UserID: "a"}); got[1].RevokedAt == nil {
		t.Error("the revoked key's record is not the current one")
	}
}

// TestListOwnedKeysReadsOnlyItsRecords: a list reads the owner's records
// and no other: with every other record unreadable it still answers, while
// a full scan fails. So its cost is what it returns, whatever the store
// holds.
func TestListOwnedKeysReadsOnlyItsRecords(t *testing.T) {
	c := &clock{t: ownersEpoch}
	path := filepath.Join(t.TempDir(), "keys.db")
	s := mustOpen(t, path, c)
	mine := ownedKeys(t, s, c, "me", "", 2)
	others := ownedKeys(t, s, c, "other", "", 50)
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, k := range others {
			if err := tx.Bucket(bucketKeys).Put(k.Hash[:], []byte("not a record")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListKeys(nil); err == nil {
		t.Fatal("a full scan read the broken records without error; the test proves nothing")
	}
	got, err := s.ListOwnedKeys(Owner{UserID: "me"})
	if err != nil || !equalIDs(got, mine) {
		t.Fatalf("ListOwnedKeys = %q, %v; want %q", ids(got), err, ids(mine))
	}
}

// TestOwnerIndexMigration: a schema 2 file (no owner index) is indexed
// when it is opened, in the same transaction that marks it schema 3.
func TestOwnerIndexMigration(t *testing.T) {
	c := &clock{t: ownersEpoch}
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	want := ownedKeys(t, s, c, "u1", "p1", 3)
	ownedKeys(t, s, c, "u2", "", 2)
	// Make it the file schema 2 wrote.
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketOwners); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(metaSchema, u64(2))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = mustOpen(t, path, c)
	for _, o := range []Owner{{UserID: "u1"}, {ProjectID: "p1"}} {
		got, err := s.ListOwnedKeys(o)
		if err != nil || !equalIDs(got, want) {
			t.Errorf("after migration ListOwnedKeys(%+v) = %q, %v; want %q", o, ids(got), err, ids(want))
		}
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if v := getU64(tx.Bucket(bucketMeta).Get(metaSchema)); v != SchemaVersion {
			t.Errorf("schema after migration = %d; want %d", v, SchemaVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRecordUsageIsBounded: a reported use far in the future is taken as
// the store's clock plus MaxUsageSkew, so the next real use still moves the
// key's last use; a count that would wrap saturates.
func TestRecordUsageIsBounded(t *testing.T) {
	c := &clock{t: ownersEpoch}
	s := mustOpen(t, "", c)
	k := ownedKeys(t, s, c, "u", "", 1)[0]
	forged := []Usage{{KeyID: k.ID, LastUsedAt: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), Count: math.MaxUint64}}
	if err := s.RecordUsage(forged); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := c.now().Add(MaxUsageSkew); got.LastUsedAt == nil || !got.LastUsedAt.Equal(want) || got.UseCount != math.MaxUint64 {
		t.Fatalf("after a forged report: last used %v, count %d; want %v, %d", got.LastUsedAt, got.UseCount, want, uint64(math.MaxUint64))
	}
	c.add(2 * MaxUsageSkew)
	if err := s.RecordUsage([]Usage{{KeyID: k.ID, LastUsedAt: c.now(), Count: 5}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetKey(k.ID)
	if !got.LastUsedAt.Equal(c.now()) || got.UseCount != math.MaxUint64 {
		t.Fatalf("a real use after it: last used %v, count %d; want %v and a saturated count", got.LastUsedAt, got.UseCount, c.now())
	}
}
