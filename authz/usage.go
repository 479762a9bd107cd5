package authz

import (
	"sync"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// maxTrackedKeys bounds the usage map between flushes; keys seen after it
// is full are counted once the map drains.
const maxTrackedKeys = 1 << 20

// UsageTracker accumulates last-used times and counts per key between
// flushes. It implements UsageRecorder.
type UsageTracker struct {
	mu sync.Mutex
	m  map[string]*keystore.Usage
}

// NewUsageTracker returns an empty tracker.
func NewUsageTracker() *UsageTracker {
	return &UsageTracker{m: make(map[string]*keystore.Usage)}
}

// Record notes one use of keyID at at.
func (t *UsageTracker) Record(keyID string, at time.Time) {
	t.mu.Lock()
	u, ok := t.m[keyID]
	if !ok {
		if len(t.m) >= maxTrackedKeys {
			t.mu.Unlock()
			return
		}
		u = &keystore.Usage{KeyID: keyID}
		t.m[keyID] = u
	}
	if at.After(u.LastUsedAt) {
		u.LastUsedAt = at
	}
	u.Count++
	t.mu.Unlock()
}

// Drain returns what was recorded since the last Drain and resets.
func (t *UsageTracker) Drain() []keystore.Usage {
	t.mu.Lock()
	m := t.m
	t.m = make(map[string]*keystore.Usage, len(m))
	t.mu.Unlock()
	out := make([]keystore.Usage, 0, len(m))
	for _, u := range m {
		out = append(out, *u)
	}
	return out
}
