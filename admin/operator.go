package admin

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
)

// Operator-only routes (docs/admin-api.md), besides the import.

type setUserRequest struct {
	Active *bool `json:"active"`
}

// UserResponse is the answer of PUT /api/v1/users/{id}.
type UserResponse struct {
	ID     string `json:"id"`
	Active bool   `json:"active"`
}

func (s *Server) setUser(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	var req setUserRequest
	if _, err := readJSONBody(w, r, &req, false); err != nil {
		return err
	}
	var fe fieldErrors
	if err := checkID(id); err != nil {
		fe.add("id", "%v", err)
	}
	if req.Active == nil {
		fe.add("active", "required")
	}
	if err := fe.err(); err != nil {
		return err
	}
	u, err := s.store.SetUserActive(id, *req.Active, p.actor())
	if err != nil {
		return err
	}
	action := "user.enable"
	if !u.Active {
		action = "user.disable"
	}
	s.log.Info().
		Str("actor", p.actor()).
		Str("action", action).
		Str("user_id", u.ID).
		Str("route", r.Pattern).
		Int("status", http.StatusOK).
		Msg("admin change")
	jsonresp.Write(w, http.StatusOK, UserResponse{ID: u.ID, Active: u.Active})
	return nil
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	var fe fieldErrors
	var since time.Time
	if q.Has("since") {
		t, err := parseTime(q.Get("since"))
		if err != nil {
			fe.add("since", "%v", err)
		}
		// The audit log is keyed by Unix nanoseconds: anything before the
		// epoch means "from the beginning".
		if t.After(time.Unix(0, 0)) {
			since = t
		}
	}
	limit := DefaultAuditLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxAuditLimit {
			fe.add("limit", "must be an integer from 1 to %d", MaxAuditLimit)
		}
		limit = n
	}
	if err := fe.err(); err != nil {
		return err
	}
	if since.After(time.Unix(0, math.MaxInt64)) {
		jsonresp.Write(w, http.StatusOK, []keystore.Event{})
		return nil
	}
	events, err := s.store.Audit(since, limit)
	if err != nil {
		return err
	}
	if events == nil {
		events = []keystore.Event{}
	}
	jsonresp.Write(w, http.StatusOK, events)
	return nil
}

// backup streams a consistent copy of the store file (keystore.Backup): an
// online backup that the restore command puts back as a new history.
func (s *Server) backup(w http.ResponseWriter, r *http.Request, p principal) error {
	// No write deadline: a large store takes longer than any fixed bound.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="extauthz.db"`)
	n, rev, err := s.store.Backup(w)
	if err != nil {
		// The status is sent; a cut body fails the client's check.
		s.log.Error().Err(err).Str("actor", p.actor()).Int64("bytes", n).Msg("backup failed")
		return nil
	}
	s.log.Info().
		Str("actor", p.actor()).
		Str("action", "store.backup").
		Uint64("revision", rev).
		Int64("bytes", n).
		Str("route", r.Pattern).
		Msg("admin backup")
	return nil
}
