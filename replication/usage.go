package replication

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/extauthz/extauthz/keystore"
)

// SendUsage posts a batch of usage to the admin, in chunks: the Send
// function of a sidecar's usage buffer (package usage). A chunk that fails
// for a reason that may pass (network, 401, 429, 5xx) is returned with
// the rest of the batch, for the next flush; one the admin refuses as
// malformed (other 4xx) is dropped and the rest is still sent.
func (f *Follower) SendUsage(ctx context.Context, batch []keystore.Usage) (retry []keystore.Usage, err error) {
	var refused []error
	for len(batch) > 0 {
		n := min(len(batch), usageChunk)
		again, err := f.postUsage(ctx, batch[:n])
		if err != nil && again {
			return batch, errors.Join(append(refused, err)...)
		}
		if err != nil {
			refused = append(refused, err)
		}
		batch = batch[n:]
	}
	return nil, errors.Join(refused...)
}

func (f *Follower) postUsage(ctx context.Context, us []keystore.Usage) (retry bool, err error) {
	body, err := json.Marshal(usageReport{Node: f.opts.Node, Usage: us})
	if err != nil {
		return false, err
	}
	t := f.admins.current()
	ctx, cancel := context.WithTimeout(withTarget(ctx, t), usageTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+PathUsage, bytes.NewReader(body))
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
		// A revision settles this replica's quotas only if it is of the
		// replica's store: not one of a member of another history, or of a
		// cluster restored under a new id (the uses stay unreflected, so
		// the sidecar's allowance for them is not given back).
		id := resp.Header.Get(HeaderStoreID)
		if rev, err := strconv.ParseUint(resp.Header.Get(HeaderRevision), 10, 64); err == nil && f.opts.UsageAcked != nil && id != "" && id == f.StoreID() {
			f.opts.UsageAcked(us, rev)
		}
		return false, nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, statusError(resp)
	default:
		return false, errors.Join(errors.New("usage report refused"), statusError(resp))
	}
}
