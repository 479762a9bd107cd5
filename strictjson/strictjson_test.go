package strictjson

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type request struct {
	Name      *string  `json:"name"`
	Scopes    []string `json:"scopes"`
	ExpiresAt *string  `json:"expiresAt"`
	Active    *bool    `json:"active"`
}

type usage struct {
	KeyID      string    `json:"key_id"`
	LastUsedAt time.Time `json:"last_used_at"`
	Count      uint64    `json:"count"`
}

type report struct {
	Node  string  `json:"node"`
	Usage []usage `json:"usage"`
}

// TestUnmarshalMessages pins the exact message of each refusal: these are
// the admin API's 400 bodies. The first group is byte for byte what the
// admin's hand-written decoder said before this package; the second
// documents where the messages changed with encoding/json/v2.
func TestUnmarshalMessages(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"name":"x","colour":"red"}`, `unknown field "colour"`},
		{`{"Name":"x"}`, `unknown field "Name"`},
		{`{"NAME":"x"}`, `unknown field "NAME"`},
		{`{"expires_at":"x"}`, `unknown field "expires_at"`},
		{`{"` + strings.Repeat("k", 100) + `":1}`, `unknown field "` + strings.Repeat("k", 64) + `…"`},
		{`{"name":"x","name":"y"}`, `duplicate field "name"`},
		{`{"name":5}`, `name: must be a string, got number`},
		{`{"name":true}`, `name: must be a string, got bool`},
		{`{"name":{}}`, `name: must be a string, got object`},
		{`{"scopes":"s"}`, `scopes: must be an array of strings, got string`},
		{`{"scopes":{"a":true}}`, `scopes: must be an array of strings, got object`},
		{`{"active":"no"}`, `active: must be a boolean, got string`},
		{`{"expiresAt":1735689600}`, `expiresAt: must be a string, got number`},
		{`[{"name":"x"}]`, `request body must be a JSON object`},
		{`null`, `request body must be a JSON object`},
		{`"x"`, `request body must be a JSON object`},
		{``, `request body must be a JSON object`},
		{"{\"name\":\"\xff\"}", `request body is not valid UTF-8`},
		{`{"name":"x"`, `malformed JSON: unexpected end of input`},
		{`{"name":"x","scopes":[`, `malformed JSON: unexpected end of input`},
		{`{"name":"x",,}`, `malformed JSON at byte 12`},
		{`{"name":"x"} {"name":"y"}`, `unexpected data after the JSON object`},
		{`{"name":"x"}garbage`, `unexpected data after the JSON object`},
		{`{"name":"x"}}`, `unexpected data after the JSON object`},

		// Changed: an array element is named itself, with its own type.
		{`{"scopes":[1]}`, `scopes[0]: must be a string, got number`},
		{`{"scopes":["a",true]}`, `scopes[1]: must be a string, got bool`},
		// Changed: with several problems, the first in the document is
		// named (the old decoder checked every name before any type).
		{`{"name":5,"colour":1}`, `name: must be a string, got number`},
		{`{"colour":1,"name":5}`, `unknown field "colour"`},
		// Changed: the offset is the v2 decoder's (the error is at or
		// after that byte), which is not always encoding/json's.
		{`{"name":"x",}`, `malformed JSON at byte 11`},
		// Changed: an escaped lone surrogate is not a character; it was
		// taken as U+FFFD.
		{`{"name":"\ud800"}`, `malformed JSON at byte 9`},
	} {
		var dst request
		err := Unmarshal([]byte(tc.in), &dst, "request body")
		var je *Error
		if !errors.As(err, &je) {
			t.Errorf("Unmarshal(%.60q) = %v (%T); want an *Error", tc.in, err, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("Unmarshal(%.60q) = %q; want %q", tc.in, err, tc.want)
		}
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	var dst request
	in := " \n{\"name\":\"x\",\"scopes\":[\"a\",\"b\"],\"active\":false,\"expiresAt\":null}\r\n\n"
	if err := Unmarshal([]byte(in), &dst, "request body"); err != nil {
		t.Fatal(err)
	}
	if *dst.Name != "x" || len(dst.Scopes) != 2 || dst.Active == nil || *dst.Active || dst.ExpiresAt != nil {
		t.Errorf("decoded %+v", dst)
	}
}

// TestDecodeNested: members of nested objects are held to the same rules,
// and named by their path.
func TestDecodeNested(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"node":"n","usage":[{"key_id":"a","count":1,"raw":"x"}]}`, `usage[0]: unknown field "raw"`},
		{`{"node":"n","usage":[{"key_id":"a"},{"KEY_ID":"b"}]}`, `usage[1]: unknown field "KEY_ID"`},
		{`{"node":"n","usage":[{"key_id":"a","key_id":"b"}]}`, `usage[0]: duplicate field "key_id"`},
		{`{"node":"n","usage":[{"key_id":"a","count":1.5}]}`, `usage[0].count: must be a non-negative integer, got number`},
		{`{"node":"n","usage":[{"key_id":"a","count":-1}]}`, `usage[0].count: must be a non-negative integer, got number`},
		{`{"node":"n","usage":[{"key_id":"a","last_used_at":"2030-01-01"}]}`, `usage[0].last_used_at: must be an RFC 3339 time, got string`},
		{`{"NODE":"n"}`, `unknown field "NODE"`},
		{`{"node":"n","usage":{}}`, `usage: must be an array, got object`},
		{`nope`, `malformed JSON at byte 1`},
		{``, `malformed JSON: unexpected end of input`},
		{`[1]`, `body must be a JSON object`},
		{`{"node":"n","usage":[]}{}`, `unexpected data after the JSON object`},
	} {
		var rep report
		err := Decode(strings.NewReader(tc.in), &rep, "body")
		var je *Error
		if !errors.As(err, &je) || err.Error() != tc.want {
			t.Errorf("Decode(%.60q) = %v (%T); want *Error %q", tc.in, err, err, tc.want)
		}
	}
	var rep report
	in := `{"node":"n","usage":[{"key_id":"a","last_used_at":"2030-01-01T00:00:00.5Z","count":3}]}`
	if err := Decode(strings.NewReader(in), &rep, "body"); err != nil {
		t.Fatal(err)
	}
	if rep.Node != "n" || len(rep.Usage) != 1 || rep.Usage[0].Count != 3 || !rep.Usage[0].LastUsedAt.Equal(time.Date(2030, 1, 1, 0, 0, 0, 5e8, time.UTC)) {
		t.Errorf("decoded %+v", rep)
	}
	// Decode, unlike Unmarshal, takes a top-level null.
	if err := Decode(strings.NewReader("null"), &rep, "body"); err != nil {
		t.Errorf("Decode(null) = %v", err)
	}
}

