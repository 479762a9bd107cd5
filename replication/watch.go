package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/backoff"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/ndjson"
)

// errResnapshot means the admin answered 410 to the watch: compacted
// revision, replica ahead of the admin, or a different store id.
var errResnapshot = errors.New("replication: admin requires a new snapshot")

// errIdle means no line arrived within IdleTimeout.
var errIdle = errors.New("replication: no data from admin within the idle timeout")

// errProtocol means the watch stream broke the protocol (gap, bad line).
var errProtocol = errors.New("replication: watch protocol error")

// Run keeps the replica in step with the admin until ctx is done, then
// returns nil. Admin failures never
// end it: the replica keeps serving and Run retries with jittered backoff
// capped by MaxBackoff, on the next admin member when there are several
// (admins.go). It returns ErrClosed if the follower is closed meanwhile.
func (f *Follower) Run(ctx context.Context) error {
	bo := backoff.Backoff{Base: min(minBackoff, f.opts.MaxBackoff), Max: f.opts.MaxBackoff}
	needSnapshot := !f.Ready()
	afterSnapshot := false
	failing := false
	moving := false // moved since the last live watch: further moves log at debug
	for {
		if ctx.Err() != nil {
			return nil
		}
		t, moved := f.admins.pick(ctx)
		if moved {
			// Another address of the same name shares the connection
			// pool: drop what is left to the member moved away from.
			f.client.CloseIdleConnections()
			ev := f.log.Info()
			if moving {
				ev = f.log.Debug() // every member fails: said once
			}
			moving = true
			ev.Str("admin", t.logValue()).Uint64("revision", f.Revision()).Msg("moving to another admin")
		}
		var err error
		if needSnapshot {
			err = f.resync(ctx, t)
			if err == nil {
				needSnapshot, afterSnapshot = false, true
				bo.Reset()
				continue
			}
		} else {
			var live bool
			live, err = f.watch(ctx, t)
			if live {
				bo.Reset()
				afterSnapshot, failing, moving = false, false, false
			}
			if errors.Is(err, errResnapshot) {
				// A member that cannot continue this replica's history:
				// a snapshot from it, as from a single admin.
				needSnapshot = true
				f.log.Info().Err(err).Str("admin", t.logValue()).Msg("taking a new snapshot")
				// Straight away, unless this follows a snapshot just
				// taken: then back off, so a log compacted faster than a
				// snapshot loads cannot spin.
				if !afterSnapshot {
					continue
				}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrClosed) {
			return err
		}
		if !errors.Is(err, errResnapshot) {
			f.admins.failed(t) // lost: the next attempt goes to another member
		}
		d := bo.Next()
		ev := f.log.Warn()
		if failing {
			ev = f.log.Debug()
		}
		ev.Err(err).Str("admin", t.logValue()).Dur("retry_in", d).Bool("serving", f.Ready()).Uint64("revision", f.Revision()).Msg("replication interrupted")
		failing = true
		tm := time.NewTimer(d)
		select {
		case <-ctx.Done():
			tm.Stop()
			return nil
		case <-tm.C:
		}
	}
}

// request issues an authenticated GET of path to t whose context is
// cancelled when no line arrives within IdleTimeout; touch resets that
// timer.
func (f *Follower) request(ctx context.Context, t target, path string) (resp *http.Response, touch func(), done func(), err error) {
	ctx, cancel := context.WithCancelCause(withTarget(ctx, t))
	idle := time.AfterFunc(f.opts.IdleTimeout, func() { cancel(errIdle) })
	done = func() {
		idle.Stop()
		cancel(nil)
	}
	touch = func() { idle.Reset(f.opts.IdleTimeout) }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.base+path, nil)
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+f.opts.Token)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err = f.client.Do(req)
	if err != nil {
		done()
		if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
			err = errIdle
		}
		return nil, nil, nil, redactURLError(err)
	}
	return resp, touch, done, nil
}

