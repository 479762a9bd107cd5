package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/jsonresp"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/ndjson"
	"github.com/extauthz/extauthz/policy"
)

// importLine is one NDJSON line of POST /api/v1/api-keys/import.
type importLine struct {
	Hash      *string  `json:"hash"`
	Prefix    *string  `json:"prefix"`
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	UserID    *string  `json:"userId"`
	ProjectID *string  `json:"projectId"`
	CreatedAt *string  `json:"createdAt"`
	ExpiresAt *string  `json:"expiresAt"`
}

// ImportLineError reports one refused line of an import.
type ImportLineError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ImportResponse is the answer of POST /api/v1/api-keys/import.
// ErrorsOmitted counts the errors
// beyond the first MaxImportErrors, which are not listed.
type ImportResponse struct {
	Imported      int               `json:"imported"`
	Skipped       int               `json:"skipped"`
	Errors        []ImportLineError `json:"errors"`
	ErrorsOmitted int               `json:"errorsOmitted,omitempty"`
}

func (res *ImportResponse) addError(line int, msg string) {
	if len(res.Errors) < MaxImportErrors {
		res.Errors = append(res.Errors, ImportLineError{Line: line, Error: msg})
		return
	}
	res.ErrorsOmitted++
}

// parseImportLine strictly decodes and validates one line into a record
// with a new id. Blank lines are the caller's business.
func parseImportLine(line []byte, pol *policy.Policy) (*keystore.Key, error) {
	var in importLine
	if err := decodeJSON(line, &in, "line"); err != nil {
		return nil, err
	}
	var fe fieldErrors
	k := &keystore.Key{}
	if in.Hash == nil {
		fe.add("hash", "required")
	} else if h, err := keystore.ParseHash(*in.Hash); err != nil {
		fe.add("hash", "must be 64 hex characters (the SHA-256 of the key)")
	} else {
		k.Hash = h
	}
	switch {
	case in.Prefix == nil:
		fe.add("prefix", "required")
	case *in.Prefix == "" || len(*in.Prefix) > MaxImportPrefixLength:
		fe.add("prefix", "must be 1 to %d bytes", MaxImportPrefixLength)
	default:
		for _, c := range []byte(*in.Prefix) {
			if c <= ' ' || c >= 0x7f {
				fe.add("prefix", "must be printable ASCII without spaces")
				break
			}
		}
		k.Prefix = *in.Prefix
	}
	if in.Name != nil {
		if err := checkText(*in.Name); err != nil {
			fe.add("name", "%v", err)
		}
		k.Name = *in.Name
	}
	k.Scopes = checkScopes(&fe, "scopes", in.Scopes, pol)
	if in.UserID != nil {
		if err := checkID(*in.UserID); err != nil {
			fe.add("userId", "%v", err)
		}
		k.UserID = *in.UserID
	}
	if in.ProjectID != nil {
		if err := checkID(*in.ProjectID); err != nil {
			fe.add("projectId", "%v", err)
		}
		k.ProjectID = *in.ProjectID
	}
	if in.CreatedAt != nil {
		t, err := parseTime(*in.CreatedAt)
		if err != nil {
			fe.add("createdAt", "%v", err)
		}
		k.CreatedAt = t
	}
	if in.ExpiresAt != nil {
		// An imported key keeps its expiry even when it has passed: it is
		// then stored, and refused, like any expired key.
		t, err := parseTime(*in.ExpiresAt)
		if err != nil {
			fe.add("expiresAt", "%v", err)
		}
		k.ExpiresAt = &t
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	k.ID = uuid.NewString()
	return k, nil
}

// newImportReader reads import lines of at most max bytes without their
// line ending, which may be CRLF (see nextImportLine).
func newImportReader(r io.Reader, max int) *ndjson.Reader {
	return ndjson.NewReader(r, max+len("\r\n"))
}

// nextImportLine returns the next line from lr, a newImportReader of the
// same max, without its line ending ("\n" or "\r\n"; the last line needs
// none). tooLong reports a line of more than max bytes without its line
// ending (line is then nil); reading goes on after it. err is io.EOF at
// the end, or the body's read error.
func nextImportLine(lr *ndjson.Reader, max int) (line []byte, tooLong bool, err error) {
	b, err := lr.Next()
	switch {
	case errors.Is(err, ndjson.ErrTooLong):
		return nil, true, nil
	case err != nil:
		return nil, false, err
	}
	b = bytes.TrimSuffix(b, []byte{'\n'})
	b = bytes.TrimSuffix(b, []byte{'\r'})
	if len(b) > max {
		return nil, true, nil
	}
	return b, false, nil
}

// releaseEvery is how many import chunks pass between ReleaseMemory calls.
const releaseEvery = 1

// importKeys streams NDJSON records into the store in chunks of
// ImportChunkSize; memory stays bounded whatever the body size.
func (s *Server) importKeys(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := checkContentType(r.Header, "application/x-ndjson"); err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	extendDeadline := func() {
		// Not every ResponseWriter supports deadlines (httptest recorders);
		// then the server's own timeouts apply unchanged.
		_ = rc.SetReadDeadline(time.Now().Add(ImportIdleTimeout))
	}
	extendDeadline()
	pol := s.policy()
	res := ImportResponse{Errors: []ImportLineError{}}
	chunk := make([]*keystore.Key, 0, ImportChunkSize)
	chunks := 0
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		ir, err := s.store.ImportKeys(chunk, p.actor())
		if err != nil {
			return fmt.Errorf("import after %d keys: %w", res.Imported, err)
		}
		res.Imported += ir.Imported
		res.Skipped += len(ir.Skipped)
		chunks++
		if chunks%releaseEvery == 0 {
			// Random-hash inserts touch every page of the key bucket; give
			// the clean mapped pages back so RSS stays bounded.
			if err := s.store.ReleaseMemory(); err != nil {
				s.log.Warn().Err(err).Msg("release memory during import")
			}
		}
		clear(chunk)
		chunk = chunk[:0]
		extendDeadline()
		return nil
	}
	lr := newImportReader(r.Body, MaxImportLineBytes)
	var readErr error
	for {
		line, tooLong, err := nextImportLine(lr, MaxImportLineBytes)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			readErr = err
			break
		}
		n := lr.Line()
		if n%ImportChunkSize == 0 {
			extendDeadline() // progress through error or duplicate lines counts too
		}
		if tooLong {
			res.addError(n, fmt.Sprintf("line is longer than %d bytes", MaxImportLineBytes))
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		k, err := parseImportLine(line, pol)
		if err != nil {
			res.addError(n, err.Error())
			continue
		}
		chunk = append(chunk, k)
		if len(chunk) == ImportChunkSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	status := http.StatusOK
	if readErr != nil {
		// What was read before the failure is committed; duplicates are
		// skipped, so the whole import can simply be sent again.
		status = http.StatusBadRequest
		var mbe *http.MaxBytesError
		if errors.As(readErr, &mbe) {
			status = http.StatusRequestEntityTooLarge
		}
	}
	s.log.Info().
		Str("actor", p.actor()).
		Str("action", "key.import").
		Str("route", r.Pattern).
		Int("status", status).
		Int("imported", res.Imported).
		Int("skipped", res.Skipped).
		Int("errors", len(res.Errors)+res.ErrorsOmitted).
		Msg("admin change")
	if readErr != nil {
		return &requestError{status: status, msg: fmt.Sprintf("reading request body after line %d: %v (imported %d, skipped %d before the failure)", lr.Line(), readErr, res.Imported, res.Skipped)}
	}
	jsonresp.Write(w, status, res)
	return nil
}
