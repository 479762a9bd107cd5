package keycheck

import (
	"errors"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// Result is the outcome of Check: Valid, or why the key is refused.
type Result uint8

// Results, in the order Check tests them.
const (
	Valid         Result = iota
	BadFormat            // not a format the policy accepts: never looked up
	Unknown              // no record has its hash
	Revoked              // the record is revoked
	Expired              // the record's expiry is at or before now
	InactiveOwner        // the record's owner is deactivated
)

var resultNames = [...]string{"valid", "bad format", "unknown", "revoked", "expired", "inactive owner"}

func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "invalid result"
}

// Format tells a well-formed raw key; *policy.Policy is one.
type Format interface {
	ValidKey(raw string) bool
}

// Lookup finds a record by the SHA-256 of a raw key, with an error
// wrapping keystore.ErrNotFound for an unknown hash and any other error
// when the store cannot be read; *keystore.Store and the replication
// follower are ones.
type Lookup interface {
	Lookup(keystore.Hash) (keystore.LookupResult, error)
}

// Check checks raw against format and the records of keys at time now.
// It returns the record whenever one was found (with Revoked, Expired and
// InactiveOwner too, so that a refusal can name the key), and a non-nil
// error only when the store failed, the Result then being meaningless.
func Check(format Format, keys Lookup, raw string, now time.Time) (*keystore.Key, Result, error) {
	if !format.ValidKey(raw) {
		return nil, BadFormat, nil
	}
	res, err := keys.Lookup(keystore.HashKey(raw))
	if errors.Is(err, keystore.ErrNotFound) {
		return nil, Unknown, nil
	}
	if err != nil {
		return nil, Unknown, err
	}
	k := res.Key
	switch {
	case k.Revoked():
		return k, Revoked, nil
	case k.Expired(now):
		return k, Expired, nil
	case !res.OwnerActive:
		return k, InactiveOwner, nil
	}
	return k, Valid, nil
}
