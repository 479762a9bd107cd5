package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/extauthz/extauthz/clip"
	"github.com/extauthz/extauthz/policy"
	"github.com/extauthz/extauthz/strictjson"
)

// requestError is a client error: a 4xx status and its message (and, on
// a 401, the WWW-Authenticate challenge). Handlers return it; ServeHTTP's
// one error path answers it.
type requestError struct {
	status    int
	msg       string
	challenge string
	// retryAfter, when positive, is sent as Retry-After (a 429).
	retryAfter time.Duration
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

func forbidden(msg string) *requestError {
	return &requestError{status: http.StatusForbidden, msg: msg}
}

func notFound(msg string) *requestError {
	return &requestError{status: http.StatusNotFound, msg: msg}
}

func conflict(msg string) *requestError {
	return &requestError{status: http.StatusConflict, msg: msg}
}

func unsupportedMedia(msg string) *requestError {
	return &requestError{status: http.StatusUnsupportedMediaType, msg: msg}
}

// checkContentType accepts the media type want with optional parameters
// (a charset must be utf-8). A refusal is a 415 *requestError.
func checkContentType(h http.Header, want string) error {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != want {
		return unsupportedMedia("Content-Type must be " + want)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupportedMedia("charset must be utf-8")
	}
	return nil
}

// readJSONBody reads and strictly decodes a JSON object body of at most
// MaxBodyBytes into dst. With optional, an empty body leaves dst untouched
// and reports empty = true; the Content-Type is then not required. Every
// error is a *requestError.
func readJSONBody(w http.ResponseWriter, r *http.Request, dst any, optional bool) (empty bool, err error) {
	hasCT := r.Header.Get("Content-Type") != ""
	if hasCT || !optional {
		if err := checkContentType(r.Header, "application/json"); err != nil {
			return false, err
		}
	}
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return false, &requestError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}
		}
		return false, badRequest("reading request body: %v", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if optional {
			return true, nil
		}
		return false, badRequest("request body is required")
	}
	if !hasCT {
		return false, unsupportedMedia("Content-Type must be application/json")
	}
	return false, decodeJSON(data, dst, "request body")
}

// decodeJSON strictly decodes exactly one JSON object from data into dst
// (package strictjson): unknown, repeated or differently cased field
// names, wrong types and trailing data are a 400 naming what is wrong.
// what names data in messages ("request body", "line").
func decodeJSON(data []byte, dst any, what string) error {
	if err := strictjson.Unmarshal(data, dst, what); err != nil {
		return badRequest("%s", err)
	}
	return nil
}

// fieldErrors collects validation problems, each naming its field.
type fieldErrors []string

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, field+": "+fmt.Sprintf(format, args...))
}

// err returns nil or a 400 *requestError listing every problem.
func (fe fieldErrors) err() error {
	if len(fe) == 0 {
		return nil
	}
	return badRequest("%s", strings.Join(fe, "; "))
}

// checkText validates a human-readable name: 1..MaxNameLength characters,
// not blank, no control characters.
func checkText(s string) error {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return errors.New("must be valid UTF-8")
	case n == 0 || strings.TrimSpace(s) == "":
		return errors.New("must not be empty")
	case n > MaxNameLength:
		return fmt.Errorf("must be at most %d characters, got %d", MaxNameLength, n)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("must not contain control characters")
		}
	}
	return nil
}

// checkID validates a user or project id: 1..MaxNameLength characters, no
// control characters and no whitespace at either end.
func checkID(s string) error {
	if err := checkText(s); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return errors.New("must not start or end with whitespace")
	}
	return nil
}

// checkScopes validates a non-empty list against the policy's scopes and
// returns it without duplicates, in first-seen order.
func checkScopes(fe *fieldErrors, field string, scopes []string, pol *policy.Policy) []string {
	if scopes == nil {
		fe.add(field, "required")
		return nil
	}
	if len(scopes) == 0 {
		fe.add(field, "must not be empty")
		return nil
	}
	out := make([]string, 0, len(scopes))
	seen := make(map[string]bool, len(scopes))
	bad := 0
	for _, sc := range scopes {
		if !pol.KnownScope(sc) {
			if bad < 10 {
				fe.add(field, "unknown scope %q (known: %s)", sc, strings.Join(pol.Scopes, ", "))
			}
			bad++
			continue
		}
		if !seen[sc] {
			seen[sc] = true
			out = append(out, sc)
		}
	}
	if bad > 10 {
		fe.add(field, "%d more unknown scopes", bad-10)
	}
	return out
}

// parseTime parses an RFC 3339 time (fractional seconds optional).
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("must be an RFC 3339 time such as 2026-06-01T00:00:00.000Z, got %q", clip.String(s, 64))
	}
	return t.UTC(), nil
}

// checkExpiry parses an optional expiry that must lie after now.
func checkExpiry(fe *fieldErrors, field string, s *string, now time.Time) *time.Time {
	if s == nil {
		return nil
	}
	t, err := parseTime(*s)
	if err != nil {
		fe.add(field, "%v", err)
		return nil
	}
	if !t.After(now) {
		fe.add(field, "must be in the future")
		return nil
	}
	return &t
}

// apiTimeLayout is the documented APIs' time format: RFC 3339, milliseconds,
// UTC.
const apiTimeLayout = "2006-01-02T15:04:05.000Z"

func formatTime(t time.Time) string { return t.UTC().Format(apiTimeLayout) }

func formatTimePtr(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := formatTime(*t)
	return &s
}
