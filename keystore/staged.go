package keystore

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
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
	mu      sync.RWMutex // guards keys, users and changes
	keys    map[Hash]*Key
	users   map[string]*User
	changes []Change // in revision order, for Commit
}

func (p *staged) count() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.changes)
}

// Stage puts changes received from the authoritative store in force at
// once, before they reach the file: Lookup, Revision and Changed see them
// when Stage returns. Each change is first appended to the write-ahead
// log, so that a process that dies before the commit loses none. The
// commit follows SyncInterval later (jittered), or before Stage returns
// when SyncInterval is negative or the log is past walMax. As with
// ApplyChanges, changes at or below the current revision are skipped.
// After a failed commit Stage returns ErrUnwritable until Commit succeeds.
func (r *Replica) Stage(changes []Change) error {
	for _, c := range changes {
		if err := c.check(); err != nil {
			return err
		}
	}
	big, err := r.stageLogged(changes)
	if err != nil {
		return err
	}
	if r.syncInterval < 0 || big {
		return r.Commit()
	}
	return nil
}

// stageLogged appends the changes to the log and stages them under mu, and
// schedules their commit. big reports a log past walMax.
func (r *Replica) stageLogged(changes []Change) (big bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return false, ErrClosed
	case r.commitErr != nil:
		return false, fmt.Errorf("%w: %w", ErrUnwritable, r.commitErr)
	}
	from := r.rev.Load()
	var lines []byte
	fresh := changes[:0:0]
	for _, c := range changes {
		if c.Revision <= from {
			continue
		}
		b, err := json.Marshal(c)
		if err != nil {
			return false, fmt.Errorf("keystore: encode change %d: %w", c.Revision, err)
		}
		lines = append(append(lines, b...), '\n')
		fresh = append(fresh, c)
		from = c.Revision
	}
	if len(fresh) == 0 {
		return false, nil
	}
	if r.wal == nil {
		if r.wal, err = createWAL(r.walPath, r.StoreID(), r.fileID); err != nil {
			return false, err
		}
	}
	if err := r.wal.append(lines); err != nil {
		return false, err
	}
	r.stage(fresh)
	if d := r.syncInterval; d > 0 && r.timer == nil {
		// Jittered in [d/2, 3d/2): sidecars on one node receive a change
		// together and would otherwise all fsync together. A timer, not a
		// goroutine woken per change: this is the path to the decision.
		r.timer = time.AfterFunc(d/2+rand.N(d), r.scheduledCommit)
	}
	return r.wal.size > walMax, nil
}

// stage puts changes, all above the revision in force and in order, in
// the staged maps and then in force.
func (r *Replica) stage(changes []Change) {
	p := &r.staged
	p.mu.Lock()
	for _, c := range changes {
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
	}
	p.changes = append(p.changes, changes...)
	p.mu.Unlock()
	// After the maps: a lookup cached under the new revision must see
	// them (see Lookup).
	r.notify(changes[len(changes)-1].Revision)
}

// scheduledCommit is the commit Stage scheduled.
func (r *Replica) scheduledCommit() {
	r.mu.Lock()
	r.timer = nil // changes staged from now on schedule the next commit
	r.mu.Unlock()
	if err := r.Commit(); err != nil && r.commitFailed != nil && !r.isClosed() {
		r.commitFailed(err)
	}
}

// Commit writes every staged change to the file in one transaction, synced
// before it returns, and then forgets them; it empties the write-ahead log
// once it is past walKeep and the file holds everything in it. Lookups
// meanwhile go on, from the staged changes until the file holds them.
// Changes staged during the commit wait for the next one.
func (r *Replica) Commit() error {
	r.commitMu.Lock()
	defer r.commitMu.Unlock()
	return r.commitLocked()
}

// CommitError returns the failure of the last commit, nil once one
// succeeded. While it is set, Stage refuses changes.
func (r *Replica) CommitError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.commitErr
}

// commitLocked is Commit; commitMu is held.
func (r *Replica) commitLocked() error {
	if r.isClosed() {
		return ErrClosed
	}
	err := r.writeStaged()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.commitErr = err
	if err != nil {
		return err
	}
	if r.wal != nil && r.wal.size >= r.walKeep && r.staged.count() == 0 {
		if err := r.wal.reset(); err != nil {
			return err
		}
	}
	if last, ok := r.LastCurrent(); ok {
		r.touchLocked(last, true)
	}
	return nil
}

// writeStaged writes the staged changes and drops them from memory.
func (r *Replica) writeStaged() error {
	p := &r.staged
	p.mu.RLock()
	// Stage only appends, so the first n entries stay as they are while
	// the file is written; commitMu keeps any other commit out.
	batch := p.changes[:len(p.changes):len(p.changes)]
	p.mu.RUnlock()
	if len(batch) == 0 {
		return nil
	}
	rev, err := r.writeChanges(batch)
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
	r.durable.Store(rev)
	return nil
}

// Staged returns how many staged changes are not yet in the file.
func (r *Replica) Staged() int { return r.staged.count() }
