package replication

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"

	"github.com/extauthz/extauthz/keystore"
)

// SchemaVersion is the snapshot format version a Server writes in the
// header line and the only one a Follower accepts.
const SchemaVersion = 1

// MaxLineSize bounds one NDJSON line of the snapshot and watch streams,
// newline included. A longer line makes the stream corrupt.
const MaxLineSize = 1 << 20

// Paths served by Server.
const (
	PathSnapshot = "/replication/v1/snapshot"
	PathWatch    = "/replication/v1/watch"
	PathUsage    = "/replication/v1/usage"
)

// Line types of the two streams.
const (
	typeHeader    = "header"
	typeKey       = "key"
	typeUser      = "user"
	typeEnd       = "end"
	typeHeartbeat = "heartbeat"
)

// Encoding structs, one per line shape, so that a zero revision or count is
// still written (the decoder's union struct cannot be used for that).
type (
	headerLine struct {
		Type     string `json:"type"`
		Revision uint64 `json:"revision"`
		StoreID  string `json:"store_id"`
		Schema   int    `json:"schema"`
	}
	// recordLine is a key or user record: without revision in a snapshot,
	// with one in the watch stream.
	recordLine struct {
		Type     string         `json:"type"`
		Revision uint64         `json:"revision,omitempty"`
		Key      *keystore.Key  `json:"key,omitempty"`
		User     *keystore.User `json:"user,omitempty"`
	}
	endLine struct {
		Type   string `json:"type"`
		Count  uint64 `json:"count"`
		SHA256 string `json:"sha256"`
	}
	heartbeatLine struct {
		Type     string `json:"type"`
		Revision uint64 `json:"revision"`
	}
)

// wireLine is the union of every line shape, used for decoding. Unknown
// JSON fields are ignored so that a newer admin may add fields without
// breaking older sidecars; a change of meaning bumps SchemaVersion.
type wireLine struct {
	Type     string         `json:"type"`
	Revision uint64         `json:"revision"`
	StoreID  string         `json:"store_id"`
	Schema   int            `json:"schema"`
	Key      *keystore.Key  `json:"key"`
	User     *keystore.User `json:"user"`
	Count    uint64         `json:"count"`
	SHA256   string         `json:"sha256"`
}

// change returns the record of a key or user line as a keystore.Change.
func (l *wireLine) change() keystore.Change {
	return keystore.Change{Revision: l.Revision, Key: l.Key, User: l.User}
}

// appendLine appends the JSON of v and a newline to dst.
func appendLine(dst []byte, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	dst = append(dst, b...)
	return append(dst, '\n'), nil
}

// recordOf turns a change into its line: keys are reduced to their
// enforcement view again here, so that neither a key name nor any other
// non-enforcement field can ever reach the wire.
func recordOf(c keystore.Change, withRevision bool) (recordLine, error) {
	rl := recordLine{}
	if withRevision {
		rl.Revision = c.Revision
	}
	switch {
	case c.Key != nil:
		rl.Type, rl.Key = typeKey, c.Key.Enforcement()
	case c.User != nil:
		rl.Type, rl.User = typeUser, c.User
	default:
		return rl, fmt.Errorf("replication: change %d carries no record", c.Revision)
	}
	return rl, nil
}

// appendStoredRecord appends the snapshot line of a record as the store
// holds it (keystore.Snapshot.ForEachRecord): the same bytes appendLine
// writes for recordOf's line, without decoding and re-encoding it.
func appendStoredRecord(dst []byte, isKey bool, v []byte) []byte {
	if isKey {
		dst = append(dst, `{"type":"key","key":`...)
	} else {
		dst = append(dst, `{"type":"user","user":`...)
	}
	dst = append(dst, v...)
	return append(dst, "}\n"...)
}

// errBadLine wraps every decoding failure of a stream line.
var errBadLine = errors.New("replication: bad stream line")

// lineOptions are the JSON v2 options of decodeLine.
var lineOptions = jsonv1.FormatDurationAsNano(true)

// decodeLine decodes one line of either stream. It uses the JSON v2
// decoder (github.com/go-json-experiment/json, the implementation behind
// Go's encoding/json/v2): loading a 1,000,000-key snapshot is mostly line
// decoding, and v2 does it in less than half the time and allocations of
// encoding/json. It reads what encoding/json reads (durations as integer
// nanoseconds, unknown names ignored; see wireLine) and is stricter only
// where a line from a real admin can never differ: names must match
// exactly (encoding/json also takes "TYPE" for "type"), and a repeated
// name or invalid UTF-8 is an error. The wire tests and fuzzers hold it
// to that.
func decodeLine(b []byte) (wireLine, error) {
	var l wireLine
	if err := jsonv2.Unmarshal(b, &l, lineOptions); err != nil {
		return l, fmt.Errorf("%w: %v", errBadLine, err)
	}
	return l, nil
}

// checkRecord validates a key or user line and strips a key to its
// enforcement view.
func checkRecord(l *wireLine) error {
	switch l.Type {
	case typeKey:
		if l.Key == nil || l.User != nil {
			return fmt.Errorf("%w: key line without exactly one key", errBadLine)
		}
		if l.Key.ID == "" || l.Key.Hash == (keystore.Hash{}) {
			return fmt.Errorf("%w: key record without id or hash", errBadLine)
		}
		l.Key = l.Key.Enforcement()
	case typeUser:
		if l.User == nil || l.Key != nil {
			return fmt.Errorf("%w: user line without exactly one user", errBadLine)
		}
		if l.User.ID == "" {
			return fmt.Errorf("%w: user record without id", errBadLine)
		}
	default:
		return fmt.Errorf("%w: unexpected type %q", errBadLine, l.Type)
	}
	return nil
}

// decodeSnapshotLine decodes one line of a snapshot body: a header, a key
// or user record (no revision), or the end trailer.
func decodeSnapshotLine(b []byte) (wireLine, error) {
	l, err := decodeLine(b)
	if err != nil {
		return l, err
	}
	switch l.Type {
	case typeHeader:
		if l.StoreID == "" {
			return l, fmt.Errorf("%w: header without store_id", errBadLine)
		}
	case typeEnd:
		if len(l.SHA256) != 64 {
			return l, fmt.Errorf("%w: trailer sha256 must be 64 hex characters", errBadLine)
		}
		if _, err := hex.DecodeString(l.SHA256); err != nil {
			return l, fmt.Errorf("%w: trailer sha256 is not hex", errBadLine)
		}
	default:
		if err := checkRecord(&l); err != nil {
			return l, err
		}
		if l.Revision != 0 {
			return l, fmt.Errorf("%w: snapshot record carries a revision", errBadLine)
		}
	}
	return l, nil
}

// decodeWatchLine decodes one line of a watch stream: a key or user change
// with its revision, or a heartbeat.
func decodeWatchLine(b []byte) (wireLine, error) {
	l, err := decodeLine(b)
	if err != nil {
		return l, err
	}
	if l.Type == typeHeartbeat {
		return l, nil
	}
	if err := checkRecord(&l); err != nil {
		return l, err
	}
	if l.Revision == 0 {
		return l, fmt.Errorf("%w: change without revision", errBadLine)
	}
	return l, nil
}
