package keystore

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// staged holds a replica's changes that are in force but not yet in its
// file: Stage puts them here and they take effect at once; Commit writes
// them in one fsynced transaction and then drops them from here.
//
// Lookup holds mu shared across its read of these maps and its file
// transaction, and Commit drops entries under mu exclusively only after its
// transaction committed; so a lookup either finds an entry here or reads a
// file that already holds it.
type staged struct {
	mu      sync.RWMutex
	keys    map[Hash]*Key
	users   map[string]*User
	changes []Change // in revision order, for Commit
}

// errNotReplica is returned by Stage on an authoritative store, whose
// changes must be durable before they are acknowledged.
var errNotReplica = errors.New("keystore: Stage is for replicas only")

// Stage puts changes received from the authoritative store in force at
// once, before they reach the file: Lookup, Revision and Changed see them
// when Stage returns. Commit (or Close) writes them. As with ApplyChanges,
// changes at or below the current revision are skipped. Replica only.
func (s *Store) Stage(changes []Change) error {
	if !s.replica {
		return errNotReplica
	}
	for _, c := range changes {
		if c.Key == nil && c.User == nil {
			return fmt.Errorf("%w: change %d carries no record", ErrCorrupt, c.Revision)
		}
	}
	p := &s.staged
	p.mu.Lock()
	rev := s.rev.Load()
	from := rev
	for _, c := range changes {
		if c.Revision <= rev {
			continue
		}
		if c.Key != nil {
			if p.keys == nil {
				p.keys = make(map[Hash]*Key)
			}
			p.keys[c.Key.Hash] = c.Key
		} else {
			if p.users == nil {
				p.users = make(map[string]*User)
			}
			p.users[c.User.ID] = c.User
		}
		p.changes = append(p.changes, c)
		rev = c.Revision
	}
	p.mu.Unlock()
	if rev > from {
		// After the maps: a lookup cached under the new revision must see
		// them (see Lookup).
		s.notify(rev)
	}
	return nil
}

// Commit writes every staged change to the file in one transaction, synced
// before it returns, and then forgets them. Lookups meanwhile go on, from
// the staged changes until the file holds them. Changes staged during the
// commit wait for the next one.
func (s *Store) Commit() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.commitLocked()
}

func (s *Store) commitLocked() error {
	p := &s.staged
	p.mu.RLock()
	// Stage only appends, so the first n entries stay as they are while
	// the file is written; commitMu keeps any other Commit out.
	batch := p.changes[:len(p.changes):len(p.changes)]
	p.mu.RUnlock()
	if len(batch) == 0 {
		return nil
	}
	rev, err := s.writeChanges(batch)
	if err != nil {
		return err
	}
	p.mu.Lock()
	for _, c := range batch {
		// Keep an entry a later Stage replaced: the file has the older record.
		if c.Key != nil && p.keys[c.Key.Hash] == c.Key {
			delete(p.keys, c.Key.Hash)
		}
		if c.User != nil && p.users[c.User.ID] == c.User {
			delete(p.users, c.User.ID)
		}
	}
	p.changes = slices.Clone(p.changes[len(batch):])
	if len(p.changes) == 0 {
		// Maps never shrink: let a burst's go.
		p.keys, p.users, p.changes = nil, nil, nil
	}
	p.mu.Unlock()
	s.durable.Store(rev)
	return nil
}

// Staged returns how many staged changes are not yet in the file.
func (s *Store) Staged() int {
	s.staged.mu.RLock()
	defer s.staged.mu.RUnlock()
	return len(s.staged.changes)
}

// DurableRevision returns the revision the file holds; Revision is above
// it while staged changes wait for Commit.
func (s *Store) DurableRevision() uint64 { return s.durable.Load() }
