package ndjson

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type result struct {
	line string
	n    int
	err  error
}

func readAll(r *Reader) []result {
	var out []result
	for {
		b, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		out = append(out, result{string(b), r.Line(), err})
		if err != nil && !errors.Is(err, ErrTooLong) {
			return out
		}
	}
}

func TestNext(t *testing.T) {
	long := strings.Repeat("a", 200<<10) + "\n" // longer than the read buffer
	cases := []struct {
		name string
		in   string
		max  int
		want []result
	}{
		{"lines", "a\nbb\n", 10, []result{{"a\n", 1, nil}, {"bb\n", 2, nil}}},
		{"empty", "", 10, nil},
		{"blank lines", "\n\n", 10, []result{{"\n", 1, nil}, {"\n", 2, nil}}},
		{"crlf kept", "a\r\n", 10, []result{{"a\r\n", 1, nil}}},
		{"last line without newline", "a\nbb", 10, []result{{"a\n", 1, nil}, {"bb", 2, nil}}},
		{"exactly max", "012345678\n", 10, []result{{"012345678\n", 1, nil}}},
		{"one over max", "0123456789\n", 10, []result{{"", 1, ErrTooLong}}},
		{"too long, then more", "a\n0123456789ab\nc\n", 10, []result{{"a\n", 1, nil}, {"", 2, ErrTooLong}, {"c\n", 3, nil}}},
		{"too long last line", "a\n0123456789ab", 10, []result{{"a\n", 1, nil}, {"", 2, ErrTooLong}}},
		{"spanning buffers", long + "b\n", 1 << 20, []result{{long, 1, nil}, {"b\n", 2, nil}}},
		{"too long across buffers, then more", long + "b\n", 100 << 10, []result{{"", 1, ErrTooLong}, {"b\n", 2, nil}}},
		{"too long across buffers at the end", long[:len(long)-1], 100 << 10, []result{{"", 1, ErrTooLong}}},
	}
	for _, tc := range cases {
		for name, rd := range map[string]func() io.Reader{
			"whole":          func() io.Reader { return strings.NewReader(tc.in) },
			"byte at a time": func() io.Reader { return iotest.OneByteReader(strings.NewReader(tc.in)) },
		} {
			t.Run(tc.name+"/"+name, func(t *testing.T) {
				got := readAll(NewReader(rd(), tc.max))
				if fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Errorf("got %.200q\nwant %.200q", fmt.Sprint(got), fmt.Sprint(tc.want))
				}
			})
		}
	}
}

// TestTooLongStopsReading: ErrTooLong comes as soon as the limit is
// passed, before the rest of the line is read, so a caller that stops
// there never waits for (or reads) the end of an endless line.
func TestTooLongStopsReading(t *testing.T) {
	endless := io.MultiReader(strings.NewReader(strings.Repeat("x", 300<<10)), errReader{})
	r := NewReader(endless, 100<<10)
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Next = %v; want ErrTooLong before the read error", err)
	}
	// Going on discards the rest and meets the read error.
	if _, err := r.Next(); !errors.Is(err, errBroken) {
		t.Fatalf("Next after ErrTooLong = %v; want the read error", err)
	}
}

var errBroken = errors.New("broken")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

func TestReadErrorIsReturned(t *testing.T) {
	r := NewReader(io.MultiReader(strings.NewReader("a\nb"), errReader{}), 10)
	if b, err := r.Next(); err != nil || string(b) != "a\n" {
		t.Fatalf("first line %q, %v", b, err)
	}
	if _, err := r.Next(); !errors.Is(err, errBroken) {
		t.Fatalf("Next = %v; want the read error", err)
	}
}

func TestBuffered(t *testing.T) {
	r := NewReader(strings.NewReader("a\nb\nc"), 10)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if !r.Buffered() {
		t.Error("second line is buffered but Buffered() = false")
	}
	r.Next()
	if r.Buffered() {
		t.Error("only a partial line is left but Buffered() = true")
	}
}

func FuzzNext(f *testing.F) {
	f.Add([]byte("a\nbb\r\n\n0123456789abcdef\nlast"), 8)
	f.Add([]byte(""), 1)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 1 || max > 1<<10 {
			return
		}
		r := NewReader(strings.NewReader(string(in)), max)
		var joined []byte
		lines := 0
		for {
			b, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			lines++
			if lines > len(in)+1 {
				t.Fatal("does not terminate")
			}
			if r.Line() != lines {
				t.Fatalf("Line() = %d after %d lines", r.Line(), lines)
			}
			if errors.Is(err, ErrTooLong) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > max {
				t.Fatalf("line %q over the %d-byte limit", b, max)
			}
			joined = append(joined, b...)
		}
		// Without any too-long line, the lines are the input.
		if noLongLine(in, max) && string(joined) != string(in) {
			t.Fatalf("lines join to %q; want %q", joined, in)
		}
	})
}

func noLongLine(in []byte, max int) bool {
	for _, l := range strings.SplitAfter(string(in), "\n") {
		if len(l) > max {
			return false
		}
	}
	return true
}
func TestNextWhole(t *testing.T) {
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
		{"too long", "a\n0123456789ab\n", 10, []string{"a\n"}, ErrTooLong},
		{"exactly max", "012345678\n", 10, []string{"012345678\n"}, io.EOF},
		{"spanning buffers", long + "b\n", 1 << 20, []string{long, "b\n"}, io.EOF},
		{"too long across buffers", long, 100 << 10, nil, ErrTooLong},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range map[string]io.Reader{"whole": strings.NewReader(tc.in), "byte at a time": iotest.OneByteReader(strings.NewReader(tc.in))} {
				lr := NewReader(rd, tc.max)
				var got []string
				var err error
				for {
					var b []byte
					if b, err = lr.NextWhole(); err != nil {
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
