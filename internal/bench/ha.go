package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
	"github.com/extauthz/extauthz/internal/testpki"
)

// The admin-cluster rows (-only cluster runs them alone): three `extauthz
// admin` voters on loopback with mutual TLS between them and the default
// raft timeouts, each row beside a single admin measured in the same run.

// haNodes is the size of the measured cluster.
const haNodes = 3

// haResult is what the cluster rows measured; an error field set means
// the row could not be measured, and says why.
type haResult struct {
	creations, creationsBase loadResult // three voters; one admin, interleaved with them
	creationsErr             error
	revocation               revocationResult // sidecars spread over the voters
	revocationRSS            int64            // the sidecars' VmRSS, summed
	revocationErr            error
	failover, failoverBase   time.Duration // leader SIGKILL → first 201; one admin SIGKILL → restart → first 201
	failoverErr              error
}

// startCluster runs haNodes admin voters under dir, each over its own empty
// data dir, and waits until each is ready (a leader elected, caught up).
func (c *cluster) startCluster(ctx context.Context, dir string) ([]*childproc.Proc, error) {
	ca, err := testpki.New("bench raft CA")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caFile := filepath.Join(dir, "raft-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o600); err != nil {
		return nil, err
	}
	ids, addrs, peers := make([]string, haNodes), make([]string, haNodes), make([]string, haNodes)
	for i := range haNodes {
		ids[i] = fmt.Sprintf("n%d", i)
		if addrs[i], err = freeLoopback(); err != nil {
			return nil, err
		}
		peers[i] = ids[i] + "=" + addrs[i]
	}
	var procs []*childproc.Proc
	fail := func(err error) ([]*childproc.Proc, error) {
		for _, p := range procs {
			p.Kill()
		}
		return nil, err
	}
	for i, id := range ids {
		cert, key, err := ca.Sign([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, "127.0.0.1")
		if err != nil {
			return fail(err)
		}
		certFile, keyFile := filepath.Join(dir, id+".pem"), filepath.Join(dir, id+"-key.pem")
		if err := errors.Join(os.WriteFile(certFile, cert, 0o600), os.WriteFile(keyFile, key, 0o600)); err != nil {
			return fail(err)
		}
		p, err := childproc.Start(ctx, "admin-"+id, c.bin, append(c.adminArgs(filepath.Join(dir, id)),
			"--node-id", id, "--raft-addr", addrs[i], "--raft-peers", strings.Join(peers, ","),
			"--raft-tls-cert-file", certFile, "--raft-tls-key-file", keyFile, "--raft-tls-ca-file", caFile), nil)
		if err != nil {
			return fail(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if _, err := p.WaitReady(ctx, p.URL("admin")+"/readyz", childproc.StartTimeout); err != nil {
			return fail(err)
		}
	}
	return procs, nil
}

func freeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clusterRows measures the cluster rows on a new cluster, in this order:
// revocation propagation to the largest -sidecars count spread over the
// voters (on a store of -keys-small keys created through the cluster, the
// single admin's small store's size), creations/s through the voters
// beside one admin, and the leader's SIGKILL to the next write.
func (b *bench) clusterRows(ctx context.Context) {
	r := &b.res.ha
	t0 := time.Now()
	procs, err := b.cl.startCluster(ctx, filepath.Join(b.root, "cluster"))
	if err != nil {
		r.creationsErr, r.revocationErr, r.failoverErr = err, err, err
		return
	}
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	b.progress("admin cluster of %d voters ready in %v", haNodes, time.Since(t0).Round(time.Millisecond))
	singleDir := filepath.Join(b.root, "admin-single")
	single, err := b.cl.startAdmin(ctx, "admin-single", singleDir)
	if err != nil {
		r.creationsErr, r.failoverErr = err, err
	}
	defer func() {
		if single != nil {
			single.Kill()
		}
	}()

	keys, err := b.seedCluster(ctx, procs)
	if err != nil {
		r.revocationErr = err
	} else if ctx.Err() == nil {
		b.clusterRevocations(ctx, procs, keys)
	}
	if ctx.Err() == nil {
		b.clusterCreations(ctx, procs, single)
	}
	if ctx.Err() == nil {
		single = b.clusterFailover(ctx, procs, single, singleDir)
	}
}

// createBody is the key every creation of the cluster rows asks for.
var createBody = map[string]any{"name": "bench", "scopes": []string{"signals"}}

// spreadClients are admin clients for every voter; caller w uses voter w
// mod haNodes.
func (b *bench) spreadClients(procs []*childproc.Proc, conns int) []*adminClient {
	clients := make([]*adminClient, len(procs))
	for i, p := range procs {
		clients[i] = b.cl.adminClient(p, conns)
	}
	return clients
}

// seedCluster creates -keys-small keys through the voters, -admin-clients
// at a time, so that the cluster's store is the size of the single
// admin's small store, and returns the raw form and id of each.
func (b *bench) seedCluster(ctx context.Context, procs []*childproc.Proc) (*keySet, error) {
	o := b.opts
	clients := b.spreadClients(procs, o.admins)
	keys := &keySet{Total: o.keysSmall}
	var mu sync.Mutex
	var errs []error
	next := 0
	var wg sync.WaitGroup
	for w := range o.admins {
		wg.Go(func() {
			for ctx.Err() == nil {
				mu.Lock()
				if next >= o.keysSmall || len(errs) > 0 {
					mu.Unlock()
					return
				}
				next++
				mu.Unlock()
				code, body, err := clients[w%len(clients)].do(ctx, http.MethodPost, "/api/v1/api-keys", createBody)
				var k struct{ ID, Key string }
				if err == nil && (code != http.StatusCreated || json.Unmarshal(body, &k) != nil || k.ID == "" || k.Key == "") {
					err = fmt.Errorf("create answered %d %.200s", code, body)
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					keys.Valid, keys.IDs = append(keys.Valid, k.Key), append(keys.IDs, k.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("seed the cluster's store: %w", errs[0])
	}
	return keys, ctx.Err()
}

// clusterCreations runs -admin-clients clients creating keys, worker w
// on voter w mod haNodes, in -rounds slices alternating with the same
// clients on the single admin.
func (b *bench) clusterCreations(ctx context.Context, procs []*childproc.Proc, single *childproc.Proc) {
	o, r := b.opts, &b.res.ha
	clients := b.spreadClients(procs, o.admins)
	create := func(ac *adminClient) caller {
		return func(ctx context.Context, _ bool, _ int) (bool, error) {
			code, _, err := ac.do(ctx, http.MethodPost, "/api/v1/api-keys", createBody)
			return code == http.StatusCreated, err
		}
	}
	spread := func(w int) caller { return create(clients[w%len(clients)]) }
	var one func(int) caller
	if single != nil {
		sc := b.cl.adminClient(single, o.admins)
		one = func(int) caller { return create(sc) }
	}
	// Half of -duration each, in -rounds slices of both.
	spec := loadSpec{Concurrency: o.admins, Warmup: o.warmup / time.Duration(o.rounds), Duration: o.duration / time.Duration(2*o.rounds), Valid: 1, Invalid: 1}
	r.creations.Hist, r.creationsBase.Hist = NewHistogram(), NewHistogram()
	for round := range o.rounds {
		if ctx.Err() != nil {
			return
		}
		first, second := func() { r.creations.add(runLoad(ctx, spec, spread)) }, func() {
			if one != nil {
				r.creationsBase.add(runLoad(ctx, spec, one))
			}
		}
		if round%2 == 1 {
			first, second = second, first
		}
		first()
		second()
	}
	if n := r.creations.Requests - r.creations.Unexpected - r.creations.Errors; n == 0 {
		r.creationsErr = fmt.Errorf("no key created (%d non-201 answers, %d errors: %v)", r.creations.Unexpected, r.creations.Errors, r.creations.FirstErr)
	}
	b.progress("admin creations with %d clients, %d voters: %s; one admin: %s", o.admins, haNodes, loadCell(r.creations), loadCell(r.creationsBase))
}

// clusterRevocations starts the largest -sidecars count of sidecars,
// sidecar i following voter i mod haNodes, and measures -revocations
// revocations (each DELETE sent to the next voter in turn) polling
// -revoke-probe sidecars per revocation, as the single admin's sampled
// series does.
func (b *bench) clusterRevocations(ctx context.Context, procs []*childproc.Proc, keys *keySet) {
	o, r := b.opts, &b.res.ha
	n := o.sidecars[len(o.sidecars)-1]
	if len(keys.Valid) < o.revocations {
		r.revocationErr = fmt.Errorf("only %d keys created for %d revocations", len(keys.Valid), o.revocations)
		return
	}
	t0 := time.Now()
	sidecars, err := b.startSidecars(ctx, procs, n, 0, "sidecar-c")
	defer stopAll(sidecars)
	if err != nil {
		r.revocationErr = err
		return
	}
	for _, sc := range sidecars {
		if m, err := sc.Memory(); err == nil {
			r.revocationRSS += m.RSS
		}
	}
	b.progress("revocation: %d sidecars on %d voters ready (%v to start; VmRSS %s in all; load average %s)", n, haNodes, time.Since(t0).Round(time.Millisecond), mib(r.revocationRSS), loadAvg())
	r.revocation, err = measureRevocations(ctx, b.spreadClients(procs, 1), sidecars, keys.Valid[:o.revocations], keys.IDs[:o.revocations], o.revokeProbe, o.revokePoll)
	if err != nil {
		r.revocationErr = err
		return
	}
	b.progress("revocation N=%d on %d voters, %d polled: %s", n, haNodes, r.revocation.Probed, revocationCell(r.revocation))
}

// clusterFailover kills the leader with SIGKILL and times the first 201
// through a surviving voter; beside it, the single admin killed the same
// way, started again at once on its data dir, and its first 201. It
// returns the single admin's new process.
func (b *bench) clusterFailover(ctx context.Context, procs []*childproc.Proc, single *childproc.Proc, singleDir string) *childproc.Proc {
	r := &b.res.ha
	var st struct {
		Leader string `json:"leader"`
	}
	ac := b.cl.adminClient(procs[0], 1)
	code, raw, err := ac.do(ctx, http.MethodGet, "/api/v1/cluster", nil)
	if err == nil && code == http.StatusOK {
		err = json.Unmarshal(raw, &st)
	} else if err == nil {
		err = fmt.Errorf("GET /api/v1/cluster answered %d", code)
	}
	var l int
	if _, serr := fmt.Sscanf(st.Leader, "n%d", &l); err == nil && (serr != nil || l < 0 || l >= len(procs)) {
		err = fmt.Errorf("the cluster status names no leader (%q)", st.Leader)
	}
	if err != nil {
		r.failoverErr = err
		return single
	}
	survivor := b.cl.adminClient(procs[(l+1)%len(procs)], 1)
	killed := time.Now()
	procs[l].Kill()
	if r.failover, err = firstWrite(ctx, survivor, killed); err != nil {
		r.failoverErr = err
	} else {
		b.progress("leader SIGKILL to the first acknowledged write: %v", r.failover.Round(time.Millisecond))
	}

	if single == nil {
		return nil
	}
	killed = time.Now()
	single.Kill()
	next, err := b.cl.startAdmin(ctx, single.Name, singleDir)
	if err != nil {
		r.failoverErr = errors.Join(r.failoverErr, fmt.Errorf("restart the single admin: %w", err))
		return nil
	}
	sc := b.cl.adminClient(next, 1)
	if r.failoverBase, err = firstWrite(ctx, sc, killed); err == nil {
		b.progress("one admin: SIGKILL, restart, first acknowledged write: %v", r.failoverBase.Round(time.Millisecond))
	}
	return next
}

// firstWrite creates keys every 10 ms until one is acknowledged and
// returns the time since from.
func firstWrite(ctx context.Context, ac *adminClient, from time.Time) (time.Duration, error) {
	deadline := from.Add(60 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		code, _, err := ac.do(ctx, http.MethodPost, "/api/v1/api-keys", createBody)
		if err == nil && code == http.StatusCreated {
			return time.Since(from), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, errors.New("no write acknowledged within 60 s")
}

func stopAll(procs []*childproc.Proc) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _, _ = p.Stop(10 * time.Second) })
	}
	wg.Wait()
}
