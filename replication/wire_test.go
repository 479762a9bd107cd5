package replication

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

const testHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// snapshotLineCases seed FuzzSnapshotLine; ok tells whether the snapshot
// decoder accepts the line.
var snapshotLineCases = []struct {
	name string
	line string
	ok   bool
}{
	{"header", `{"type":"header","revision":42,"store_id":"8c1e","schema":1}`, true},
	{"header at zero", `{"type":"header","revision":0,"store_id":"8c1e","schema":1}`, true},
	{"header without store", `{"type":"header","revision":4,"schema":1}`, false},
	{"key", `{"type":"key","key":{"id":"k1","hash":"` + testHash + `","prefix":"nex_abcd","scopes":["read"],"created_at":"2030-01-01T00:00:00Z","expires_at":"2031-01-01T00:00:00+01:00"}}`, true},
	{"key with name dropped", `{"type":"key","key":{"id":"k1","hash":"` + testHash + `","prefix":"nex_abcd","name":"n","scopes":null,"created_at":"2030-01-01T00:00:00Z"}}`, true},
	{"key without hash", `{"type":"key","key":{"id":"k1","prefix":"nex_abcd"}}`, false},
	{"key with short hash", `{"type":"key","key":{"id":"k1","hash":"abcd","prefix":"nex_abcd"}}`, false},
	{"key without id", `{"type":"key","key":{"hash":"` + testHash + `"}}`, false},
	{"key line without key", `{"type":"key"}`, false},
	{"key line with user", `{"type":"key","key":{"id":"k1","hash":"` + testHash + `"},"user":{"id":"u"}}`, false},
	{"key with revision", `{"type":"key","revision":3,"key":{"id":"k1","hash":"` + testHash + `"}}`, false},
	{"user", `{"type":"user","user":{"id":"u1","active":false,"updated_at":"2030-01-01T00:00:00Z"}}`, true},
	{"user without id", `{"type":"user","user":{"active":false}}`, false},
	{"end", `{"type":"end","count":3,"sha256":"` + testHash + `"}`, true},
	{"end with short hash", `{"type":"end","count":3,"sha256":"abc"}`, false},
	{"end with non-hex hash", `{"type":"end","count":3,"sha256":"` + strings.Repeat("zz", 32) + `"}`, false},
	{"heartbeat", `{"type":"heartbeat","revision":1}`, false},
	{"unknown type", `{"type":"project"}`, false},
	{"not json", `hello`, false},
	{"trailing garbage", `{"type":"user","user":{"id":"u1"}} x`, false},
	{"array", `[]`, false},
	{"empty", ``, false},
}

// watchLineCases seed FuzzWatchLine.
var watchLineCases = []struct {
	name string
	line string
	ok   bool
}{
	{"heartbeat", `{"type":"heartbeat","revision":7}`, true},
	{"heartbeat at zero", `{"type":"heartbeat","revision":0}`, true},
	{"key", `{"type":"key","revision":8,"key":{"id":"k1","hash":"` + testHash + `","prefix":"nex_abcd","scopes":["a"],"revoked_at":"2030-01-01T00:00:00Z"}}`, true},
	{"user", `{"type":"user","revision":9,"user":{"id":"u1","active":true}}`, true},
	{"key without revision", `{"type":"key","key":{"id":"k1","hash":"` + testHash + `"}}`, false},
	{"user without revision", `{"type":"user","user":{"id":"u1"}}`, false},
	{"negative revision", `{"type":"heartbeat","revision":-1}`, false},
	{"header", `{"type":"header","revision":1,"store_id":"s","schema":1}`, false},
	{"end", `{"type":"end","count":0,"sha256":"` + testHash + `"}`, false},
	{"bad hash", `{"type":"key","revision":8,"key":{"id":"k1","hash":"` + strings.Repeat("g", 64) + `"}}`, false},
	{"bad time", `{"type":"key","revision":8,"key":{"id":"k1","hash":"` + testHash + `","created_at":"yesterday"}}`, false},
	{"not json", `{"type":`, false},
}