// redactURLError keeps the error but drops the query string of the URL it
// names (nothing secret is there today; this keeps it that way).
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if i := strings.IndexByte(ue.URL, '?'); i >= 0 {
			ue.URL = ue.URL[:i]
		}
	}
	return err
}

// statusError describes a non-200 answer, with the admin's error message.
func statusError(resp *http.Response) error {
	var body struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&body)
	if body.Error != "" {
		return fmt.Errorf("admin answered %d: %s", resp.StatusCode, body.Error)
	}
	return fmt.Errorf("admin answered %d", resp.StatusCode)
}

// watch follows the change stream from the replica's revision. live
// reports whether a heartbeat arrived, i.e. the follower was current.
func (f *Follower) watch(ctx context.Context, t target) (live bool, err error) {
	st := f.replica()
	if st == nil {
		return false, ErrClosed
	}
	if st.CommitError() != nil {
		// The watch stopped because the file refused the changes in
		// force; it resumes once they are written.
		if err := st.Commit(); err != nil {
			return false, fmt.Errorf("replication: write replica: %w", err)
		}
	}
	q := "?since=" + strconv.FormatUint(st.Revision(), 10) + "&store_id=" + url.QueryEscape(st.StoreID())
	resp, touch, done, err := f.request(ctx, t, PathWatch+q)
	if err != nil {
		return false, err
	}
	defer done()
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusGone:
		return false, fmt.Errorf("%w: %w", errResnapshot, statusError(resp))
	default:
		return false, statusError(resp)
	}
	err = f.consumeWatch(st, resp.Body, touch, func() {
		if !live {
			live = true
			f.log.Info().Str("admin", t.logValue()).Uint64("revision", f.Revision()).Msg("following admin")
		}
	})
	if cause := context.Cause(ctx); errors.Is(cause, errIdle) {
		err = errIdle
	}
	return live, err
}

// consumeWatch applies a watch stream to rep until it ends. Lines that
// arrived together are staged together (keystore.Replica.Stage). onLive is
// called at every heartbeat that confirms the replica is current.
func (f *Follower) consumeWatch(rep *keystore.Replica, body io.Reader, touch func(), onLive func()) error {
	lr := ndjson.NewReader(body, MaxLineSize)
	pos := rep.Revision()
	// live turns true at the first heartbeat, which the admin sends only
	// after the catch-up: before it, applied changes do not prove the
	// replica is current.
	live := false
	batch := make([]keystore.Change, 0, 64)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := rep.Stage(batch)
		clear(batch)
		batch = batch[:0]
		if err != nil {
			return fmt.Errorf("replication: write replica: %w", err)
		}
		if live {
			f.markCurrent(rep, f.opts.Now())
		}
		return nil
	}
	for {
		line, err := lr.NextWhole()
		if errors.Is(err, ndjson.ErrTooLong) {
			err = fmt.Errorf("%w: line longer than %d bytes", errBadLine, MaxLineSize)
		}
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			if errors.Is(err, io.EOF) {
				return errors.New("replication: admin ended the watch")
			}
			return err
		}
		touch()
		l, err := decodeWatchLine(line)
		if err != nil {
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return fmt.Errorf("%w: %w", errProtocol, err)
		}
		if l.Type == typeHeartbeat {
			if err := flush(); err != nil {
				return err
			}
			if err := rep.CommitError(); err != nil {
				return fmt.Errorf("replication: %w: %w", keystore.ErrUnwritable, err)
			}
			if l.Revision != pos {
				return fmt.Errorf("%w: heartbeat at revision %d, replica at %d", errProtocol, l.Revision, pos)
			}
			live = true
			f.markCurrent(rep, f.opts.Now())
			onLive()
			continue
		}
		if l.Revision != pos+1 {
			if err := flush(); err != nil {
				return err
			}
			return fmt.Errorf("%w: revision %d follows %d", errProtocol, l.Revision, pos)
		}
		pos = l.Revision
		batch = append(batch, l.change())
		if len(batch) >= watchBatchMax || !lr.Buffered() {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
