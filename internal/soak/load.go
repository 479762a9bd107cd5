package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/extauthz/extauthz/internal/childproc"
)

// route is a request the load sends, and the scope the Nexgent policy
// requires for it (superScope for the unmatched, require-super ones).
type route struct {
	method, path, scope string
}

var routes = []route{
	{"GET", "/api/v1/trading-signals", "signals"},
	{"POST", "/api/v1/trading-signals/sig-42?limit=10", "signals"},
	{"GET", "/api/v1/agents/agent-7", "agents"},
	{"GET", "/api/v1/agent-balances", "balances"},
	{"DELETE", "/api/v1/agents/agent-7", superScope}, // no route: unmatched: require-super
}

// outcome is what a sidecar answered, reduced to the decision.
type outcome uint8

const (
	outAllow   outcome = iota // 200 / OK
	outDeny401                // 401 / UNAUTHENTICATED
	outDeny403                // 403 / PERMISSION_DENIED
	outLimited                // 429 / RESOURCE_EXHAUSTED: the key's rate limit
	outQuota                  // 429 / RESOURCE_EXHAUSTED naming the "quota" policy: the key's quota
	outOther                  // any other decision (always a wrong one)
	outError                  // transport error, gRPC error, HTTP 5xx
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"allow", "401", "403", "429", "429 quota", "other", "error"}

// class is the verdict on one answer.
type class uint8

const (
	classCorrect class = iota
	classWrong
	classError
	numClasses
)

const (
	feHTTP = iota // Traefik forwardAuth
	feGRPC        // Envoy ext_authz
	numFrontends
)

var frontendNames = [numFrontends]string{"forwardAuth", "gRPC Check"}

// target is one sidecar's front doors.
type target struct {
	name    string
	authURL string
	conn    *grpc.ClientConn
	client  authv3.AuthorizationClient
}

func newTarget(name string, p *childproc.Proc) (*target, error) {
	conn, err := grpc.NewClient(p.Addr("grpc"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &target{name: name, authURL: p.URL("http") + "/auth", conn: conn, client: authv3.NewAuthorizationClient(conn)}, nil
}

// stats are the load's counters.
type stats struct {
	mu         sync.Mutex
	total      int
	classes    [numClasses]int
	either     int // answers given while both decisions were admissible
	byFrontend [numFrontends][numClasses]int
	byCategory [numCategories][numClasses]int
	byOutcome  [numOutcomes]int
	wrongs     []string // the first wrong answers, in detail
	errs       []string // the first errors
}

func (st *stats) snapshot() (total, wrong, errs int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.total, st.classes[classWrong], st.classes[classError]
}

// loader is the load generator.
type loader struct {
	o       *oracle
	targets []*target
	http    *http.Client
	st      *stats
	timeout time.Duration
}

// run starts workers paced to rate checks/s in total and returns when ctx ends
// and every check in flight has been judged.
func (l *loader) run(ctx context.Context, workers int, rate float64) {
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) * float64(workers) / rate)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			// Stagger the workers over one interval.
			next := time.Now().Add(time.Duration(rng.Int64N(int64(interval))))
			for {
				if d := time.Until(next); d > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(d):
					}
				} else if ctx.Err() != nil {
					return
				}
				l.one(ctx, rng)
				next = next.Add(interval)
				if behind := time.Since(next); behind > time.Second {
					next = time.Now() // don't burst to catch up
				}
			}
		}()
	}
	wg.Wait()
}

// one sends one check and judges the answer.
func (l *loader) one(ctx context.Context, rng *rand.Rand) {
	k, raw, cat := l.o.pick(rng)
	rt := routes[rng.IntN(len(routes))]
	fe := rng.IntN(numFrontends)
	t := l.targets[rng.IntN(len(l.targets))]
	bearer := rng.IntN(4) == 0

	s := time.Now()
	tk := l.o.takes.begin(t.name, k, s)
	var quotaBefore int64
	if k != nil && k.quota != nil {
		quotaBefore = k.quota.allowedNow()
	}
	var out outcome
	var keyID, detail string
	if fe == feHTTP {
		out, keyID, detail = l.forwardAuth(ctx, t, rt, raw, bearer)
	} else {
		out, keyID, detail = l.check(ctx, t, rt, raw, bearer)
	}
	e := time.Now()
	if ctx.Err() != nil && out == outError {
		return // cut by the end of the run, not the sidecar's doing
	}

	canValid, canInvalid := l.o.expect(k, s, e)
	var want []outcome
	if canValid {
		if k.grants(rt.scope) {
			canAllow, canLimit, canQuota := true, false, false
			if tk != nil {
				canAllow, canLimit = l.o.takes.verdict(t.name, k, tk, e)
			}
			if k.quota != nil {
				var quotaAllows bool
				quotaAllows, canQuota = k.quota.verdict(t.name, quotaBefore, l.o.sidecars, l.o.quotaAllowance)
				canAllow = canAllow && quotaAllows
			}
			if canAllow {
				want = append(want, outAllow)
			}
			if canLimit {
				want = append(want, outLimited)
			}
			if canQuota {
				want = append(want, outQuota)
			}
		} else {
			want = append(want, outDeny403)
		}
	}
	if canInvalid {
		want = append(want, outDeny401)
	}
	if k != nil && k.quota != nil {
		k.quota.finish(t.name, out == outAllow, out == outError)
	}
	switch out {
	case outAllow:
		l.o.takes.finish(tk, e, takeAllowed)
	case outError:
		l.o.takes.finish(tk, time.Time{}, takePending) // may have taken a token
	default:
		l.o.takes.finish(tk, e, takeNone)
	}
	cl := classWrong
	switch {
	case out == outError:
		cl = classError
	case contains(want, out):
		cl = classCorrect
		if out == outAllow && keyID != k.id {
			cl = classWrong
			detail = fmt.Sprintf("allowed, but x-auth-key-id is %q, not the key's id", keyID)
		}
	}

	l.st.mu.Lock()
	defer l.st.mu.Unlock()
	l.st.total++
	l.st.classes[cl]++
	l.st.byFrontend[fe][cl]++
	l.st.byCategory[cat][cl]++
	l.st.byOutcome[out]++
	if canValid && canInvalid {
		l.st.either++
	}
	switch cl {
	case classWrong:
		if len(l.st.wrongs) < 20 {
			var wantNames []string
			for _, w := range want {
				wantNames = append(wantNames, outcomeNames[w])
			}
			msg := fmt.Sprintf("t=%.3fs..%.3fs %s %s %s %s key kind %q: got %s, admissible %v",
				s.Sub(l.o.t0).Seconds(), e.Sub(l.o.t0).Seconds(), t.name, frontendNames[fe], rt.method, rt.path,
				categoryNames[cat], outcomeNames[out], wantNames)
			if detail != "" {
				msg += " (" + detail + ")"
			}
			if k != nil {
				msg += "\n      " + l.o.history(k)
			} else {
				msg += "\n      unknown key " + raw[:8] + "…"
			}
			l.st.wrongs = append(l.st.wrongs, msg)
		}
	case classError:
		if len(l.st.errs) < 10 {
			l.st.errs = append(l.st.errs, fmt.Sprintf("t=%.3fs %s %s: %s", s.Sub(l.o.t0).Seconds(), t.name, frontendNames[fe], detail))
		}
	}
}

