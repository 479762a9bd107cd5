package quota

import (
	"sync"

	"github.com/extauthz/extauthz/keystore"
)

// Defaults of New.
const (
	// DefaultAllowance is the uses of one key a sidecar may allow between
	// two acknowledged reports: at the default report interval of 10 s,
	// 100 requests a second of one key through one sidecar before it
	// waits for the admin, and an overshoot of at most 1,000 uses per
	// sidecar.
	DefaultAllowance = 1000
	// DefaultMaxKeys bounds the quota'd keys with unacknowledged uses.
	DefaultMaxKeys = 262_144
	// maxAcks bounds the acknowledgements a key waits to see replicated;
	// further ones merge into the last (a later revision, so never early).
	maxAcks = 16
)

// Ledger counts, per quota'd key, the uses this sidecar allowed that the
// replicated remaining count does not reflect yet. It is safe for
// concurrent use.
type Ledger struct {
	allowance int64
	maxKeys   int
	revision  func() uint64

	mu sync.Mutex
	m  map[string]*entry
	// swept is the highest revision an entry was dropped at: a Take that
	// read an older one finds no entry for a key that may still have
	// unreflected uses in its record, so it denies.
	swept uint64
}

type entry struct {
	spent int64 // allowed uses not yet reflected in the replicated count
	acks  []ack // reported uses acknowledged, waiting for their revision
}

// ack is n uses the admin acknowledged, reflected from revision rev on.
type ack struct {
	n   int64
	rev uint64
}

// Options configures New.
type Options struct {
	// Allowance is the unreflected uses allowed per key; 0 means
	// DefaultAllowance.
	Allowance int64
	// MaxKeys bounds the keys with unreflected uses; 0 means
	// DefaultMaxKeys. Past it, a key without an entry is denied.
	MaxKeys int
	// Revision is the replica's revision in force; Acked drops the
	// entries it settles completely. Nil: entries settle only in Take.
	Revision func() uint64
}

// New returns an empty ledger.
func New(opts Options) *Ledger {
	if opts.Allowance <= 0 {
		opts.Allowance = DefaultAllowance
	}
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	return &Ledger{allowance: opts.Allowance, maxKeys: opts.MaxKeys, revision: opts.Revision, m: make(map[string]*entry)}
}

// Allowance returns the uses per key a sidecar may allow unreflected.
func (l *Ledger) Allowance() int64 { return l.allowance }

// Result is the outcome of Take.
type Result struct {
	Allowed bool
	// Exhausted reports a denial because the replicated quota is spent:
	// only a refill helps. Otherwise a denial means this sidecar spent
	// its allowance and waits for its report to be acknowledged.
	Exhausted bool
	// Remaining is the key's remaining count as this sidecar knows it,
	// after this use: the replicated count minus its own unreflected
	// uses, at least 0.
	Remaining int64
	// Stale reports a denial because the record was read at a revision
	// older than one at which the ledger dropped settled entries, so that
	// it may not reflect uses the ledger no longer counts: read the
	// revision and the record again and retry.
	Stale bool
}

// Take decides one use of keyID, whose record (read at revision rev or
// later: read the revision before the record) has quota q.
func (l *Ledger) Take(keyID string, q *keystore.Quota, rev uint64) Result {
	if q.Exhausted() {
		return Result{Exhausted: true}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.m[keyID]
	if e == nil {
		// Where the sidecar cannot count, it denies.
		if rev < l.swept {
			return Result{Stale: true}
		}
		if len(l.m) >= l.maxKeys {
			return Result{}
		}
		e = &entry{}
		l.m[keyID] = e
	}
	e.settle(rev)
	if e.spent+1 > min(q.Remaining, l.allowance) {
		l.forgetIfIdle(keyID, e)
		return Result{Exhausted: e.spent >= q.Remaining, Remaining: max(0, q.Remaining-e.spent)}
	}
	e.spent++
	return Result{Allowed: true, Remaining: q.Remaining - e.spent}
}

// Refund gives back a use Take allowed that the request did not make
// (refused for another reason after it).
func (l *Ledger) Refund(keyID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e := l.m[keyID]; e != nil && e.spent > 0 {
		e.spent--
		l.forgetIfIdle(keyID, e)
	}
}

// Acked notes that the admin recorded batch, and that its revision rev
// reflects it: the uses of quota'd keys in it stop counting against the
// allowance once Take sees a record of that revision.
func (l *Ledger) Acked(batch []keystore.Usage, rev uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range batch {
		e := l.m[u.KeyID]
		if e == nil || u.Count == 0 {
			continue // not a quota'd key of this sidecar
		}
		n := int64(min(u.Count, uint64(l.allowance)*maxAcks))
		if len(e.acks) >= maxAcks {
			last := &e.acks[len(e.acks)-1]
			last.n += n
			last.rev = max(last.rev, rev)
			continue
		}
		e.acks = append(e.acks, ack{n: n, rev: rev})
	}
	if l.revision != nil {
		l.sweep(l.revision())
	}
}

// sweep drops the entries that revision cur settles completely: those of
// keys no longer used (or no longer quota'd), which Take would not visit.
// Entries it does not drop are left as they are, for a Take that read an
// older record.
func (l *Ledger) sweep(cur uint64) {
	for id, e := range l.m {
		var n int64
		settled := true
		for _, a := range e.acks {
			n += a.n
			settled = settled && a.rev <= cur
		}
		if len(e.acks) > 0 && settled && n >= e.spent {
			delete(l.m, id)
			l.swept = max(l.swept, cur)
		}
	}
}

// Reset forgets every key's unreflected uses and acknowledgements: for a
// replica that loaded another history (a restored store, a new store id),
// whose revisions start again below the ones they were counted at, so
// that none of them would settle (and keys without an entry would be
// denied) until the new history passed the old revisions. Each key gets
// its allowance again, as after a restart.
func (l *Ledger) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.m)
	l.swept = 0
}

// Len returns how many keys have unreflected uses.
func (l *Ledger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// settle applies the acknowledgements rev reflects.
func (e *entry) settle(rev uint64) {
	kept := e.acks[:0]
	for _, a := range e.acks {
		if a.rev <= rev {
			e.spent = max(0, e.spent-a.n)
			continue
		}
		kept = append(kept, a)
	}
	e.acks = kept
}

func (l *Ledger) forgetIfIdle(keyID string, e *entry) {
	if e.spent == 0 && len(e.acks) == 0 {
		delete(l.m, keyID)
	}
}
