package keystore

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshotRecords returns what a snapshot of s streams: key id -> the
// record bytes, and the user records.
func snapshotRecords(t *testing.T, s *Store) (keys map[string]string, users []string) {
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

// TestEnforcementViewRebuiltAfterOlderWriter: a file changed by an extauthz
// that did not keep the enforcement bucket (simulated by writing a key
// record and revision the way it did) gets its bucket rebuilt on the next
// Open, so a snapshot never streams a stale record.
func TestEnforcementViewRebuiltAfterOlderWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := Open(path, Options{Authority: true})
	if err != nil {
		t.Fatal(err)
	}
	_, k := newKey(t, "read")
	if err := s.CreateKey(k, "operator"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	for _, how := range []string{"older writer revokes", "bucket missing"} {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			if how == "bucket missing" {
				return tx.DeleteBucket(bucketEnforcement)
			}
			var rec Key
			if err := json.Unmarshal(tx.Bucket(bucketKeys).Get(k.Hash[:]), &rec); err != nil {
				return err
			}
			now := time.Now().UTC()
			rec.RevokedAt = &now
			v, _ := json.Marshal(&rec)
			if err := tx.Bucket(bucketKeys).Put(k.Hash[:], v); err != nil {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			return meta.Put(metaRevision, u64(getU64(meta.Get(metaRevision))+1))
		})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{Authority: true})
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		checkEnforcementView(t, s)
		keys, _ := snapshotRecords(t, s)
		if !strings.Contains(keys[k.ID], `"revoked_at"`) {
			t.Errorf("%s: snapshot record %s misses the revocation", how, keys[k.ID])
		}
		s.Close()
	}
}

// TestReplicaSnapshotIsItsRecords: a replica streams its key records as
// they are (they are the enforcement view), byte for byte.
func TestReplicaSnapshotIsItsRecords(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "replica.db"), Options{Replica: true})
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
