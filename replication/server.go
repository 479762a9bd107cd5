package replication

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/extauthz/extauthz/bearer"
	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/metrics"
	"github.com/extauthz/extauthz/secret"
	"github.com/extauthz/extauthz/strictjson"
)

// DefaultHeartbeat is the watch heartbeat interval when
// ServerOptions.Heartbeat is zero.
const DefaultHeartbeat = 5 * time.Second

// HeaderRevision is the response field of an accepted usage report: the
// admin's revision once the report is recorded. A replica at that revision
// or later reflects the report in its quotas' remaining counts.
const HeaderRevision = "Extauthz-Revision"

// HeaderStoreID is the other response field of an accepted usage report:
// the id of the store the revision belongs to. A revision of another
// store says nothing of a replica's quotas.
const HeaderStoreID = "Extauthz-Store-Id"

// MaxUsageBody bounds the body of a usage report.
const MaxUsageBody = 1 << 20

const (
	// writeTimeout bounds each write to a replication client. It is set
	// before every write, so it also overrides the http.Server's
	// WriteTimeout, which would otherwise cut every long watch stream.
	writeTimeout = 30 * time.Second
	// watchChunk is how many changes are read from the log per read
	// transaction; the network writes happen outside the transaction.
	watchChunk = 1024
)

// ServerOptions configures NewServer.
type ServerOptions struct {
	// Store is the authoritative store to replicate. Required.
	Store *keystore.Store
	// Token is the replication bearer token. An empty token refuses every
	// request with 401.
	Token string
	// Heartbeat is the watch heartbeat interval; zero means DefaultHeartbeat.
	Heartbeat time.Duration
	// Logger receives one line per stream opened or failed; no secret is
	// ever logged.
	Logger zerolog.Logger
	// Registerer, when not nil, gets extauthz_store_revision and
	// extauthz_watchers.
	Registerer prometheus.Registerer
	// RecordUsage keeps the usage sidecars report; nil means
	// Store.RecordUsage. A member of an admin cluster passes its
	// replicated writer's, so that usage is a log entry like any change.
	RecordUsage func([]keystore.Usage) error
	// BehindWait, when not zero, makes a watch that asks for a revision
	// this store does not have yet, with this store's id, wait up to that
	// long for it, then answer 503 (retry) instead of 410 (take a new
	// snapshot): a member of an admin cluster may be behind another that
	// the follower came from. Zero: such a watch is answered 410 at once,
	// as one admin must (its store was replaced).
	BehindWait time.Duration
	// Current, when not nil, says whether this store may be taken as
	// current: a member of an admin cluster that knows no leader (an
	// election, or cut off from the others) cannot tell whether the
	// others committed changes it lacks. While it returns an error,
	// snapshots and new watches are answered 503 with that error, so
	// followers go to another member, and open watches get no heartbeat,
	// so their followers' staleness grows until the member knows again
	// (or their idle timeout sends them elsewhere).
	Current func() error
}

// Server is the admin's side of replication: an http.Handler for the
// snapshot, watch and usage endpoints under /replication/v1/. It is safe
// for concurrent use.
type Server struct {
	store      *keystore.Store
	usage      func([]keystore.Usage) error
	behindWait time.Duration
	current    func() error
	token      secret.Token
	heartbeat  time.Duration
	mux        *http.ServeMux
	log        zerolog.Logger
	watchers   prometheus.Gauge

	closeOnce sync.Once
	done      chan struct{}
}

