package ndjson

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// ErrTooLong reports a line longer than the Reader's limit.
var ErrTooLong = errors.New("ndjson: line too long")

// bufferSize is the read buffer. A line longer than it is gathered in a
// second buffer, up to the limit.
const bufferSize = 64 << 10

// Reader reads the lines of a stream, each at most max bytes long, its
// newline included.
type Reader struct {
	br   *bufio.Reader
	max  int
	buf  []byte
	n    int
	skip bool // the rest of a too-long line is still to be discarded
}

// NewReader returns a Reader of r whose lines may be at most max bytes
// long, newline included.
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, bufferSize), max: max}
}

// Next returns the next line with its newline; the slice is valid until
// the following call. A last line without a newline is returned as it is
// (a caller to whom that means a cut stream checks for the newline). At
// the end of the stream Next returns io.EOF.
//
// A line longer than the limit is reported as ErrTooLong as soon as the
// limit is passed, without reading the rest of it; a following call first
// discards that rest, so the caller may go on with the next line or stop.
// Any other error is the underlying reader's.
func (r *Reader) Next() ([]byte, error) {
	if r.skip {
		if err := r.discardLine(); err != nil {
			return nil, err
		}
	}
	r.buf = r.buf[:0]
	for {
		b, err := r.br.ReadSlice('\n')
		n := len(r.buf) + len(b)
		switch {
		case err == nil || (errors.Is(err, io.EOF) && n > 0):
			r.n++
			if n > r.max {
				return nil, ErrTooLong
			}
			if len(r.buf) == 0 {
				return b, nil
			}
			r.buf = append(r.buf, b...)
			return r.buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			if n > r.max {
				r.n++
				r.skip = true
				return nil, ErrTooLong
			}
			r.buf = append(r.buf, b...)
		default: // io.EOF at a line's start, or a read error
			return nil, err
		}
	}
}

// NextWhole is Next for a stream whose every line ends in a newline, such
// as a replication stream or a log: a last line without one means the
// stream was cut, and is reported as io.ErrUnexpectedEOF.
func (r *Reader) NextWhole() ([]byte, error) {
	b, err := r.Next()
	if err == nil && b[len(b)-1] != '\n' {
		return nil, io.ErrUnexpectedEOF
	}
	return b, err
}

// discardLine reads up to and including the next newline.
func (r *Reader) discardLine() error {
	for {
		_, err := r.br.ReadSlice('\n')
		if !errors.Is(err, bufio.ErrBufferFull) {
			r.skip = false
			return err
		}
	}
}

// Line is the number of the line Next last returned or reported too long,
// counting from 1.
func (r *Reader) Line() int { return r.n }

// Buffered reports whether a complete further line has already been
// received, so that Next will not block for it.
func (r *Reader) Buffered() bool {
	n := r.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}
