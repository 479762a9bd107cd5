package keystore

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/clip"
)

// Sentinel errors. Test with errors.Is.
var (
	ErrNotFound      = errors.New("keystore: not found")
	ErrDuplicateHash = errors.New("keystore: a key with this hash already exists")
	ErrRevoked       = errors.New("keystore: key already revoked")
	ErrLocked        = errors.New("keystore: data file is in use by another process")
	ErrClosed        = errors.New("keystore: store closed")
	ErrCorrupt       = errors.New("keystore: record is corrupt")
	ErrSchema        = errors.New("keystore: unsupported schema version")
)

// HashSize is the length of a key hash in bytes.
const HashSize = sha256.Size

// Hash is the SHA-256 of a raw key. It is the only form of a key that is stored.
type Hash [HashSize]byte

// HashKey returns the SHA-256 of a raw key. A key of up to 128 bytes (every
// format the policy accepts) is copied to the stack rather than the heap.
func HashKey(raw string) Hash {
	var buf [128]byte
	if len(raw) <= len(buf) {
		return sha256.Sum256(append(buf[:0], raw...))
	}
	return sha256.Sum256([]byte(raw))
}

// ParseHash decodes a 64-character hex SHA-256.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*HashSize {
		return h, fmt.Errorf("hash must be %d hex characters, got %d", 2*HashSize, len(s))
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("hash is not hex: %w", err)
	}
	return h, nil
}

// String returns the lower-case hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Equal compares two hashes in constant time.
func (h Hash) Equal(o Hash) bool { return subtle.ConstantTimeCompare(h[:], o[:]) == 1 }

// MarshalText encodes the hash as hex.
func (h Hash) MarshalText() ([]byte, error) {
	b := make([]byte, 2*HashSize)
	hex.Encode(b, h[:])
	return b, nil
}

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	p, err := ParseHash(string(b))
	if err != nil {
		return err
	}
	*h = p
	return nil
}

// PrefixLen is the number of leading characters of a raw key kept for display.
const PrefixLen = 8

// DisplayPrefix returns the first PrefixLen characters of a raw key.
func DisplayPrefix(raw string) string {
	if len(raw) <= PrefixLen {
		return raw
	}
	return raw[:PrefixLen]
}

// Mint returns prefix followed by n characters drawn uniformly from alphabet
// using crypto/rand. Bytes that would bias the draw are rejected, so every
// character is equally likely. alphabet must hold 2 to 256 characters.
func Mint(prefix, alphabet string, n int) (string, error) {
	if len(alphabet) < 2 || len(alphabet) > 256 || n <= 0 {
		return "", fmt.Errorf("keystore: mint: bad alphabet size %d or length %d", len(alphabet), n)
	}
	// Largest multiple of len(alphabet) not above 256: bytes at or over it are rejected.
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, len(prefix)+n)
	out = append(out, prefix...)
	buf := make([]byte, n+n/2+8)
	for len(out) < len(prefix)+n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("keystore: mint: %w", err)
		}
		for _, b := range buf {
			if int(b) >= limit {
				continue
			}
			out = append(out, alphabet[int(b)%len(alphabet)])
			if len(out) == len(prefix)+n {
				break
			}
		}
	}
	return string(out), nil
}

