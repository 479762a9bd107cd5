package jsonresp

import (
	"encoding/json"
	"net/http"
)

// internalError is the body written when a value cannot be encoded.
var internalError = []byte(`{"error":"internal error"}` + "\n")

// Write writes v as the JSON response body with status, and a newline.
// If v cannot be encoded, it answers 500 {"error":"internal error"}.
func Write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, internalError
	} else {
		b = append(b, '\n')
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorBody is every error response.
type errorBody struct {
	Error string `json:"error"`
}

// Error writes {"error": msg} with status.
func Error(w http.ResponseWriter, status int, msg string) {
	Write(w, status, errorBody{Error: msg})
}

// Unmatched answers a request for which an http.ServeMux found no
// pattern; h is the handler mux.Handler returned for it. It answers what
// the mux would (405 with the mux's Allow header for a known path with
// another method, 404 otherwise), with a JSON body.
func Unmatched(w http.ResponseWriter, r *http.Request, h http.Handler) {
	rec := &headerRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == http.StatusMethodNotAllowed {
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		Error(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	Error(w, http.StatusNotFound, "not found")
}

// headerRecorder captures a status and headers and discards the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (r *headerRecorder) Header() http.Header { return r.header }

func (r *headerRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *headerRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return len(b), nil
}