func TestDecodeSnapshotLine(t *testing.T) {
	for _, tc := range snapshotLineCases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := decodeSnapshotLine([]byte(tc.line + "\n"))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeSnapshotLine(%q) error = %v; want ok=%v", tc.line, err, tc.ok)
			}
			if err != nil && !errors.Is(err, errBadLine) {
				t.Errorf("error %v does not wrap errBadLine", err)
			}
			if err == nil && l.Key != nil && l.Key.Name != "" {
				t.Errorf("decoded key keeps its name %q", l.Key.Name)
			}
		})
	}
}

func TestDecodeWatchLine(t *testing.T) {
	for _, tc := range watchLineCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeWatchLine([]byte(tc.line + "\n"))
			if (err == nil) != tc.ok {
				t.Fatalf("decodeWatchLine(%q) error = %v; want ok=%v", tc.line, err, tc.ok)
			}
		})
	}
}

// encodeWire re-encodes a decoded line the way a Server writes it.
func encodeWire(l wireLine) ([]byte, error) {
	switch l.Type {
	case typeHeader:
		return appendLine(nil, headerLine{Type: l.Type, Revision: l.Revision, StoreID: l.StoreID, Schema: l.Schema})
	case typeEnd:
		return appendLine(nil, endLine{Type: l.Type, Count: l.Count, SHA256: l.SHA256})
	case typeHeartbeat:
		return appendLine(nil, heartbeatLine{Type: l.Type, Revision: l.Revision})
	default:
		rl, err := recordOf(l.change(), l.Revision != 0)
		if err != nil {
			return nil, err
		}
		return appendLine(nil, rl)
	}
}

// checkStable asserts that a decoded line re-encodes to bytes that decode
// and re-encode to the same bytes again, and carries no key name.
func checkStable(t *testing.T, decode func([]byte) (wireLine, error), in []byte) {
	checkSameAsV1(t, in)
	l, err := decode(in)
	if err != nil {
		return
	}
	if l.Key != nil && (l.Key.Name != "" || l.Key.Metadata != nil || l.Key.CreatedBy != "") {
		t.Fatalf("decoded key keeps non-enforcement fields: %+v", l.Key)
	}
	enc, err := encodeWire(l)
	if err != nil {
		// e.g. a time outside what encoding/json can write; the decoder
		// may accept what the encoder never produces.
		return
	}
	l2, err := decode(enc)
	if err != nil {
		t.Fatalf("re-encoded line %q does not decode: %v", enc, err)
	}
	enc2, err := encodeWire(l2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("unstable encoding:\n%q\n%q (%v)", enc, enc2, err)
	}
}

// checkSameAsV1 asserts that whatever the JSON v2 decoder of decodeLine
// accepts, encoding/json decodes to the same line: v2 may be stricter,
// never different. The one allowed difference is a name that matches a
// field only without regard to case, which encoding/json takes and v2
// ignores as unknown.
func checkSameAsV1(t *testing.T, in []byte) {
	t.Helper()
	got, err := decodeLine(in)
	if err != nil {
		return
	}
	var tree any
	if err := json.Unmarshal(in, &tree); err != nil {
		t.Fatalf("decodeLine accepts %q, encoding/json does not: %v", in, err)
	}
	if hasFoldedName(tree) {
		return
	}
	var want wireLine
	if err := json.Unmarshal(in, &want); err != nil {
		t.Fatalf("decodeLine accepts %q, encoding/json does not: %v", in, err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Fatalf("decodeLine(%q) =\n%s\nencoding/json gives\n%s", in, g, w)
	}
}

// wireNames are the JSON names of every field a line can carry.
var wireNames = func() map[string]bool {
	names := map[string]bool{}
	for _, v := range []any{wireLine{}, keystore.Key{}, keystore.User{}, keystore.RateLimit{}} {
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
			names[name] = true
		}
	}
	return names
}()

// hasFoldedName reports whether a decoded JSON tree has an object name
// that is not a field's name but equals one without regard to case.
func hasFoldedName(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for name, child := range v {
			if !wireNames[name] {
				for known := range wireNames {
					if strings.EqualFold(name, known) {
						return true
					}
				}
			}
			if hasFoldedName(child) {
				return true
			}
		}
	case []any:
		for _, child := range v {
			if hasFoldedName(child) {
				return true
			}
		}
	}
	return false
}