func contains(list []outcome, o outcome) bool {
	for _, x := range list {
		if x == o {
			return true
		}
	}
	return false
}

// forwardAuth asks the HTTP front door as Traefik does.
func (l *loader) forwardAuth(ctx context.Context, t *target, rt route, raw string, bearer bool) (outcome, string, string) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.authURL, nil)
	if err != nil {
		return outError, "", err.Error()
	}
	req.Header.Set("X-Forwarded-Method", rt.method)
	req.Header.Set("X-Forwarded-Uri", rt.path)
	req.Header.Set("X-Forwarded-Host", "api.nexgent.example")
	req.Header.Set("X-Forwarded-Proto", "https")
	if bearer {
		req.Header.Set("Authorization", "Bearer "+raw)
	} else {
		req.Header.Set("X-API-Key", raw)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		return outError, "", err.Error()
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return outError, "", "reading body: " + err.Error()
	}
	switch c := resp.StatusCode; {
	case c == http.StatusOK:
		return outAllow, resp.Header.Get("X-Auth-Key-Id"), ""
	case c == http.StatusUnauthorized:
		return outDeny401, "", ""
	case c == http.StatusForbidden:
		return outDeny403, "", ""
	case c == http.StatusTooManyRequests && strings.HasPrefix(resp.Header.Get("RateLimit-Policy"), `"quota"`):
		return outQuota, "", ""
	case c == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "":
		return outLimited, "", ""
	case c >= 500:
		return outError, "", fmt.Sprintf("HTTP %d", c)
	default:
		return outOther, "", fmt.Sprintf("HTTP %d", c)
	}
}

// check asks the gRPC front door as Envoy does.
func (l *loader) check(ctx context.Context, t *target, rt route, raw string, bearer bool) (outcome, string, string) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	hdr := map[string]string{
		":authority": "api.nexgent.example",
		":method":    rt.method,
		":path":      rt.path,
		":scheme":    "https",
		"user-agent": "nexgent-client/1.0",
	}
	if bearer {
		hdr["authorization"] = "Bearer " + raw
	} else {
		hdr["x-api-key"] = raw
	}
	sock := func(ip string, port uint32) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: sock("10.1.2.3", 43210)},
		Destination: &authv3.AttributeContext_Peer{Address: sock("10.1.2.4", 8080)},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: rt.method, Path: rt.path, Host: "api.nexgent.example", Scheme: "https", Protocol: "HTTP/1.1",
			Headers: hdr,
		}},
	}}
	resp, err := t.client.Check(ctx, req)
	if err != nil {
		return outError, "", err.Error()
	}
	code := resp.GetStatus().GetCode()
	denied := int(resp.GetDeniedResponse().GetStatus().GetCode())
	switch {
	case code == 0 && resp.GetDeniedResponse() == nil:
		var id string
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "x-auth-key-id" {
				id = h.GetHeader().GetValue()
			}
		}
		return outAllow, id, ""
	case code == 16 && denied == http.StatusUnauthorized:
		return outDeny401, "", ""
	case code == 7 && denied == http.StatusForbidden:
		return outDeny403, "", ""
	case code == 8 && denied == http.StatusTooManyRequests:
		for _, h := range resp.GetDeniedResponse().GetHeaders() {
			if h.GetHeader().GetKey() == "ratelimit-policy" && strings.HasPrefix(h.GetHeader().GetValue(), `"quota"`) {
				return outQuota, "", ""
			}
		}
		return outLimited, "", ""
	default:
		return outOther, "", fmt.Sprintf("status %d, denied_response %d", code, denied)
	}
}