// NewServer returns a Server over opts.Store. Metric registration errors
// (a collector already registered) are logged and otherwise ignored.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.RecordUsage == nil {
		opts.RecordUsage = opts.Store.RecordUsage
	}
	s := &Server{
		store:      opts.Store,
		usage:      opts.RecordUsage,
		behindWait: opts.BehindWait,
		current:    opts.Current,
		token:      secret.NewToken(opts.Token),
		heartbeat:  opts.Heartbeat,
		mux:        http.NewServeMux(),
		log:        opts.Logger,
		watchers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_watchers",
			Help: "Open replication watch streams.",
		}),
		done: make(chan struct{}),
	}
	// A GET pattern serves HEAD too.
	s.mux.HandleFunc(http.MethodGet+" "+PathSnapshot, s.serveSnapshot)
	s.mux.HandleFunc(http.MethodGet+" "+PathWatch, s.serveWatch)
	s.mux.HandleFunc(http.MethodPost+" "+PathUsage, s.serveUsage)
	if !s.token.IsSet() {
		s.log.Warn().Msg("no replication token configured: every replication request is refused")
	}
	revision := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "extauthz_store_revision",
		Help: "Last committed revision of the authoritative store.",
	}, func() float64 { return float64(opts.Store.Revision()) })
	if err := metrics.Register(opts.Registerer, "replication", revision, s.watchers); err != nil {
		return nil, err
	}
	return s, nil
}

// Close ends every open watch stream and refuses new ones with 503. It is
// meant for shutdown, before http.Server.Shutdown, which would otherwise
// wait for the streams. Snapshots and usage reports are still served.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}

// ServeHTTP serves the three replication endpoints. Every request must
// carry the replication token; anything else is answered 401 first, so an
// unauthenticated caller learns nothing about the paths. Then the mux
// routes it; a path it does not know is a 404, a wrong method a 405 with
// an Allow header, both with a JSON body.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="replication"`)
		jsonresp.Error(w, http.StatusUnauthorized, "invalid or missing replication token")
		return
	}
	if h, pattern := s.mux.Handler(r); pattern == "" {
		jsonresp.Unmatched(w, r, h)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized reports whether the request's bearer token (package bearer's
// rule) is the replication token, compared in constant time on SHA-256
// digests (package secret), so that not even the token's length leaks
// through timing.
func (s *Server) authorized(r *http.Request) bool {
	tok, ok := bearer.Token(r.Header.Get("Authorization"))
	return ok && s.token.Matches(tok)
}

// deadlineWriter pushes the write deadline forward before every write, so
// a client that stops reading is cut after writeTimeout while a slow but
// moving one is not.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return d.w.Write(p)
}

// serveSnapshot streams every record inside one read transaction. The
// trailer's sha256 covers the exact bytes of the record lines (every line
// between header and trailer, each with its newline), neither the header
// nor the trailer. A failure after the header cannot change the status
// any more: the stream then simply ends without a trailer, which a
// follower rejects.
// notCurrent answers 503 when Current says the store may not be current.
func (s *Server) notCurrent(w http.ResponseWriter) bool {
	if s.current == nil {
		return false
	}
	err := s.current()
	if err == nil {
		return false
	}
	w.Header().Set("Retry-After", "1")
	jsonresp.Error(w, http.StatusServiceUnavailable, err.Error())
	return true
}

