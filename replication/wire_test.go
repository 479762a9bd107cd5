package replication

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
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

func TestLineReader(t *testing.T) {
	long := strings.Repeat("a", 200<<10) + "\n" // longer than the bufio buffer
	cases := []struct {
		name  string
		in    string
		max   int
		lines []string
		err   error
	}{
		{"lines", "a\nbb\n", 10, []string{"a\n", "bb\n"}, io.EOF},
		{"empty", "", 10, nil, io.EOF},
		{"crlf kept", "a\r\n", 10, []string{"a\r\n"}, io.EOF},
		{"cut line", "a\nbb", 10, []string{"a\n"}, io.ErrUnexpectedEOF},
		{"too long", "a\n0123456789ab\n", 10, []string{"a\n"}, errLineTooLong},
		{"exactly max", "012345678\n", 10, []string{"012345678\n"}, io.EOF},
		{"spanning buffers", long + "b\n", MaxLineSize, []string{long, "b\n"}, io.EOF},
		{"too long across buffers", long, 100 << 10, nil, errLineTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range map[string]io.Reader{"whole": strings.NewReader(tc.in), "byte at a time": iotest.OneByteReader(strings.NewReader(tc.in))} {
				lr := newLineReader(rd, tc.max)
				var got []string
				var err error
				for {
					var b []byte
					if b, err = lr.next(); err != nil {
						break
					}
					got = append(got, string(b))
				}
				if !errors.Is(err, tc.err) {
					t.Errorf("end error %v; want %v", err, tc.err)
				}
				if strings.Join(got, "|") != strings.Join(tc.lines, "|") {
					t.Errorf("lines %q; want %q", got, tc.lines)
				}
			}
		})
	}
}

func TestLineBuffered(t *testing.T) {
	lr := newLineReader(strings.NewReader("a\nb\nc"), 10)
	if _, err := lr.next(); err != nil {
		t.Fatal(err)
	}
	if !lr.lineBuffered() {
		t.Error("second line is buffered but lineBuffered() = false")
	}
	lr.next()
	if lr.lineBuffered() {
		t.Error("only a partial line is left but lineBuffered() = true")
	}
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
