package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
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
	// seen is the log index of the last entry ApplyBatch finished with,
	// whatever its outcome: the leader's read index waits for it
	// (applyCommitted).
	seen atomic.Uint64

	// halted is why this member stopped applying the log (see halt); nil
	// while it applies.
	halted atomic.Pointer[error]
	stop   <-chan struct{} // closed when the member shuts down
	log    hclog.Logger
}

// ErrHalted means this member stopped applying the log: it met a committed
// entry that it cannot apply as the other members do. CaughtUp wraps it.
var ErrHalted = errors.New("cluster: this member stopped applying the log")

// halt stops this member at the committed entry index that it cannot apply
// as the others do: a command its build cannot read (written by a newer
// member, or corrupt), or a store that failed to write it. Skipping the
// entry, as an error result would, lets the next entries apply over a
// store that lacks it: this member would diverge from the others, and the
// sidecars it serves with it. It blocks raft's apply loop instead, until
// the member shuts down: raft keeps its log (which still votes and
// replicates), the store stays at the entry before, the member turns not
// ready, and once restarted with a build that can apply it (or a working
// disk) it carries on from its store's applied index.
func (f *fsm) halt(index uint64, err error) {
	err = fmt.Errorf("%w at log index %d: %w; it applies nothing more until it is restarted with a build that can apply the entry (the other members' build) or a working disk", ErrHalted, index, err)
	f.halted.Store(&err)
	f.log.Error("stopped applying the raft log", "error", err)
	<-f.stop
}

// haltErr is why this member stopped applying, or nil.
func (f *fsm) haltErr() error {
	if p := f.halted.Load(); p != nil {
		return *p
	}
	return nil
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

func newFSM(st *keystore.Store, stop <-chan struct{}, log hclog.Logger) (*fsm, error) {
	f := &fsm{store: st, stop: stop, log: log}
	n, err := st.AppliedIndex()
	if err != nil {
		return nil, fmt.Errorf("cluster: read applied index: %w", err)
	}
	f.inFile.Store(n)
	f.written.Store(n)
	f.seen.Store(n)
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
	if err := f.haltErr(); err != nil {
		return haltedResults(out, 0, err)
	}
	var entries []keystore.LogEntry
	var at []int // entries[j] is logs[at[j]]
	bad, badErr := -1, error(nil)
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			if l.Index <= f.written.Load() { // in the store file already
				out[i] = &Result{}
				continue
			}
			bad, badErr = i, err
			break
		}
		entries = append(entries, keystore.LogEntry{Index: l.Index, At: c.At, Apply: func(st *keystore.Store) error {
			results[i] = apply(st, c)
			return results[i].Err
		}})
		at = append(at, i)
	}
	if len(entries) > 0 {
		if _, err := f.store.ApplyEntries(entries); err != nil {
			f.halt(entries[0].Index, err)
			return haltedResults(out, 0, f.haltErr())
		}
		for _, i := range at {
			if results[i] == nil { // replayed after a restart: already in the file
				out[i] = &Result{}
			} else {
				out[i] = results[i]
			}
		}
		if n, err := f.store.AppliedIndex(); err == nil {
			f.written.Store(n)
		}
	}
	if bad >= 0 {
		f.halt(logs[bad].Index, badErr)
		return haltedResults(out, bad, f.haltErr())
	}
	if len(logs) > 0 {
		f.seen.Store(logs[len(logs)-1].Index)
	}
	return out
}

// haltedResults answers every entry of a batch from the first unapplied
// one with err.
func haltedResults(out []any, from int, err error) []any {
	for i := from; i < len(out); i++ {
		out[i] = &Result{Err: err}
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
	f.seen.Store(n)
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
