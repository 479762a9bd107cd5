package admin

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a request rate limit: N requests per Per, with bursts of up to N
// (a token bucket of N tokens refilled at N per Per), the same reading as
// a key's rate_limit. The zero Rate is no limit.
type Rate struct {
	N   int
	Per time.Duration
}

// Defaults of the admin's rate limits (docs/admin-api.md lists them).
var (
	// DefaultPrincipalRate bounds the calls of one JWT user or one project
	// key: far above what a person or a deployment script does, far below
	// what would let one caller occupy the admin.
	DefaultPrincipalRate = Rate{N: 20, Per: time.Second}
	// DefaultPublicCreateRate bounds unauthenticated project creations per
	// source address (an IPv4 address or an IPv6 /64).
	DefaultPublicCreateRate = Rate{N: 10, Per: time.Minute}
)

// MaxRateKeys bounds how many callers each limit remembers at once; beyond
// it, idle callers are forgotten and, if none is idle, new callers share
// one bucket until some are.
const MaxRateKeys = 10000

// ParseRate reads "N/DURATION" ("20/1s", "10/1m", "600/1h") or "0" (no
// limit).
func ParseRate(s string) (Rate, error) {
	if s == "0" || s == "" {
		return Rate{}, nil
	}
	ns, ds, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/DURATION such as 20/1s, or 0 for no limit", s)
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return Rate{}, fmt.Errorf("rate %q: the count must be a whole number of at least 1", s)
	}
	d, err := time.ParseDuration(ds)
	if err != nil || d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: the period must be a positive duration such as 1s or 1m", s)
	}
	return Rate{N: n, Per: d}, nil
}

// String is the form ParseRate reads.
func (r Rate) String() string {
	if r.N == 0 {
		return "0"
	}
	per := r.Per.String()
	switch {
	case r.Per%time.Hour == 0:
		per = strconv.FormatInt(int64(r.Per/time.Hour), 10) + "h"
	case r.Per%time.Minute == 0:
		per = strconv.FormatInt(int64(r.Per/time.Minute), 10) + "m"
	}
	return strconv.Itoa(r.N) + "/" + per
}

// limiters is one token bucket per key (a principal or a source address),
// bounded to max keys.
type limiters struct {
	limit rate.Limit
	burst int
	max   int
	full  time.Duration // how long an empty bucket takes to fill again

	mu        sync.Mutex
	m         map[string]*rate.Limiter
	overflow  *rate.Limiter // shared by new keys while m is full of busy ones
	lastSweep time.Time
}

// newLimiters returns the limiters of r, or nil when r is no limit.
func newLimiters(r Rate, max int) *limiters {
	if r.N == 0 {
		return nil
	}
	l := &limiters{
		limit: rate.Limit(float64(r.N) / r.Per.Seconds()),
		burst: r.N,
		max:   max,
		full:  r.Per,
		m:     make(map[string]*rate.Limiter),
	}
	l.overflow = rate.NewLimiter(l.limit, l.burst)
	return l
}

// allow takes one token of key's bucket at now. When there is none it
// takes nothing and says how long until there is one.
func (l *limiters) allow(key string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= l.max {
			l.sweep(now)
		}
		if len(l.m) < l.max {
			lim = rate.NewLimiter(l.limit, l.burst)
			l.m[key] = lim
		} else {
			lim = l.overflow
		}
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets the keys whose bucket is full again at now: a new bucket
// would be the same. It runs at most once per refill period, so a map full
// of busy keys is not scanned at every request.
func (l *limiters) sweep(now time.Time) {
	if !l.lastSweep.IsZero() && now.Sub(l.lastSweep) < l.full {
		return
	}
	l.lastSweep = now
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
}

// size is how many keys are remembered (for tests).
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

// tooManyRequests is the 429 of a caller that must wait retryAfter.
func tooManyRequests(retryAfter time.Duration) *requestError {
	return &requestError{
		status:     http.StatusTooManyRequests,
		msg:        "too many requests: retry later",
		retryAfter: retryAfter,
	}
}

// retryAfterSeconds is the Retry-After value of d: whole seconds rounded
// up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(int64(s), 10)
}

// sourceKey is the rate-limit key of the request's peer address: the IPv4
// address, or the /64 of an IPv6 address (one host usually holds a whole
// /64). The admin keys on the TCP peer: behind a proxy every client shares
// the proxy's bucket.
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64)
		return p.String()
	}
	return ip.String()
}

// rateLimit applies the limit of p's kind to a request for a route of
// access a and returns a 429 *requestError when it is over. The operator
// has its own limit (none by default); JWT users and project keys one
// bucket each. A project creation by anyone but the operator also takes a
// token of its source address's bucket, authenticated or not: otherwise
// the first key of one anonymous project could create projects (and keys)
// at the per-principal rate.
func (s *Server) rateLimit(r *http.Request, p principal, a access) error {
	type limit struct {
		l   *limiters
		key string
	}
	var limits []limit
	switch p.kind {
	case kindOperator:
		limits = append(limits, limit{s.operatorLimit, "operator"})
	case kindAnonymous:
	default:
		limits = append(limits, limit{s.principalLimit, p.actor()})
	}
	if a == accessProjectCreate && p.kind != kindOperator {
		limits = append(limits, limit{s.publicCreateLimit, sourceKey(r.RemoteAddr)})
	}
	for _, lim := range limits {
		if lim.l == nil {
			continue
		}
		if ok, wait := lim.l.allow(lim.key, s.now()); !ok {
			s.log.Debug().Str("actor", p.actor()).Str("route", r.Pattern).Dur("retry_after", wait).Msg("admin request rate limited")
			return tooManyRequests(wait)
		}
	}
	return nil
}
