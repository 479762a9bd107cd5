package cluster

import (
	"net/http"
	"strings"

	"github.com/extauthz/extauthz/jsonresp"
)

// ReadIndexed serves an admin API request (a path under /api/) only after
// this member applied every write acknowledged before it arrived, on any
// member (WaitReadIndex), so a caller reads its own writes whichever member
// it asks. A member that cannot learn that (no leader) answers 503 with the
// cluster's message and Retry-After.
func (n *Node) ReadIndexed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			if err := n.WaitReadIndex(); err != nil {
				w.Header().Set("Retry-After", "1")
				jsonresp.Error(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
