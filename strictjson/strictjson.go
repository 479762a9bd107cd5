package strictjson

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/extauthz/extauthz/clip"
)

// options make the decoding strict. Most are v2's defaults already; they
// are spelt out because they are the contract.
var options = json.JoinOptions(
	json.RejectUnknownMembers(true),
	json.MatchCaseInsensitiveNames(false),
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
)

// Error is a problem with the JSON itself; its message is for the client.
type Error struct{ msg string }

func (e *Error) Error() string { return e.msg }

func problem(format string, args ...any) *Error {
	return &Error{fmt.Sprintf(format, args...)}
}

// Unmarshal decodes data, which must be exactly one JSON object, into dst
// (a pointer to a struct). Every error is an *Error; what names data in
// its message ("request body", "line").
func Unmarshal(data []byte, dst any, what string) error {
	if !utf8.Valid(data) {
		return problem("%s is not valid UTF-8", what)
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return problem("%s must be a JSON object", what)
	}
	return Decode(bytes.NewReader(data), dst, what)
}

// Decode reads exactly one JSON value from r into dst and then the end of
// r. Problems with the JSON are *Error. An error reading r (an
// *http.MaxBytesError, say) is returned wrapped, for errors.As, and so is
// nothing else.
//
// Unlike Unmarshal it takes a top-level null (leaving dst as it is) and
// reads r as it decodes, so that a body cut off by a size limit is
// refused by what comes first: bad JSON before the limit or the limit.
func Decode(r io.Reader, dst any, what string) error {
	dec := jsontext.NewDecoder(r, options)
	if err := json.UnmarshalDecode(dec, dst, options); err != nil {
		return describe(err, what)
	}
	_, err := dec.ReadToken()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case isReadError(err):
		return err
	}
	return problem("unexpected data after the JSON object")
}

// isReadError reports whether err came from the reader rather than from
// the JSON.
func isReadError(err error) bool {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	return err != nil && !errors.As(err, &syn) && !errors.As(err, &sem)
}

// describe turns a decoding error into an *Error naming what is wrong.
func describe(err error, what string) error {
	var syn *jsontext.SyntacticError
	var sem *json.SemanticError
	switch {
	case errors.As(err, &syn) && errors.Is(syn.Err, jsontext.ErrDuplicateName):
		return memberProblem("duplicate field %q", syn.JSONPointer)
	case errors.As(err, &sem) && errors.Is(sem.Err, json.ErrUnknownName):
		return memberProblem("unknown field %q", sem.JSONPointer)
	case err == io.EOF, errors.As(err, &syn) && errors.Is(syn.Err, io.ErrUnexpectedEOF):
		// A plain io.EOF is empty input; a read error wrapping it is not.
		return problem("malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		// The decoder's offset: the error is at or after this byte.
		return problem("malformed JSON at byte %d", syn.ByteOffset)
	case errors.As(err, &sem):
		if sem.JSONPointer == "" {
			return problem("%s must be a JSON object", what)
		}
		return problem("%s: must be %s, got %s", fieldPath(sem.JSONPointer), typeName(sem.GoType), kindName(sem.JSONKind))
	}
	return err // reading failed
}

// memberProblem words a problem with the member p points to: its name,
// after the path of the object it is in unless that is the top level.
func memberProblem(format string, p jsontext.Pointer) *Error {
	name := clip.String(p.LastToken(), 64)
	if parent := p.Parent(); parent != "" {
		return problem("%s: "+format, fieldPath(parent), name)
	}
	return problem(format, name)
}

// fieldPath renders a JSON Pointer as a field path: "usage[0].count".
func fieldPath(p jsontext.Pointer) string {
	var b strings.Builder
	for tok := range p.Tokens() {
		switch {
		case b.Len() > 0 && isIndex(tok):
			b.WriteString("[" + tok + "]")
		case b.Len() > 0:
			b.WriteString("." + clip.String(tok, 64))
		default:
			b.WriteString(clip.String(tok, 64))
		}
	}
	return b.String()
}

func isIndex(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return false
		}
	}
	return true
}

var timeType = reflect.TypeFor[time.Time]()

// typeName names the JSON a Go type takes.
func typeName(t reflect.Type) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return "a different type"
	}
	if t == timeType {
		return "an RFC 3339 time"
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
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	}
	return "a different type"
}

// kindName names a JSON kind as encoding/json's UnmarshalTypeError.Value
// does.
func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 't', 'f':
		return "bool"
	case '"':
		return "string"
	case '0':
		return "number"
	case '{':
		return "object"
	case '[':
		return "array"
	}
	return "a different value"
}