// vouches reports whether the store may be taken as current now (see
// ServerOptions.Current): a heartbeat says so.
func (s *Server) vouches() bool { return s.current == nil || s.current() == nil }

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if s.notCurrent(w) {
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	bw := bufio.NewWriterSize(deadlineWriter{w: w, rc: rc}, 64<<10)
	var (
		count uint64
		rev   uint64
		buf   []byte
	)
	sum := sha256.New()
	err := s.store.View(func(sn *keystore.Snapshot) error {
		rev = sn.Revision
		var err error
		buf, err = appendLine(buf[:0], headerLine{Type: typeHeader, Revision: sn.Revision, StoreID: sn.StoreID, Schema: SchemaVersion})
		if err != nil {
			return err
		}
		if _, err := bw.Write(buf); err != nil {
			return err
		}
		// Send the status and header line at once, so that the client's
		// response-header timeout does not depend on the store's size.
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		err = sn.ForEachRecord(func(isKey bool, v []byte) error {
			buf = appendStoredRecord(buf[:0], isKey, v)
			sum.Write(buf)
			count++
			_, err := bw.Write(buf)
			return err
		})
		if err != nil {
			return err
		}
		buf, err = appendLine(buf[:0], endLine{Type: typeEnd, Count: count, SHA256: hex.EncodeToString(sum.Sum(nil))})
		if err != nil {
			return err
		}
		_, err = bw.Write(buf)
		return err
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		s.log.Warn().Err(err).Str("remote", r.RemoteAddr).Uint64("revision", rev).Msg("snapshot aborted")
		return
	}
	s.log.Info().Str("remote", r.RemoteAddr).Uint64("revision", rev).Uint64("records", count).Msg("snapshot served")
}

// watchGone answers 410 so that the follower takes a new snapshot.
func watchGone(w http.ResponseWriter, msg string, oldest uint64) {
	jsonresp.Write(w, http.StatusGone, struct {
		Error  string `json:"error"`
		Oldest uint64 `json:"oldest"`
	}{msg, oldest})
}

// waitFor waits up to behindWait for the store to reach revision rev and
// returns the revision it reached.
func (s *Server) waitFor(ctx context.Context, rev uint64) uint64 {
	timer := time.NewTimer(s.behindWait)
	defer timer.Stop()
	for {
		changed := s.store.Changed()
		if head := s.store.Revision(); head >= rev {
			return head
		}
		select {
		case <-changed:
		case <-timer.C:
			return s.store.Revision()
		case <-ctx.Done():
			return s.store.Revision()
		case <-s.done:
			return s.store.Revision()
		}
	}
}

// serveWatch streams every change after since, then a heartbeat, then
// each further change as soon as it commits and a heartbeat every
// interval. A heartbeat's revision is the last revision sent on the
// stream, so a follower that holds it is current.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, err := strconv.ParseUint(q.Get("since"), 10, 64)
	if err != nil {
		jsonresp.Error(w, http.StatusBadRequest, "since must be a revision (unsigned integer)")
		return
	}
	select {
	case <-s.done:
		jsonresp.Error(w, http.StatusServiceUnavailable, "shutting down")
		return
	default:
	}
	if s.notCurrent(w) {
		return
	}
	oldest, err := s.store.OldestRevision()
	if err != nil {
		s.log.Error().Err(err).Msg("watch: read change log")
		jsonresp.Error(w, http.StatusInternalServerError, "store unavailable")
		return
	}
	head := s.store.Revision()
	if since > head && s.behindWait > 0 && q.Get("store_id") == s.store.StoreID() {
		if head = s.waitFor(r.Context(), since); since > head {
			w.Header().Set("Retry-After", "1")
			jsonresp.Error(w, http.StatusServiceUnavailable, fmt.Sprintf("this admin is behind revision %d (at %d); retry", since, head))
			return
		}
	}
	switch {
	case q.Has("store_id") && q.Get("store_id") != s.store.StoreID():
		watchGone(w, "store id mismatch", oldest)
		return
	case since > head:
		watchGone(w, "revision ahead of store", oldest)
		return
	case since < head && since+1 < oldest:
		watchGone(w, "revision compacted", oldest)
		return
	}

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.WriteHeader(http.StatusOK)
	s.watchers.Inc()
	defer s.watchers.Dec()
	log := s.log.With().Str("remote", r.RemoteAddr).Logger()
	log.Debug().Uint64("since", since).Msg("watch opened")

	ctx := r.Context()
	ws := &watchStream{s: s, w: deadlineWriter{w: w, rc: rc}, rc: rc, pos: since}
	ticker := time.NewTicker(s.heartbeat)
	defer ticker.Stop()
	err = ws.catchUp()
	if err == nil && s.vouches() {
		err = ws.heartbeat()
	}
	for err == nil {
		changed := s.store.Changed()
		if s.store.Revision() > ws.pos {
			before := ws.pos
			if err = ws.catchUp(); err == nil && ws.pos == before {
				// The log lacks revisions the store has: end the stream,
				// the follower's next watch gets a definite answer.
				err = fmt.Errorf("replication: change log behind store revision %d", s.store.Revision())
			}
			continue
		}
		select {
		case <-changed:
		case <-ticker.C:
			if s.vouches() {
				err = ws.heartbeat()
			}
		case <-ctx.Done():
			err = ctx.Err()
		case <-s.done:
			err = errServerClosed
		}
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, errServerClosed):
		log.Debug().Err(err).Uint64("revision", ws.pos).Msg("watch closed")
	default:
		log.Info().Err(err).Uint64("revision", ws.pos).Msg("watch ended")
	}
}