// TestEveryFieldCrossesTheWire: a key with every enforcement field set,
// encoded as the server does, decodes to exactly its enforcement view.
func TestEveryFieldCrossesTheWire(t *testing.T) {
	at := func(s string) *time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return &v
	}
	h, _ := keystore.ParseHash(testHash)
	k := &keystore.Key{
		ID: "k1", Hash: h, Prefix: "nxg_abcd", Name: "not sent", Scopes: []string{"read", "write"},
		ProjectID: "p1", UserID: "u1", CreatedAt: *at("2030-01-01T00:00:00.123456789Z"),
		ExpiresAt: at("2031-01-01T00:00:00+01:00"), RevokedAt: at("2030-06-01T12:00:00Z"),
		LastUsedAt: at("2030-02-01T00:00:00Z"), UseCount: 9, CreatedBy: "operator", Metadata: map[string]string{"a": "b"},
		RateLimit: &keystore.RateLimit{Limit: 5, Duration: 90 * time.Second},
	}
	for _, withRev := range []bool{false, true} {
		rl, err := recordOf(keystore.Change{Revision: 7, Key: k}, withRev)
		if err != nil {
			t.Fatal(err)
		}
		line, err := appendLine(nil, rl)
		if err != nil {
			t.Fatal(err)
		}
		decode := decodeSnapshotLine
		if withRev {
			decode = decodeWatchLine
		}
		l, err := decode(line)
		if err != nil {
			t.Fatalf("decode %s: %v", line, err)
		}
		want, _ := json.Marshal(k.Enforcement())
		got, _ := json.Marshal(l.Key)
		if !bytes.Equal(got, want) {
			t.Errorf("key crossed the wire as\n%s\nwant\n%s", got, want)
		}
		checkSameAsV1(t, line)
	}
}

func FuzzSnapshotLine(f *testing.F) {
	for _, tc := range snapshotLineCases {
		f.Add([]byte(tc.line + "\n"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkStable(t, decodeSnapshotLine, b)
	})
}

func FuzzWatchLine(f *testing.F) {
	for _, tc := range watchLineCases {
		f.Add([]byte(tc.line + "\n"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkStable(t, decodeWatchLine, b)
	})
}

func TestSnapshotLinesHaveNoRevision(t *testing.T) {
	// The header and trailer always carry their numbers, even zero.
	b, _ := json.Marshal(headerLine{Type: typeHeader, StoreID: "s", Schema: 1})
	if !bytes.Contains(b, []byte(`"revision":0`)) {
		t.Errorf("header %s lacks revision 0", b)
	}
	b, _ = json.Marshal(heartbeatLine{Type: typeHeartbeat})
	if !bytes.Contains(b, []byte(`"revision":0`)) {
		t.Errorf("heartbeat %s lacks revision 0", b)
	}
}

// TestStoredRecordLineIsTheEncodedLine: a snapshot line built from stored
// bytes is byte for byte the line recordOf and appendLine produce.
func TestStoredRecordLineIsTheEncodedLine(t *testing.T) {
	h, _ := keystore.ParseHash(testHash)
	exp := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	k := &keystore.Key{ID: "k1", Hash: h, Prefix: "nex_abcd", Scopes: []string{"a"}, ProjectID: "p", UserID: "u", CreatedAt: exp.Add(-time.Hour), ExpiresAt: &exp}
	u := &keystore.User{ID: "u", Active: true, UpdatedAt: exp}
	for _, c := range []keystore.Change{{Key: k}, {User: u}} {
		rl, err := recordOf(c, false)
		if err != nil {
			t.Fatal(err)
		}
		want, err := appendLine(nil, rl)
		if err != nil {
			t.Fatal(err)
		}
		var stored []byte
		if c.Key != nil {
			stored, _ = json.Marshal(c.Key.Enforcement())
		} else {
			stored, _ = json.Marshal(c.User)
		}
		if got := appendStoredRecord(nil, c.Key != nil, stored); !bytes.Equal(got, want) {
			t.Errorf("stored line\n%s\nwant\n%s", got, want)
		}
	}
}
