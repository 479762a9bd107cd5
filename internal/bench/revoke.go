package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/extauthz/extauthz/internal/childproc"
)

// revokeTimeout bounds the wait for one sidecar to deny a revoked key.
const revokeTimeout = 30 * time.Second

// revocationResult is the propagation of a series of revocations to N
// sidecars: one sample per (revocation, sidecar).
type revocationResult struct {
	Sidecars  int
	Probed    int        // sidecars polled per revocation, drawn at random
	Samples   *Histogram // admin's 200 -> first UNAUTHENTICATED at a sidecar
	Probe     *Histogram // round trip of the polling Checks themselves
	Timeouts  int        // (revocation, sidecar) pairs never denied within revokeTimeout
	Revoked   int
	Unhealthy string // set when not every sidecar could be started
}

// measureRevocations revokes keys one at a time, each on the next of admins
// (the members of one cluster) in turn, and, from the
// moment the DELETE's 200 arrives (t0), polls every sidecar's gRPC Check
// with the revoked key in a tight loop until it answers UNAUTHENTICATED;
// each sidecar's first denial gives one sample t - t0. The next key is
// revoked once every sidecar denied the previous one. Before each
// revocation every sidecar is checked to still allow the key, so a sample
// never measures a key that was already denied.
//
// With probe > 0 and more sidecars than that, each revocation is polled at
// probe sidecars drawn at random (every sidecar still receives and applies
// it): 100 tight polling loops on 2 cores saturate the CPU, and the
// scheduler's round over 100 busy processes (the polling round trip alone
// is p99 ~140 ms) becomes most of what is measured. With poll > 0 each
// poller pauses that long between polls instead of spinning.
func measureRevocations(ctx context.Context, admins []*adminClient, sidecars []*childproc.Proc, keys []string, ids []string, probe int, poll time.Duration) (revocationResult, error) {
	res := revocationResult{Sidecars: len(sidecars), Probed: len(sidecars), Samples: NewHistogram(), Probe: NewHistogram()}
	if probe > 0 && probe < len(sidecars) {
		res.Probed = probe
	}
	rnd := rand.New(rand.NewPCG(uint64(len(sidecars)), uint64(len(keys))))
	loads := make([]*grpcLoad, len(sidecars))
	defer func() {
		for _, g := range loads {
			if g != nil {
				g.Close()
			}
		}
	}()
	for i, sc := range sidecars {
		g, err := newGRPCLoad(sc.Addr("grpc"), 1, nil, nil, true)
		if err != nil {
			return res, err
		}
		loads[i] = g
	}
	probes := make([]*Histogram, len(sidecars))
	for i := range probes {
		probes[i] = NewHistogram()
	}
	for k, key := range keys {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		req := checkRequest(key, k)
		polled := rnd.Perm(len(loads))[:res.Probed]
		// Every polled sidecar must allow the key before it is revoked.
		for _, i := range polled {
			if err := waitCode(ctx, loads[i].clients[0], req, codes.OK, revokeTimeout); err != nil {
				return res, fmt.Errorf("%s before revocation %d: %w", sidecars[i].Name, k, err)
			}
		}
		code, body, err := admins[k%len(admins)].do(ctx, http.MethodDelete, "/api/v1/api-keys/"+ids[k], nil)
		t0 := time.Now()
		if err != nil {
			return res, fmt.Errorf("revoke: %w", err)
		}
		if code != http.StatusOK {
			return res, fmt.Errorf("revoke: DELETE answered %d %s", code, body)
		}
		res.Revoked++
		lat := make([]time.Duration, len(polled))
		var wg sync.WaitGroup
		for j, i := range polled {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := loads[i].clients[0]
				for ctx.Err() == nil {
					s := time.Now()
					resp, err := client.Check(ctx, req)
					now := time.Now()
					probes[i].Record(now.Sub(s))
					if err == nil && codes.Code(resp.GetStatus().GetCode()) == codes.Unauthenticated {
						lat[j] = now.Sub(t0)
						return
					}
					if now.Sub(t0) > revokeTimeout {
						lat[j] = -1
						return
					}
					if poll > 0 {
						time.Sleep(poll)
					}
				}
			}()
		}
		wg.Wait()
		for _, d := range lat {
			if d < 0 {
				res.Timeouts++
				continue
			}
			res.Samples.Record(d)
		}
	}
	for _, p := range probes {
		res.Probe.Merge(p)
	}
	return res, nil
}

// waitCode polls Check until it answers want, for up to timeout.
func waitCode(ctx context.Context, client authv3.AuthorizationClient, req *authv3.CheckRequest, want codes.Code, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := client.Check(ctx, req)
		if err == nil && codes.Code(resp.GetStatus().GetCode()) == want {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = codes.Code(resp.GetStatus().GetCode()).String()
		}
		if time.Now().After(deadline) {
			return errors.New("want " + want.String() + ", still " + last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
