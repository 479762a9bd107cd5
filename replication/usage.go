package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// ReportUsage buffers usage observed by a front door: per key the latest
// LastUsedAt and the sum of counts. Run sends the buffer every UsageFlush.
// It never blocks on the network; once maxUsageKeys distinct keys are
// buffered, reports for further keys are dropped (and counted in the log).
func (f *Follower) ReportUsage(us []keystore.Usage) {
	f.usageMu.Lock()
	for _, u := range us {
		f.mergeUsage(u)
	}
	f.usageMu.Unlock()
}

// RecordUse is ReportUsage for a single use of one key, without building a
// slice on the request path.
func (f *Follower) RecordUse(keyID string, at time.Time) {
	f.usageMu.Lock()
	f.mergeUsage(keystore.Usage{KeyID: keyID, LastUsedAt: at, Count: 1})
	f.usageMu.Unlock()
}

// mergeUsage folds u into the buffer; usageMu is held.
func (f *Follower) mergeUsage(u keystore.Usage) {
	if u.KeyID == "" {
		return
	}
	e, ok := f.usage[u.KeyID]
	if !ok {
		if len(f.usage) >= maxUsageKeys {
			f.dropped++
			return
		}
		f.usage[u.KeyID] = u
		return
	}
	if u.LastUsedAt.After(e.LastUsedAt) {
		e.LastUsedAt = u.LastUsedAt
	}
	e.Count += u.Count
	f.usage[u.KeyID] = e
}

// runUsage flushes the usage buffer every UsageFlush until ctx is done,
// then once more within finalFlushLimit.
func (f *Follower) runUsage(ctx context.Context) {
	t := time.NewTicker(f.opts.UsageFlush)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushLimit)
			f.flushUsage(fctx)
			cancel()
			return
		case <-t.C:
			f.flushUsage(ctx)
		}
	}
}

// flushUsage sends the buffer in chunks. A chunk that fails for a reason
// that may pass (network, 401, 5xx) is merged back for the next flush; one
// the admin refuses as malformed (other 4xx) is dropped.
func (f *Follower) flushUsage(ctx context.Context) {
	f.flushing.Store(true)
	defer f.flushing.Store(false)
	f.usageMu.Lock()
	if len(f.usage) == 0 && f.dropped == 0 {
		f.usageMu.Unlock()
		return
	}
	pending := make([]keystore.Usage, 0, len(f.usage))
	for _, u := range f.usage {
		pending = append(pending, u)
	}
	clear(f.usage)
	dropped := f.dropped
	f.dropped = 0
	f.usageMu.Unlock()
	if dropped > 0 {
		f.log.Warn().Uint64("dropped", dropped).Msg("usage buffer full: reports dropped")
	}

	for len(pending) > 0 {
		n := min(len(pending), usageChunk)
		chunk := pending[:n]
		retry, err := f.postUsage(ctx, chunk)
		if err == nil {
			pending = pending[n:]
			continue
		}
		f.log.Debug().Err(err).Int("keys", len(pending)).Bool("kept", retry).Msg("usage report failed")
		if !retry {
			pending = pending[n:]
			continue
		}
		f.ReportUsage(pending)
		return
	}
}

func (f *Follower) postUsage(ctx context.Context, us []keystore.Usage) (retry bool, err error) {
	body, err := json.Marshal(usageReport{Node: f.opts.Node, Usage: us})
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, usageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.base+PathUsage, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return true, redactURLError(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
		return false, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, statusError(resp)
	default:
		return false, errors.Join(errors.New("usage report refused"), statusError(resp))
	}
}
