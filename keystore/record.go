package keystore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// A stored key record is its enforcement view (Key.Enforcement) as one
// JSON object, then, when the key has any, a newline and its other fields
// as a second object. With the view first, a snapshot streams the stored
// bytes up to the newline and decodes nothing; encoding/json never writes
// a raw newline inside a value. A replica's records are the view alone.
//
// Schema 1 stored the whole record as one object; Open rewrites such a
// file once (see migrateKeys).

// keyExtras are the fields of a Key outside its enforcement view.
type keyExtras struct {
	Name       string            `json:"name,omitempty"`
	LastUsedAt *time.Time        `json:"last_used_at,omitempty"`
	UseCount   uint64            `json:"use_count,omitempty"`
	CreatedBy  string            `json:"created_by,omitempty"`
	RevokedBy  string            `json:"revoked_by,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
}

func (x *keyExtras) empty() bool {
	return x.Name == "" && x.LastUsedAt == nil && x.UseCount == 0 && x.CreatedBy == "" && x.RevokedBy == "" && len(x.Metadata) == 0
}

// encodeKey returns the stored form of k.
func encodeKey(k *Key) ([]byte, error) {
	x := keyExtras{Name: k.Name, LastUsedAt: k.LastUsedAt, UseCount: k.UseCount, CreatedBy: k.CreatedBy, RevokedBy: k.RevokedBy, Metadata: k.Metadata}
	if x.empty() {
		// Already the view alone (every replica record): every field
		// outside the view is omitted when empty, so k encodes exactly as
		// k.Enforcement() would, without the copy.
		return json.Marshal(k)
	}
	v, err := json.Marshal(k.Enforcement())
	if err != nil {
		return nil, err
	}
	xv, err := json.Marshal(&x)
	if err != nil {
		return nil, err
	}
	return append(append(v, '\n'), xv...), nil
}

// decodeKey decodes a stored key record (either schema).
func decodeKey(v []byte) (*Key, error) {
	view, rest, split := bytes.Cut(v, []byte{'\n'})
	k := new(Key)
	if err := json.Unmarshal(view, k); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if !split {
		return k, nil
	}
	var x keyExtras
	if err := json.Unmarshal(rest, &x); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	k.Name, k.LastUsedAt, k.UseCount, k.CreatedBy, k.RevokedBy, k.Metadata = x.Name, x.LastUsedAt, x.UseCount, x.CreatedBy, x.RevokedBy, x.Metadata
	return k, nil
}

// enforcementJSON returns the enforcement view of a stored key record
// (schema 2), without decoding it.
func enforcementJSON(v []byte) []byte {
	if i := bytes.IndexByte(v, '\n'); i >= 0 {
		return v[:i]
	}
	return v
}