// Key is a key record. The raw key is never part of it.
//
// A replica holds the enforcement view of a record (see Enforcement): the
// fields that decide a request, without the name, actors or metadata.
type Key struct {
	ID         string            `json:"id"`
	Hash       Hash              `json:"hash"`
	Prefix     string            `json:"prefix"`
	Name       string            `json:"name,omitempty"`
	Scopes     []string          `json:"scopes"`
	ProjectID  string            `json:"project_id,omitempty"`
	UserID     string            `json:"user_id,omitempty"`
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at,omitempty"`
	LastUsedAt *time.Time        `json:"last_used_at,omitempty"`
	UseCount   uint64            `json:"use_count,omitempty"`
	RevokedAt  *time.Time        `json:"revoked_at,omitempty"`
	CreatedBy  string            `json:"created_by,omitempty"`
	RevokedBy  string            `json:"revoked_by,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	RateLimit  *RateLimit        `json:"rate_limit,omitempty"`
	Quota      *Quota            `json:"quota,omitempty"`
}

// RateLimit is a per-key request budget: at most Limit requests per
// Duration, as a token bucket of Limit tokens refilled evenly. Records
// written before limits existed have none (nil: unlimited). Stored and
// replicated with the duration in nanoseconds.
type RateLimit struct {
	Limit    int64         `json:"limit"`
	Duration time.Duration `json:"duration"`
}

// Bounds of a RateLimit: a limit of 1 to MaxRateLimit requests per a whole
// number of seconds from MinRateLimitDuration to MaxRateLimitDuration. The
// RateLimit header fields give windows in whole seconds; a longer budget
// is a quota, not a rate.
const (
	MaxRateLimit         = 1_000_000_000
	MinRateLimitDuration = time.Second
	MaxRateLimitDuration = 24 * time.Hour
)

// FieldProblem is one thing wrong with a value, and the field it is in.
type FieldProblem struct {
	Field, Message string
}

// Problems lists what is wrong with l: its "limit" and its "duration".
func (l RateLimit) Problems() []FieldProblem {
	var out []FieldProblem
	if l.Limit < 1 || l.Limit > MaxRateLimit {
		out = append(out, FieldProblem{"limit", fmt.Sprintf("must be an integer from 1 to %d, got %d", MaxRateLimit, l.Limit)})
	}
	if l.Duration < MinRateLimitDuration || l.Duration > MaxRateLimitDuration || l.Duration%time.Second != 0 {
		out = append(out, FieldProblem{"duration", fmt.Sprintf("must be a whole number of seconds from %s to %s, got %s",
			FormatDuration(MinRateLimitDuration), FormatDuration(MaxRateLimitDuration), FormatDuration(l.Duration))})
	}
	return out
}

// Valid reports whether l has no Problems, without building them.
func (l RateLimit) Valid() bool {
	return l.Limit >= 1 && l.Limit <= MaxRateLimit && l.Duration >= MinRateLimitDuration &&
		l.Duration <= MaxRateLimitDuration && l.Duration%time.Second == 0
}

// Validate returns Problems as one error ("limit: ...; duration: ..."), or
// nil.
func (l RateLimit) Validate() error {
	ps := l.Problems()
	if len(ps) == 0 {
		return nil
	}
	msgs := make([]string, len(ps))
	for i, p := range ps {
		msgs[i] = p.Field + ": " + p.Message
	}
	return errors.New(strings.Join(msgs, "; "))
}

// String returns the CLI form, "100/1m".
func (l RateLimit) String() string {
	return strconv.FormatInt(l.Limit, 10) + "/" + FormatDuration(l.Duration)
}

// ParseRateLimit parses the CLI form "<limit>/<duration>" ("100/1m",
// "5000/1h") and validates it.
func ParseRateLimit(s string) (RateLimit, error) {
	n, d, ok := strings.Cut(s, "/")
	if !ok {
		return RateLimit{}, fmt.Errorf("rate limit %q: must be <limit>/<duration> such as 100/1m", quoted(s))
	}
	limit, err := strconv.ParseInt(n, 10, 64)
	if err != nil {
		return RateLimit{}, fmt.Errorf("rate limit %q: limit must be an integer", quoted(s))
	}
	dur, err := ParseRateLimitDuration(d)
	if err != nil {
		return RateLimit{}, fmt.Errorf("rate limit %q: %w", quoted(s), err)
	}
	l := RateLimit{Limit: limit, Duration: dur}
	if err := l.Validate(); err != nil {
		return RateLimit{}, fmt.Errorf("rate limit %q: %w", quoted(s), err)
	}
	return l, nil
}

// ParseRateLimitDuration parses a Go duration ("1m", "90s", "1h30m") or a
// number of days ("1d"), without validating its bounds.
func ParseRateLimitDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 && n <= 366 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration must be such as \"1s\", \"1m\", \"1h\" or \"1d\", got %q", quoted(s))
	}
	return d, nil
}

// FormatDuration writes d the short way: "1m" rather than "1m0s", "24h",
// "1h30m", "90s" stays "1m30s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// quoted is s shortened for an error message.
func quoted(s string) string { return clip.String(s, 32) }

// Enforcement returns the part of k that a sidecar needs to decide a request:
// id, hash, prefix, scopes, project, user, expiry, revocation, rate limit,
// quota.
func (k *Key) Enforcement() *Key {
	return &Key{
		ID:        k.ID,
		Hash:      k.Hash,
		Prefix:    k.Prefix,
		Scopes:    k.Scopes,
		ProjectID: k.ProjectID,
		UserID:    k.UserID,
		CreatedAt: k.CreatedAt,
		ExpiresAt: k.ExpiresAt,
		RevokedAt: k.RevokedAt,
		RateLimit: k.RateLimit,
		Quota:     k.Quota,
	}
}

// Revoked reports whether the key was revoked at or before now.
func (k *Key) Revoked() bool { return k.RevokedAt != nil }

// Expired reports whether the key's expiry is at or before now.
func (k *Key) Expired(now time.Time) bool { return k.ExpiresAt != nil && !k.ExpiresAt.After(now) }

// User is a key owner. A user exists once a key or a JWT names it and is
// active until deactivated.
type User struct {
	ID        string    `json:"id"`
	Active    bool      `json:"active"`
	UpdatedAt time.Time `json:"updated_at,omitempty"`
}

// Project groups NexGraph-style keys.
type Project struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}
