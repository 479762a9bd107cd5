package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/extauthz/extauthz/policy"
)

// requestError is a client error: a 4xx status and its message.
type requestError struct {
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(format string, args ...any) *requestError {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// writeJSON writes v as the JSON response body. Responses can carry a raw
// key, so none may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"internal error"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

func writeRequestError(w http.ResponseWriter, err *requestError) {
	writeError(w, err.status, err.msg)
}

// checkContentType accepts the media type want with optional parameters
// (a charset must be utf-8).
func checkContentType(h http.Header, want string) *requestError {
	ct := h.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != want {
		return &requestError{http.StatusUnsupportedMediaType, "Content-Type must be " + want}
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return &requestError{http.StatusUnsupportedMediaType, "charset must be utf-8"}
	}
	return nil
}

// readJSONBody reads and strictly decodes a JSON object body of at most
// MaxBodyBytes into dst. With optional, an empty body leaves dst untouched
// and reports empty = true; the Content-Type is then not required.
func readJSONBody(w http.ResponseWriter, r *http.Request, dst any, optional bool) (empty bool, rerr *requestError) {
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
			return false, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}
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
		return false, &requestError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	}
	return false, decodeJSON(data, dst, "request body")
}

// decodeJSON strictly decodes exactly one JSON object from data into dst:
// unknown fields, wrong types and trailing data are errors naming what is
// wrong. what names data in messages ("request body", "line").
func decodeJSON(data []byte, dst any, what string) *requestError {
	if !utf8.Valid(data) {
		return badRequest("%s is not valid UTF-8", what)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return badRequest("%s must be a JSON object", what)
	}
	if rerr := checkFieldNames(data, dst); rerr != nil {
		return rerr
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err, dst, what)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err != io.EOF {
		return badRequest("unexpected data after the JSON object")
	}
	return nil
}

// checkFieldNames walks the top-level members of the object in data and
// refuses a name that is not exactly one of dst's JSON field names
// (encoding/json alone would accept "Name" for "name") or that appears
// twice (parsers disagree on which one wins). Syntax errors are left to the
// decoder, which reports them.
func checkFieldNames(data []byte, dst any) *requestError {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		name, ok := tok.(string)
		if !ok {
			return nil
		}
		if jsonFieldType(dst, name) == nil {
			return badRequest("unknown field %q", truncate(name, 64))
		}
		if seen[name] {
			return badRequest("duplicate field %q", name)
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil
		}
	}
	return nil
}

// jsonError turns a decoding error into a message naming the field. dst
// is the value decoded into, to describe the field's expected type.
func jsonError(err error, dst any, what string) *requestError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest("malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return badRequest("malformed JSON: unexpected end of input")
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("%s must be a JSON object", what)
		}
		want := te.Type
		if ft := jsonFieldType(dst, te.Field); ft != nil {
			want = ft
		}
		return badRequest("%s: must be %s, got %s", te.Field, describeType(want), te.Value)
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return badRequest("%s", msg[i:])
	}
	return badRequest("invalid JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// jsonFieldType returns the type of the top-level field of *dst whose JSON
// name is name, or nil.
func jsonFieldType(dst any, name string) reflect.Type {
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag == name {
			return f.Type
		}
	}
	return nil
}

// describeType names a Go type as its JSON kind.
func describeType(t reflect.Type) string {
	if t == nil {
		return "a different type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.String {
			return "an array of strings"
		}
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Float64:
		return "a number"
	default:
		return "a different type"
	}
}

// fieldErrors collects validation problems, each naming its field.
type fieldErrors []string

func (fe *fieldErrors) add(field, format string, args ...any) {
	*fe = append(*fe, field+": "+fmt.Sprintf(format, args...))
}

// err returns nil or a 400 listing every problem.
func (fe fieldErrors) err() *requestError {
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
		return time.Time{}, fmt.Errorf("must be an RFC 3339 time such as 2026-06-01T00:00:00.000Z, got %q", truncate(s, 64))
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
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
