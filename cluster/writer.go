package cluster

import (
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// Writer has the write methods of the authoritative store, each made a
// raft command: a call returns once the write is committed by a quorum and
// applied on this member, with the store's result. Records passed in get
// the fields the store fills in (creation time, creator), as with the
// store's own methods. On a member that does not lead, every call fails
// with ErrNotLeader.
type Writer struct {
	Node *Node
	// Now is the clock that stamps each command; nil means time.Now.
	Now func() time.Time
}

func (w *Writer) propose(c *Command) (*Result, error) {
	if w.Now != nil {
		c.At = w.Now()
	} else {
		c.At = time.Now()
	}
	c.At = c.At.UTC()
	return w.Node.Apply(c)
}

// CreateKey is keystore.Store.CreateKey through raft.
func (w *Writer) CreateKey(k *keystore.Key, actor string) error {
	r, err := w.propose(&Command{Op: OpCreateKey, Actor: actor, Key: k})
	if r != nil && r.Key != nil && err == nil {
		*k = *r.Key
	}
	return err
}

// ImportKeys is keystore.Store.ImportKeys through raft; keys should come in
// chunks well under MaxCommandSize.
func (w *Writer) ImportKeys(keys []*keystore.Key, actor string) (keystore.ImportResult, error) {
	r, err := w.propose(&Command{Op: OpImportKeys, Actor: actor, Keys: keys})
	if r == nil {
		return keystore.ImportResult{}, err
	}
	if err == nil && len(r.Keys) == len(keys) {
		for i := range keys {
			*keys[i] = *r.Keys[i]
		}
	}
	return r.Import, err
}

// RevokeKey is keystore.Store.RevokeKey through raft.
func (w *Writer) RevokeKey(id, actor string) (*keystore.Key, error) {
	r, err := w.propose(&Command{Op: OpRevokeKey, Actor: actor, ID: id})
	if r == nil {
		return nil, err
	}
	return r.Key, err
}

// RotateKey is keystore.Store.RotateKey through raft.
func (w *Writer) RotateKey(oldID string, next *keystore.Key, grace time.Duration, actor string) (*keystore.Key, error) {
	r, err := w.propose(&Command{Op: OpRotateKey, Actor: actor, ID: oldID, Key: next, Grace: grace})
	if r == nil {
		return nil, err
	}
	if err == nil {
		if r.New != nil {
			*next = *r.New
		}
	}
	return r.Key, err
}

// SetKeyRateLimit is keystore.Store.SetKeyRateLimit through raft.
func (w *Writer) SetKeyRateLimit(id string, limit *keystore.RateLimit, actor string) (*keystore.Key, error) {
	r, err := w.propose(&Command{Op: OpSetRateLimit, Actor: actor, ID: id, RateLimit: limit})
	if r == nil {
		return nil, err
	}
	return r.Key, err
}

// SetKeyQuota is keystore.Store.SetKeyQuota through raft.
func (w *Writer) SetKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error) {
	r, err := w.propose(&Command{Op: OpSetQuota, Actor: actor, ID: id, UsageLimit: limit})
	if r == nil {
		return nil, err
	}
	return r.Key, err
}

// LowerKeyQuota is keystore.Store.LowerKeyQuota through raft: the check
// is made as each member applies the command.
func (w *Writer) LowerKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error) {
	r, err := w.propose(&Command{Op: OpSetQuota, Actor: actor, ID: id, UsageLimit: limit, LowerOnly: true})
	if r == nil {
		return nil, err
	}
	return r.Key, err
}

// SetUserActive is keystore.Store.SetUserActive through raft.
func (w *Writer) SetUserActive(id string, active bool, actor string) (keystore.User, error) {
	r, err := w.propose(&Command{Op: OpSetUserActive, Actor: actor, ID: id, Active: active})
	if r == nil {
		return keystore.User{}, err
	}
	return r.User, err
}

// CreateProject is keystore.Store.CreateProject through raft.
func (w *Writer) CreateProject(p *keystore.Project, first *keystore.Key, actor string) error {
	r, err := w.propose(&Command{Op: OpCreateProject, Actor: actor, Project: p, Key: first})
	if r != nil && err == nil {
		if r.Project != nil {
			*p = *r.Project
		}
		if first != nil && r.Key != nil {
			*first = *r.Key
		}
	}
	return err
}

// RecordUsage is keystore.Store.RecordUsage through raft; the clamp of
// reported times is taken from the command's time on every member, and
// the subtraction from quotas is decided by the batch alone.
func (w *Writer) RecordUsage(batch []keystore.Usage) error {
	if len(batch) == 0 {
		return nil
	}
	_, err := w.propose(&Command{Op: OpRecordUsage, Usage: batch})
	return err
}
