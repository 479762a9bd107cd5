package replication

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Resolver finds the addresses of a host name: *net.Resolver (the default,
// net.DefaultResolver) is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// resolveTimeout bounds one name lookup, as the dial timeout bounds a
// connection.
const resolveTimeout = 5 * time.Second

// target is one admin member the follower may connect to: a base URL and,
// for a name that resolves to several addresses (a headless Service), the
// address to dial. The URL, and so the Host header and the TLS server name
// verified, stay the name's.
type target struct {
	base string // absolute http(s) URL, without a trailing slash
	name string // base with any password redacted, for logs
	host string // the URL's host:port, port included
	addr string // host:port dialled instead of host; "" = host itself
}

// logValue names the target in logs: its URL, and the address dialled.
func (t target) logValue() string {
	if t.addr == "" {
		return t.name
	}
	return t.name + " (" + t.addr + ")"
}

// admins is the set of admin members a follower replicates from
// (FollowerOptions.AdminURL): every member of an admin cluster serves the
// same history, same store id and revisions, so the follower follows one
// and, when it is lost, resumes its watch from the replica's revision on
// another, without a new snapshot.
//
// The candidates are the URLs in their order, a URL whose host name
// resolves to several addresses standing for each of them (sorted),
// resolved again at every connection. The first connection goes to a
// random candidate (unless listed), so that a fleet spreads over the
// members; after a failure the next connection goes to the candidate
// after the one that failed.
type admins struct {
	urls     []*url.URL
	resolver Resolver
	listed   bool

	mu      sync.Mutex
	cur     target
	pos     int  // index of cur among the candidates last computed
	started bool // cur was picked
	lost    bool // cur failed: the next pick moves on
}

// parseAdmins reads a comma-separated list of absolute http(s) URLs.
func parseAdmins(list string, resolver Resolver, listed bool) (*admins, error) {
	a := &admins{resolver: resolver, listed: listed}
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(strings.TrimRight(part, "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("replication: admin URL %q must be an absolute http(s) URL", RedactedURL(part))
		}
		a.urls = append(a.urls, u)
	}
	if len(a.urls) == 0 {
		return nil, fmt.Errorf("replication: admin URL %q must be an absolute http(s) URL (or a comma-separated list of them)", list)
	}
	return a, nil
}

// candidates lists the targets, resolving every URL whose host is a name.
// A name that does not resolve, or resolves to one address, is dialled as
// the URL says (the dialer resolves it again and reports the failure).
func (a *admins) candidates(ctx context.Context) []target {
	var out []target
	for _, u := range a.urls {
		t := urlTarget(u)
		if net.ParseIP(u.Hostname()) != nil || a.resolver == nil {
			out = append(out, t)
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		addrs, err := a.resolver.LookupHost(rctx, u.Hostname())
		cancel()
		if err != nil || len(addrs) < 2 {
			out = append(out, t)
			continue
		}
		sort.Strings(addrs)
		for _, ip := range slices.Compact(addrs) {
			t.addr = net.JoinHostPort(ip, urlPort(u))
			out = append(out, t)
		}
	}
	return slices.Compact(out)
}

// pick returns the target of the next connection: the current one, or
// the next candidate once it failed. moved reports a change of target
// after the first pick.
func (a *admins) pick(ctx context.Context) (t target, moved bool) {
	cands := a.candidates(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.cur
	switch i := slices.Index(cands, a.cur); {
	case !a.started:
		a.pos = 0
		if !a.listed {
			a.pos = rand.IntN(len(cands))
		}
	case i < 0:
		a.pos %= len(cands) // it left the name: the one in its place
	case a.lost:
		a.pos = (i + 1) % len(cands)
	default:
		a.pos = i
	}
	moved = a.started && cands[a.pos] != prev
	a.cur, a.started, a.lost = cands[a.pos], true, false
	return a.cur, moved
}

// failed records that a connection to t failed: the next pick moves on.
func (a *admins) failed(t target) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if t == a.cur {
		a.lost = true
	}
}

// current is the target picked last (the first URL before any pick),
// where usage reports go.
func (a *admins) current() target {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		return urlTarget(a.urls[0])
	}
	return a.cur
}

// urlTarget is u dialled as it says.
// RedactedURL is raw for an error or a log: its password, if any, shown
// as xxxxx; a URL that does not parse is not shown at all (it may hold
// one that cannot be told apart).
func RedactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func urlTarget(u *url.URL) target {
	return target{base: u.String(), name: u.Redacted(), host: net.JoinHostPort(u.Hostname(), urlPort(u))}
}

// urlPort is u's port, or its scheme's.
func urlPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

// dialKey carries a target's address to the transport's dialer (see
// NewTransport): from is the URL's host:port, to the address dialled
// instead.
type dialKey struct{}

type dialPin struct{ from, to string }

// withTarget returns ctx with t's address for the dialer, when it has one.
func withTarget(ctx context.Context, t target) context.Context {
	if t.addr == "" {
		return ctx
	}
	return context.WithValue(ctx, dialKey{}, dialPin{from: t.host, to: t.addr})
}

// pinnedAddr is the address to dial for addr: a target's, when the
// request was for it (not through a proxy, whose address differs).
func pinnedAddr(ctx context.Context, addr string) string {
	if p, ok := ctx.Value(dialKey{}).(dialPin); ok && p.from == addr {
		return p.to
	}
	return addr
}
