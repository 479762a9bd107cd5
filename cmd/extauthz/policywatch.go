package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/policy"
)

// policyWatcher holds the policy in force and reloads it when the file
// changes (polled, which also sees Kubernetes ConfigMap symlink swaps) or
// on SIGHUP. A policy that fails validation is logged and refused; the
// old one stays.
type policyWatcher struct {
	path string
	log  zerolog.Logger
	cur  atomic.Pointer[policy.Policy]
	sum  [32]byte

	mu        sync.Mutex
	listeners []func(*policy.Policy)
}

func newPolicyWatcher(path string, log zerolog.Logger) (*policyWatcher, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := policy.Parse(data)
	if err != nil {
		return nil, err
	}
	w := &policyWatcher{path: path, log: log.With().Str("component", "policy").Str("path", path).Logger(), sum: sha256.Sum256(data)}
	w.cur.Store(p)
	return w, nil
}

// Current returns the policy in force.
func (w *policyWatcher) Current() *policy.Policy { return w.cur.Load() }

// OnChange registers fn to be called with every newly accepted policy.
func (w *policyWatcher) OnChange(fn func(*policy.Policy)) {
	w.mu.Lock()
	w.listeners = append(w.listeners, fn)
	w.mu.Unlock()
}

// Run polls every interval and reloads on SIGHUP until ctx ends.
func (w *policyWatcher) Run(ctx context.Context, every time.Duration) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if every <= 0 {
		every = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			w.reload(true)
		case <-t.C:
			w.reload(false)
		}
	}
}

// reload reads the file and applies it when its content changed (or when
// forced by SIGHUP). It reports whether a new policy was applied.
func (w *policyWatcher) reload(force bool) bool {
	data, err := os.ReadFile(w.path)
	if err != nil {
		w.log.Error().Err(err).Msg("policy reload failed; keeping the current policy")
		return false
	}
	sum := sha256.Sum256(data)
	if !force && bytes.Equal(sum[:], w.sum[:]) {
		return false
	}
	w.sum = sum
	p, err := policy.Parse(data)
	if err != nil {
		w.log.Error().Err(err).Msg("new policy refused; keeping the current policy")
		return false
	}
	w.cur.Store(p)
	w.mu.Lock()
	ls := append([]func(*policy.Policy){}, w.listeners...)
	w.mu.Unlock()
	for _, fn := range ls {
		fn(p)
	}
	w.log.Info().Int("routes", len(p.Routes)).Msg("policy reloaded")
	return true
}