// TestDecodeReadErrors: a failure of the reader is not the client's JSON:
// it is returned as itself, so that a size limit can be told (413) from
// bad JSON (400), whichever comes first in the body.
func TestDecodeReadErrors(t *testing.T) {
	const limit = 1 << 10
	for _, tc := range []struct {
		name     string
		body     string
		tooLarge bool
	}{
		{"value over the limit", `{"node":"` + strings.Repeat("n", limit) + `","usage":[]}`, true},
		{"padding after the value over the limit", `{"node":"n","usage":[]}` + strings.Repeat(" ", 2*limit), true},
		{"bad JSON before the limit", "nope" + strings.Repeat(" ", 2*limit), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			body := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(tc.body)), limit)
			var rep report
			err := Decode(body, &rep, "body")
			var mbe *http.MaxBytesError
			var je *Error
			switch {
			case tc.tooLarge && !errors.As(err, &mbe):
				t.Errorf("Decode = %v (%T); want the *http.MaxBytesError", err, err)
			case !tc.tooLarge && !errors.As(err, &je):
				t.Errorf("Decode = %v (%T); want an *Error", err, err)
			}
		})
	}
	broken := errors.New("connection reset")
	err := Decode(io.MultiReader(strings.NewReader(`{"node":`), iotestErr{broken}), &report{}, "body")
	if !errors.Is(err, broken) {
		t.Errorf("Decode over a failing reader = %v; want the read error", err)
	}
	var je *Error
	if errors.As(err, &je) {
		t.Errorf("a read error was reported as the client's JSON: %v", err)
	}
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

// FuzzUnmarshal: whatever the input, the answer is nil or an *Error with
// a message, and an accepted input is one JSON object.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"name":"x","scopes":["a"]}`, `{"name":5}`, `[1]`, `{"a":1}`, `{"name":"x"} x`, ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var dst request
		err := Unmarshal(data, &dst, "request body")
		if err == nil {
			if !bytes.HasPrefix(bytes.TrimLeft(data, " \t\r\n"), []byte("{")) {
				t.Fatalf("accepted %q", data)
			}
			return
		}
		var je *Error
		if !errors.As(err, &je) || err.Error() == "" {
			t.Fatalf("Unmarshal(%q) = %v (%T)", data, err, err)
		}
	})
}
