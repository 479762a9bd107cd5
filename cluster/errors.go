package cluster

import "errors"

// UnavailableError is a write refused or left undecided by the cluster,
// not by the store: no leader, no quorum, or leadership lost mid-write.
// Its message is meant for the API caller and holds no secret; the admin
// answers it 503.
type UnavailableError struct {
	msg string
	err error
}

func (e *UnavailableError) Error() string { return e.msg }

// Unwrap returns ErrNotLeader, ErrOutcomeUnknown or raft's error.
func (e *UnavailableError) Unwrap() error { return e.err }

// Unavailable marks the error as the cluster's, for the admin.
func (e *UnavailableError) Unavailable() bool { return true }

func unavailable(err error, leader string) error {
	var msg string
	switch {
	case err == ErrNotLeader && leader != "":
		msg = "admin cluster: this member is a follower; member " + leader + " leads and takes the writes"
	case err == ErrNotLeader:
		msg = "admin cluster: this member does not lead the cluster, and none leads that it knows of: writes need a quorum of the admin members; retry"
	case err == ErrOutcomeUnknown || isOutcomeUnknown(err):
		msg = "admin cluster: the leader lost its quorum before the write was committed; it may or may not be in force: read it before retrying"
	default:
		msg = "admin cluster: the write could not be committed (no quorum of admin members); retry"
	}
	return &UnavailableError{msg: msg, err: err}
}

func isOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }
