package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// Op names what a Command changes.
type Op string

// The operations, one per write method of the authoritative store.
const (
	OpCreateKey     Op = "key.create"
	OpImportKeys    Op = "key.import"
	OpRevokeKey     Op = "key.revoke"
	OpRotateKey     Op = "key.rotate"
	OpSetRateLimit  Op = "key.set_rate_limit"
	OpSetQuota      Op = "key.set_quota"
	OpSetUserActive Op = "user.set_active"
	OpCreateProject Op = "project.create"
	OpRecordUsage   Op = "usage.record"
	OpAdoptStoreID  Op = "store.adopt"
)

// Command is one raft log entry: a write with everything that is not
// deterministic already decided (At is the time every member writes into
// the records and the audit log). It holds key records, which carry a
// key's hash and display prefix only: there is no field for a raw key.
type Command struct {
	Op      Op                `json:"op"`
	At      time.Time         `json:"at"`
	Actor   string            `json:"actor,omitempty"`
	Key     *keystore.Key     `json:"key,omitempty"`  // create; rotate's new key; a project's first key
	Keys    []*keystore.Key   `json:"keys,omitempty"` // import
	ID      string            `json:"id,omitempty"`   // revoke and rotate: the key; set_active: the user
	Grace   time.Duration     `json:"grace,omitempty"`
	Active  bool              `json:"active,omitempty"`
	Project *keystore.Project `json:"project,omitempty"`
	Usage   []keystore.Usage  `json:"usage,omitempty"`
	StoreID string            `json:"store_id,omitempty"`
	// RateLimit is set_rate_limit's new limit (nil removes the key's own).
	RateLimit *keystore.RateLimit `json:"rate_limit,omitempty"`
	// UsageLimit is set_quota's new limit (nil removes the key's quota).
	UsageLimit *int64 `json:"usage_limit,omitempty"`
	// LowerOnly makes set_quota fail, as applied, if it would give the key
	// more requests than it has left (keystore.Store.LowerKeyQuota).
	LowerOnly bool `json:"lower_only,omitempty"`
}

// commandVersion is the first byte of an encoded command. A member that
// reads another version stops applying rather than guess.
const commandVersion = 1

// MaxCommandSize bounds an encoded command; a larger one is refused before
// it is proposed (an import is proposed in chunks).
const MaxCommandSize = 8 << 20

// Encode returns the log entry form of c: a version byte, then JSON.
func (c *Command) Encode() ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("cluster: encode %s: %w", c.Op, err)
	}
	if len(b)+1 > MaxCommandSize {
		return nil, fmt.Errorf("cluster: %s command of %d bytes is over the %d byte limit", c.Op, len(b)+1, MaxCommandSize)
	}
	return append([]byte{commandVersion}, b...), nil
}

// DecodeCommand parses a log entry written by Encode. Unknown fields, a
// missing required field or another version are errors.
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) == 0 {
		return nil, errors.New("cluster: empty command")
	}
	if b[0] != commandVersion {
		return nil, fmt.Errorf("cluster: command version %d, this build reads %d", b[0], commandVersion)
	}
	// The encoder's own library decodes (durations are its integers),
	// strictly: a field this build does not know is an error, never
	// silently dropped from what the others applied.
	c := new(Command)
	d := json.NewDecoder(bytes.NewReader(b[1:]))
	d.DisallowUnknownFields()
	if err := d.Decode(c); err != nil {
		return nil, fmt.Errorf("cluster: decode command: %w", err)
	}
	if d.More() {
		return nil, errors.New("cluster: decode command: data after the command")
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Command) validate() error {
	if c.At.IsZero() {
		return fmt.Errorf("cluster: %s command without a time", c.Op)
	}
	missing := ""
	switch c.Op {
	case OpCreateKey, OpRotateKey:
		switch {
		case c.Key == nil:
			missing = "key"
		case c.Op == OpRotateKey && c.ID == "":
			missing = "id"
		}
	case OpImportKeys:
		for _, k := range c.Keys {
			if k == nil {
				missing = "keys entry"
			}
		}
	case OpRevokeKey, OpSetUserActive, OpSetRateLimit, OpSetQuota:
		if c.ID == "" {
			missing = "id"
		}
	case OpCreateProject:
		if c.Project == nil {
			missing = "project"
		}
	case OpRecordUsage:
	case OpAdoptStoreID:
		if c.StoreID == "" {
			missing = "store_id"
		}
	default:
		return fmt.Errorf("cluster: unknown command %q", c.Op)
	}
	if missing != "" {
		return fmt.Errorf("cluster: %s command without its %s", c.Op, missing)
	}
	return nil
}

// Result is what applying a command returned on the member that proposed
// it. Err is the store's error (keystore.ErrRevoked, ErrNotFound, ...),
// the same on every member.
type Result struct {
	Key     *keystore.Key   // create and project: the stored new key; revoke and rotate: the old record as updated
	New     *keystore.Key   // rotate: the new key as stored
	Keys    []*keystore.Key // import: the keys as given, with the defaults the store filled in
	Project *keystore.Project
	User    keystore.User
	Import  keystore.ImportResult
	Err     error
}
