package replication

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/keystore"
)

// chunkReader hands out the stream a fixed number of lines per Read, the
// way a watch delivers changes that committed together.
type chunkReader struct {
	chunks [][]byte
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// BenchmarkApplyWatch measures a follower putting watch changes in force
// (decode, revision check, write-ahead log append, Stage), one op per
// change, with changes arriving in groups of the given size. The commits
// into the real replica file run beside it, every SyncInterval of the test
// follower (20 ms).
func BenchmarkApplyWatch(b *testing.B) {
	// A pool of distinct key records; the stream cycles through them, so
	// the replica holds up to 1,000 keys, each changed repeatedly.
	const pool = 1000
	keys := make([][]byte, pool)
	for i := range keys {
		raw := "nex_" + fmt.Sprintf("%032d", i)
		k := &keystore.Key{ID: uuid.NewString(), Hash: keystore.HashKey(raw), Prefix: keystore.DisplayPrefix(raw), Scopes: []string{"signals", "agents"}, UserID: "u" + strconv.Itoa(i%10)}
		keys[i], _ = json.Marshal(k)
	}
	for _, group := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("group=%d", group), func(b *testing.B) {
			f, _ := newFollower(b, b.TempDir(), "http://127.0.0.1:1")
			start := f.Revision()
			var chunks [][]byte
			var cur []byte
			for i := 0; i < b.N; i++ {
				cur = append(cur, `{"type":"key","revision":`...)
				cur = strconv.AppendUint(cur, start+uint64(i)+1, 10)
				cur = append(cur, `,"key":`...)
				cur = append(cur, keys[i%pool]...)
				cur = append(cur, "}\n"...)
				if (i+1)%group == 0 || i == b.N-1 {
					chunks = append(chunks, cur)
					cur = nil
				}
			}
			total := 0
			for _, c := range chunks {
				total += len(c)
			}
			b.SetBytes(int64(total / max(b.N, 1)))
			b.ReportAllocs()
			b.ResetTimer()
			err := f.consumeWatch(f.rep, &chunkReader{chunks: chunks}, func() {}, func() {})
			b.StopTimer()
			if got, want := f.Revision(), start+uint64(b.N); got != want {
				b.Fatalf("replica at %d after the stream; want %d (%v)", got, want, err)
			}
			if !bytes.Contains([]byte(err.Error()), []byte("ended")) {
				b.Fatalf("stream end: %v", err)
			}
		})
	}
}
