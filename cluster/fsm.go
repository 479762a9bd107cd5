package cluster

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/extauthz/extauthz/keystore"
)

// fsm applies committed commands to the store.
type fsm struct {
	store *keystore.Store
	// inFile is the log index the store file held when the fsm was made or
	// last restored: entries up to it are already in the file.
	inFile atomic.Uint64
	// written is the log index the store file records as applied: the
	// entry of its last change. Members that applied the same log hold
	// the same value (WaitReadIndex).
	written atomic.Uint64
}

func newFSM(st *keystore.Store) (*fsm, error) {
	f := &fsm{store: st}
	n, err := st.AppliedIndex()
	if err != nil {
		return nil, fmt.Errorf("cluster: read applied index: %w", err)
	}
	f.inFile.Store(n)
	f.written.Store(n)
	return f, nil
}

// Apply implements raft.FSM. It returns a *Result.
func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if l.Index <= f.inFile.Load() {
		return &Result{} // replayed after a restart: already in the file
	}
	c, err := DecodeCommand(l.Data)
	if err != nil {
		return &Result{Err: err}
	}
	r := apply(f.store.Applied(l.Index, c.At), c)
	if r.Err == nil {
		if n, err := f.store.AppliedIndex(); err == nil {
			f.written.Store(n)
		}
	}
	return r
}

func apply(st *keystore.Store, c *Command) *Result {
	r := &Result{}
	switch c.Op {
	case OpCreateKey:
		r.Err = st.CreateKey(c.Key, c.Actor)
		r.Key = c.Key
	case OpImportKeys:
		r.Import, r.Err = st.ImportKeys(c.Keys, c.Actor)
		r.Keys = c.Keys
	case OpRevokeKey:
		r.Key, r.Err = st.RevokeKey(c.ID, c.Actor)
	case OpRotateKey:
		r.Key, r.Err = st.RotateKey(c.ID, c.Key, c.Grace, c.Actor)
		r.New = c.Key
	case OpSetRateLimit:
		r.Key, r.Err = st.SetKeyRateLimit(c.ID, c.RateLimit, c.Actor)
	case OpSetQuota:
		r.Key, r.Err = st.SetKeyQuota(c.ID, c.UsageLimit, c.Actor)
	case OpSetUserActive:
		r.User, r.Err = st.SetUserActive(c.ID, c.Active, c.Actor)
	case OpCreateProject:
		r.Err = st.CreateProject(c.Project, c.Key, c.Actor)
		r.Project, r.Key = c.Project, c.Key
	case OpRecordUsage:
		r.Err = st.RecordUsage(c.Usage)
	case OpAdoptStoreID:
		_, r.Err = st.AdoptStoreID(c.StoreID)
	default:
		r.Err = fmt.Errorf("cluster: unknown command %q", c.Op)
	}
	return r
}

// Snapshot implements raft.FSM. The copy is taken in Persist, which raft
// runs beside Apply: it may hold entries after the snapshot's index, which
// is harmless because the applied index travels in the copy and those
// entries are skipped when replayed over it.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) { return &fsmSnapshot{store: f.store}, nil }

// Restore implements raft.FSM: it replaces the store's content with the
// snapshot's.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	n, err := f.store.AppliedIndex()
	if err != nil {
		return fmt.Errorf("cluster: read applied index: %w", err)
	}
	f.inFile.Store(n)
	f.written.Store(n)
	return nil
}

type fsmSnapshot struct{ store *keystore.Store }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, _, err := s.store.Backup(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
