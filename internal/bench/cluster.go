package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/extauthz/extauthz/internal/childproc"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

// adminStoreFile is the admin's bbolt file under --data-dir
// (cmd/extauthz/serve.go).
const adminStoreFile = "extauthz.db"

// importChunk is how many keys go into one ImportKeys transaction: large,
// because the random key ids make every chunk touch most pages of the id
// index (1M keys load in ~40 s instead of ~60 s with 10,000).
const importChunk = 100_000

// changeLogKeep is the admin's default --changelog-retention; a prefilled
// store is compacted to it, as a long-running admin would be.
const changeLogKeep = 100_000

// cluster is the shared setup of every extauthz process of a run: one temp
// root, the token files and the policy.
type cluster struct {
	root           string
	bin            string
	policyFile     string
	format         policy.Format
	adminToken     string
	adminTokenFile string
	replTokenFile  string
}

func newCluster(root, bin, policySrc string) (*cluster, error) {
	pol, err := policy.Load(policySrc)
	if err != nil {
		return nil, fmt.Errorf("policy %s: %w", policySrc, err)
	}
	c := &cluster{root: root, bin: bin, format: pol.MintFormat()}
	b, err := os.ReadFile(policySrc)
	if err != nil {
		return nil, err
	}
	c.policyFile = filepath.Join(root, "policy.yaml")
	if err := os.WriteFile(c.policyFile, b, 0o600); err != nil {
		return nil, err
	}
	c.adminToken = randomHex(32)
	c.adminTokenFile = filepath.Join(root, "admin-token")
	c.replTokenFile = filepath.Join(root, "replication-token")
	if err := os.WriteFile(c.adminTokenFile, []byte(c.adminToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.replTokenFile, []byte(randomHex(32)+"\n"), 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mint returns a new raw key in the policy's minting format.
func (c *cluster) mint() string {
	k, err := keystore.Mint(c.format.Prefix, c.format.Alphabet(), c.format.Length)
	if err != nil {
		panic(err) // crypto/rand failed
	}
	return k
}

// keySet is what the load generator knows of a store's keys: the raw form
// of a sample (the store itself holds only hashes), with their ids, and
// well-formed keys that are not in the store.
type keySet struct {
	Valid   []string
	IDs     []string // IDs[i] is the id of Valid[i]
	Invalid []string
	Total   int // keys in the store
}

// prefillAdmin creates the admin's store file in dir before the admin
// starts, holding n keys with the "signals" scope, the fastest way to a
// large store: keys are minted, hashed and sorted by hash, then imported in
// chunks of importChunk with fsync off, synced once at the end. The raw
// form of a random sample of `sample` keys is kept for the load.
func (c *cluster) prefillAdmin(dir string, n, sample int) (*keySet, error) {
	st, err := keystore.Open(filepath.Join(dir, adminStoreFile), keystore.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()

	sample = min(sample, n)
	type entry struct {
		hash   keystore.Hash
		prefix string
		sample int32 // index into ks.Valid, or -1
	}
	ks := &keySet{Total: n, Valid: make([]string, sample), IDs: make([]string, sample)}
	entries := make([]entry, n)
	// Minting is crypto/rand plus SHA-256: spread it over the cores.
	var wg sync.WaitGroup
	workers := 4
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				raw := c.mint()
				e := entry{hash: keystore.HashKey(raw), prefix: keystore.DisplayPrefix(raw), sample: -1}
				if i < sample {
					ks.Valid[i] = raw
					e.sample = int32(i)
				}
				entries[i] = e
			}
		}()
	}
	wg.Wait()
	// Sorted by hash (the key bucket's order), every chunk appends to the
	// key bucket instead of touching pages all over. Ids are random UUIDs
	// like the admin's own, so the id index (and a sidecar loading the
	// snapshot) sees the insert order a real store produces.
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.hash[:], b.hash[:]) })
	created := time.Now().UTC()
	for lo := 0; lo < n; lo += importChunk {
		hi := min(lo+importChunk, n)
		chunk := make([]*keystore.Key, 0, hi-lo)
		for i := lo; i < hi; i++ {
			e := entries[i]
			id := uuid.NewString()
			if e.sample >= 0 {
				ks.IDs[e.sample] = id
			}
			chunk = append(chunk, &keystore.Key{
				ID: id, Hash: e.hash, Prefix: e.prefix, Name: fmt.Sprintf("bench-%d", i),
				Scopes: []string{"signals"}, CreatedAt: created,
			})
		}
		res, err := st.ImportKeys(chunk, "bench")
		if err != nil {
			return nil, fmt.Errorf("import keys %d..%d: %w", lo, hi, err)
		}
		if res.Imported != len(chunk) {
			return nil, fmt.Errorf("import keys %d..%d: only %d imported", lo, hi, res.Imported)
		}
	}
	if n > changeLogKeep {
		if _, err := st.Compact(changeLogKeep, 0); err != nil {
			return nil, fmt.Errorf("compact change log: %w", err)
		}
	}
	if err := st.Sync(); err != nil {
		return nil, err
	}
	for range max(sample/10, 100) {
		ks.Invalid = append(ks.Invalid, c.mint())
	}
	return ks, nil
}

// startAdmin runs `extauthz admin` over dir on a free loopback port.
func (c *cluster) startAdmin(ctx context.Context, name, dir string) (*childproc.Proc, error) {
	return childproc.Start(ctx, name, c.bin, c.adminArgs(dir), nil)
}

// adminArgs are the arguments of `extauthz admin` over dir.
func (c *cluster) adminArgs(dir string) []string {
	return []string{"admin",
		"--data-dir", dir,
		"--admin-addr", "127.0.0.1:0",
		"--admin-token-file", c.adminTokenFile,
		"--replication-token-file", c.replTokenFile,
		"--policy", c.policyFile,
		"--log-level", "info",
		"--log-format", "json",
	}
}

// startSidecar runs `extauthz sidecar` following admin, over dir, with
// free loopback ports, at the shipped log level (info: every denial is
// logged, which is part of the measured cost).
func (c *cluster) startSidecar(ctx context.Context, name, dir string, admin *childproc.Proc) (*childproc.Proc, error) {
	return childproc.Start(ctx, name, c.bin, []string{"sidecar",
		"--admin-url", admin.URL("admin"),
		"--replication-token-file", c.replTokenFile,
		"--policy", c.policyFile,
		"--data-dir", dir,
		"--grpc-addr", "127.0.0.1:0",
		"--http-addr", "127.0.0.1:0",
		"--node", name,
		"--log-level", "info",
		"--log-format", "json",
	}, nil)
}

// startReadySidecar starts a sidecar and waits for /readyz; it returns the
// time from exec to the first 200.
func (c *cluster) startReadySidecar(ctx context.Context, name, dir string, admin *childproc.Proc, timeout time.Duration) (*childproc.Proc, time.Duration, error) {
	p, err := c.startSidecar(ctx, name, dir, admin)
	if err != nil {
		return nil, 0, err
	}
	d, err := p.WaitReady(ctx, p.URL("http")+"/readyz", timeout)
	if err != nil {
		p.Kill()
		return nil, 0, err
	}
	return p, d, nil
}

// adminClient talks to the admin API with the operator token.
type adminClient struct {
	base, token string
	http        *http.Client
}

func (c *cluster) adminClient(admin *childproc.Proc, conns int) *adminClient {
	return &adminClient{base: admin.URL("admin"), token: c.adminToken, http: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2},
	}}
}

// do sends one request and returns the status and body.
func (a *adminClient) do(ctx context.Context, method, path string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}
