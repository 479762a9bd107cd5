package cluster

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

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

// batchRaft sets raft's knobs for the batches of ApplyBatch. The leader
// takes every write waiting to be proposed (up to MaxAppendEntries) into
// one log append and one round of replication, and the entries committed
// together reach the store together. raft's BatchApplyCh stays off: with
// it, a write or barrier queued in the buffered channel as the member
// shuts down is never answered (Close then waits for ever). A follower
// learns that an entry is committed from the leader's next append, sent
// at the latest CommitTimeout (5 to 10 ms) after the last one: raft's 50
// ms would delay a revocation that long for the sidecars that follow a
// follower. Idle, a three-member cluster then spends ~4 % of a core on
// those appends (~1 % at 50 ms).
func batchRaft(rc *raft.Config) {
	rc.MaxAppendEntries = 256
	rc.CommitTimeout = 5 * time.Millisecond
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

// Apply implements raft.FSM: a batch of one (raft calls ApplyBatch).
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: the commands of a batch of
// committed entries are applied in one store transaction, each with its
// own time, result and error (keystore.Store.ApplyEntries); an entry the
// store file already holds is skipped. It returns a *Result per command
// entry, nil for the others.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	results := make([]*Result, len(logs))
	var entries []keystore.LogEntry
	var at []int // entries[j] is logs[at[j]]
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			out[i] = &Result{Err: err}
			continue
		}
		entries = append(entries, keystore.LogEntry{Index: l.Index, At: c.At, Apply: func(st *keystore.Store) error {
			results[i] = apply(st, c)
			return results[i].Err
		}})
		at = append(at, i)
	}
	if len(entries) == 0 {
		return out
	}
	_, err := f.store.ApplyEntries(entries)
	for _, i := range at {
		switch {
		case err != nil:
			out[i] = &Result{Err: err}
		case results[i] == nil: // replayed after a restart: already in the file
			out[i] = &Result{}
		default:
			out[i] = results[i]
		}
	}
	if err == nil {
		if n, err := f.store.AppliedIndex(); err == nil {
			f.written.Store(n)
		}
	}
	return out
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
		if c.LowerOnly {
			r.Key, r.Err = st.LowerKeyQuota(c.ID, c.UsageLimit, c.Actor)
			break
		}
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