var errServerClosed = errors.New("replication: server closed")

type watchStream struct {
	s   *Server
	w   io.Writer
	rc  *http.ResponseController
	pos uint64
	buf []byte
}

// catchUp sends every change after pos, reading the log in chunks so that
// no read transaction stays open while the network is written.
func (ws *watchStream) catchUp() error {
	batch := make([]keystore.Change, 0, watchChunk)
	for {
		batch = batch[:0]
		err := ws.s.store.Changes(ws.pos, watchChunk, func(c keystore.Change) error {
			batch = append(batch, c)
			return nil
		})
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			return nil
		}
		ws.buf = ws.buf[:0]
		for _, c := range batch {
			if c.Revision != ws.pos+1 {
				return fmt.Errorf("replication: change log gap at %d (next is %d)", ws.pos+1, c.Revision)
			}
			rl, err := recordOf(c, true)
			if err != nil {
				return err
			}
			if ws.buf, err = appendLine(ws.buf, rl); err != nil {
				return err
			}
			ws.pos = c.Revision
		}
		if err := ws.flush(); err != nil {
			return err
		}
		if len(batch) < watchChunk {
			return nil
		}
	}
}

func (ws *watchStream) heartbeat() error {
	var err error
	if ws.buf, err = appendLine(ws.buf[:0], heartbeatLine{Type: typeHeartbeat, Revision: ws.pos}); err != nil {
		return err
	}
	return ws.flush()
}

func (ws *watchStream) flush() error {
	if _, err := ws.w.Write(ws.buf); err != nil {
		return err
	}
	return ws.rc.Flush()
}

// usageReport is the body of POST /replication/v1/usage.
type usageReport struct {
	Node  string           `json:"node"`
	Usage []keystore.Usage `json:"usage"`
}

// serveUsage records a usage report. The body is decoded strictly
// (package strictjson: exact names, unknown or repeated members refused)
// as it is read, so that a body over MaxUsageBody is a 413 unless bad JSON
// comes first.
func (s *Server) serveUsage(w http.ResponseWriter, r *http.Request) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		jsonresp.Error(w, http.StatusUnsupportedMediaType, "content type must be application/json")
		return
	}
	var rep usageReport
	if err := strictjson.Decode(http.MaxBytesReader(w, r.Body, MaxUsageBody), &rep, "body"); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			jsonresp.Error(w, http.StatusRequestEntityTooLarge, "body over 1 MiB")
			return
		}
		jsonresp.Error(w, http.StatusBadRequest, "bad usage report: "+err.Error())
		return
	}
	for i, u := range rep.Usage {
		if u.KeyID == "" {
			jsonresp.Error(w, http.StatusBadRequest, fmt.Sprintf("usage[%d].key_id is required", i))
			return
		}
	}
	if err := s.usage(rep.Usage); err != nil {
		var u interface{ Unavailable() bool }
		if errors.As(err, &u) && u.Unavailable() {
			// An admin cluster without quorum: the sidecar keeps the
			// batch and reports it again.
			jsonresp.Error(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		s.log.Error().Err(err).Str("node", rep.Node).Msg("record usage")
		jsonresp.Error(w, http.StatusInternalServerError, "could not record usage")
		return
	}
	s.log.Debug().Str("node", rep.Node).Int("keys", len(rep.Usage)).Msg("usage recorded")
	w.Header().Set(HeaderRevision, strconv.FormatUint(s.store.Revision(), 10))
	w.Header().Set(HeaderStoreID, s.store.StoreID())
	w.WriteHeader(http.StatusNoContent)
}
