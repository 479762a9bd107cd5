package keystore

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshotRecords returns what a snapshot of s streams: key id -> the
// record bytes, and the user records.
func snapshotRecords(t *testing.T, s interface {
	View(func(*Snapshot) error) error
}) (keys map[string]string, users []string) {
	t.Helper()
	keys = map[string]string{}
	err := s.View(func(sn *Snapshot) error {
		return sn.ForEachRecord(func(isKey bool, v []byte) error {
			if !isKey {
				users = append(users, string(v))
				return nil
			}
			var k Key
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			keys[k.ID] = string(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, users
}

// checkEnforcementView asserts that the snapshot of s holds exactly the
// enforcement view of every key record, nothing more.
func checkEnforcementView(t *testing.T, s *Store) {
	t.Helper()
	got, _ := snapshotRecords(t, s)
	all, err := s.ListKeys(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all) {
		t.Fatalf("snapshot has %d keys, store %d", len(got), len(all))
	}
	for _, k := range all {
		want, _ := json.Marshal(k.Enforcement())
		if got[k.ID] != string(want) {
			t.Errorf("key %s: snapshot record\n%s\nwant\n%s", k.ID, got[k.ID], want)
		}
	}
}

func TestSnapshotStreamsTheEnforcementView(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := mustOpen(t, "", c)
	var ids []string
	for i := range 5 {
		_, k := newKey(t, "read")
		k.Name, k.UserID, k.Metadata = "secret name", "u1", map[string]string{"team": "x"}
		if err := s.CreateKey(k, "operator"); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, k.ID)
		_ = i
	}
	checkEnforcementView(t, s)
	if _, err := s.RevokeKey(ids[0], "operator"); err != nil {
		t.Fatal(err)
	}
	_, next := newKey(t, "read")
	if _, err := s.RotateKey(ids[1], next, time.Hour, "operator"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RotateKey(ids[2], func() *Key { _, k := newKey(t); return k }(), 0, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage([]Usage{{KeyID: ids[3], LastUsedAt: c.now(), Count: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUserActive("u1", false, "operator"); err != nil {
		t.Fatal(err)
	}
	checkEnforcementView(t, s)
	keys, users := snapshotRecords(t, s)
	for id, v := range keys {
		if strings.Contains(v, "secret name") || strings.Contains(v, "team") || strings.Contains(v, "operator") {
			t.Errorf("key %s: snapshot record carries more than the enforcement view: %s", id, v)
		}
	}
	if !strings.Contains(keys[ids[0]], `"revoked_at"`) || !strings.Contains(keys[ids[1]], `"expires_at"`) {
		t.Errorf("revocation or rotation missing from the snapshot: %s / %s", keys[ids[0]], keys[ids[1]])
	}
	if len(users) != 1 || !strings.Contains(users[0], `"active":false`) {
		t.Errorf("users in the snapshot: %q", users)
	}
}

// TestSchema1Migration: a file written by schema 1 (each key record one
// JSON object with every field) is rewritten on Open, keeps every field,
// and then streams only the enforcement view.
func TestSchema1Migration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	used := time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC)
	_, k := newKey(t, "read")
	k.Name, k.CreatedBy, k.LastUsedAt, k.UseCount, k.Metadata = "secret name", "operator", &used, 7, map[string]string{"team": "x"}
	_, plain := newKey(t, "write")
	plain.Name = ""
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaSchema, u64(1)); err != nil {
			return err
		}
		if err := meta.Put(metaStoreID, []byte("s1")); err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("enforcement")); err != nil { // left by development builds
			return err
		}
		for _, rec := range []*Key{k, plain} {
			v, _ := json.Marshal(rec) // the schema 1 record
			if err := tx.Bucket(bucketKeys).Put(rec.Hash[:], v); err != nil {
				return err
			}
			if err := tx.Bucket(bucketIDs).Put([]byte(rec.ID), rec.Hash[:]); err != nil {
				return err
			}
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	migrateChunk = 1 // two records: two chunks
	defer func() { migrateChunk = 10_000 }()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*Key{plain} {
		if got, err := s.GetKey(rec.ID); err != nil || got.Scopes[0] != "write" {
			t.Fatalf("GetKey(%s) = %+v, %v", rec.ID, got, err)
		}
	}
	got, err := s.GetKey(k.ID)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(k)
	if g, _ := json.Marshal(got); !bytes.Equal(g, want) {
		t.Errorf("migrated record\n%s\nwant\n%s", g, want)
	}
	checkEnforcementView(t, s)
	s.Close()

	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(metaSchema); getU64(v) != SchemaVersion {
			t.Errorf("schema after migration = %d; want %d", getU64(v), SchemaVersion)
		}
		if tx.Bucket([]byte("enforcement")) != nil {
			t.Error("the development builds' enforcement bucket is still there")
		}
		// A key without extra fields is stored as its view alone.
		if v := tx.Bucket(bucketKeys).Get(plain.Hash[:]); bytes.IndexByte(v, '\n') >= 0 {
			t.Errorf("record without extras has two parts: %s", v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNewerSchemaRefused: a file from a later schema is not guessed at.
func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s := mustOpen(t, path, nil)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaSchema, u64(SchemaVersion+1)) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, Options{}); !errors.Is(err, ErrSchema) {
		t.Fatalf("Open of a schema %d file: %v; want ErrSchema", SchemaVersion+1, err)
	}
}

// TestKeyRecordRoundTrip: every field survives the stored form, and the
// view part is exactly the enforcement view.
func TestKeyRecordRoundTrip(t *testing.T) {
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	full := &Key{ID: "k", Hash: HashKey("x"), Prefix: "nex_", Name: "n\nwith newline", Scopes: []string{"a"}, ProjectID: "p", UserID: "u",
		CreatedAt: at, ExpiresAt: &at, LastUsedAt: &at, UseCount: 3, RevokedAt: &at, CreatedBy: "c", RevokedBy: "r",
		Metadata: map[string]string{"k": "v\n"}, RateLimit: &RateLimit{Limit: 1, Duration: time.Second},
		Quota: &Quota{Limit: 10, Remaining: 4, Shared: []string{"k2"}}}
	// Every field of Key is either in the enforcement view or one of the
	// extras, never both and never neither (a new field must be placed),
	// and the fixture above sets them all.
	extras := map[string]bool{}
	for f := range reflect.TypeFor[keyExtras]().Fields() {
		extras[f.Name] = true
	}
	fv, ev := reflect.ValueOf(full).Elem(), reflect.ValueOf(full.Enforcement()).Elem()
	for i := range fv.NumField() {
		f := fv.Type().Field(i)
		if fv.Field(i).IsZero() {
			t.Errorf("the fixture leaves Key.%s unset", f.Name)
		}
		if inView := !ev.Field(i).IsZero(); inView == extras[f.Name] {
			t.Errorf("Key.%s: in the enforcement view %v, in keyExtras %v; want exactly one", f.Name, inView, extras[f.Name])
		}
	}
	for _, k := range []*Key{full, full.Enforcement()} {
		v, err := encodeKey(k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeKey(v)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(k)
		if !bytes.Equal(a, b) {
			t.Errorf("round trip\n%s\nwant\n%s", a, b)
		}
		view, _ := json.Marshal(k.Enforcement())
		if !bytes.Equal(enforcementJSON(v), view) {
			t.Errorf("view part %s; want %s", enforcementJSON(v), view)
		}
	}
	if _, err := decodeKey([]byte("{\"id\":\"k\"}\nnot json")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt extras: %v; want ErrCorrupt", err)
	}
}

// TestReplicaSnapshotIsItsRecords: a replica streams its key records as
// they are (they are the enforcement view), byte for byte.
func TestReplicaSnapshotIsItsRecords(t *testing.T) {
	s, err := OpenReplica(filepath.Join(t.TempDir(), "replica.db"), ReplicaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, k := newKey(t, "read")
	k.Name = ""
	if err := s.ApplyChanges([]Change{{Revision: 1, Key: k.Enforcement()}, {Revision: 2, User: &User{ID: "u", Active: true}}}); err != nil {
		t.Fatal(err)
	}
	keys, users := snapshotRecords(t, s)
	want, _ := json.Marshal(k.Enforcement())
	if keys[k.ID] != string(want) || len(keys) != 1 || len(users) != 1 {
		t.Fatalf("replica snapshot %q %q; want %s", keys, users, want)
	}
	var decoded []Change
	err = s.View(func(sn *Snapshot) error {
		return sn.ForEach(func(c Change) error { decoded = append(decoded, c); return nil })
	})
	if err != nil || len(decoded) != 2 || decoded[0].Key == nil || !bytes.Equal(decoded[0].Key.Hash[:], k.Hash[:]) || decoded[1].User == nil {
		t.Fatalf("ForEach = %+v, %v", decoded, err)
	}
}
