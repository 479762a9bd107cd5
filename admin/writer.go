package admin

import (
	"errors"
	"net/http"
	"time"

	"github.com/extauthz/extauthz/keystore"
)

// Writer is what the admin changes the key store through: the
// authoritative *keystore.Store itself, or a replicated writer whose every
// call is a consensus log entry (package cluster). Each method has the
// store's meaning and errors.
type Writer interface {
	CreateKey(k *keystore.Key, actor string) error
	ImportKeys(keys []*keystore.Key, actor string) (keystore.ImportResult, error)
	RevokeKey(id, actor string) (*keystore.Key, error)
	RotateKey(oldID string, next *keystore.Key, grace time.Duration, actor string) (*keystore.Key, error)
	SetKeyRateLimit(id string, limit *keystore.RateLimit, actor string) (*keystore.Key, error)
	SetKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error)
	LowerKeyQuota(id string, limit *int64, actor string) (*keystore.Key, error)
	SetUserActive(id string, active bool, actor string) (keystore.User, error)
	CreateProject(p *keystore.Project, first *keystore.Key, actor string) error
}

// unavailable is an error of a Writer meaning the write cannot be made
// now (no leader, no quorum); its message says why and holds no secret.
// It is answered 503 with that message.
type unavailable interface {
	error
	Unavailable() bool
}

func asUnavailable(err error) (unavailable, bool) {
	var u unavailable
	return u, errors.As(err, &u) && u.Unavailable()
}

// OperatorOnly serves h to the operator token only, refusing any other
// caller as the operator routes do: for routes the program adds beside
// the API (an admin cluster's membership).
func (s *Server) OperatorOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authorize(r, accessOperator)
		if err != nil {
			s.respond(w, r, p, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}
