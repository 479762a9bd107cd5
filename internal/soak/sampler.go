package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// sample is one scrape of a process's /metrics.
type sample struct {
	at         time.Duration // since the start of the run
	goroutines float64
	rss        float64 // process_resident_memory_bytes
	heapInuse  float64 // go_memstats_heap_inuse_bytes: spans of the Go heap in use
	heapGoal   float64 // go_memstats_next_gc_bytes: the next GC's target, (1 + GOGC/100) × the heap live after the last one
	anon, file int64   // RssAnon, RssFile from /proc
	revision   float64 // admin: extauthz_store_revision; sidecar: extauthz_replica_revision
	dbSize     int64   // size of the process's bbolt file
	err        error
}

// series is the samples of one process.
type series struct {
	name      string
	p         *childproc.Proc
	url       string // its /metrics
	revMetric string
	dbPath    string // its bbolt file (the admin's store, a sidecar's replica)

	mu      sync.Mutex
	samples []sample
}

func (s *series) add(x sample) {
	s.mu.Lock()
	s.samples = append(s.samples, x)
	s.mu.Unlock()
}

func (s *series) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// scrape reads the named metrics (without labels) from a Prometheus text page.
func scrape(ctx context.Context, client *http.Client, url string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		for _, n := range names {
			if name == n {
				// The value may be followed by a timestamp.
				val, _, _ = strings.Cut(val, " ")
				f, err := strconv.ParseFloat(val, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %q: %w", n, line, err)
				}
				out[n] = f
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, n := range names {
		if _, ok := out[n]; !ok {
			return nil, fmt.Errorf("%s: no %s", url, n)
		}
	}
	return out, nil
}

// take scrapes every process once.
func take(ctx context.Context, client *http.Client, all []*series, t0 time.Time) {
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at := time.Since(t0)
			m, err := scrape(ctx, client, s.url, "go_goroutines", "process_resident_memory_bytes",
				"go_memstats_heap_inuse_bytes", "go_memstats_next_gc_bytes", s.revMetric)
			x := sample{at: at, err: err}
			if err == nil {
				x.goroutines, x.rss, x.revision = m["go_goroutines"], m["process_resident_memory_bytes"], m[s.revMetric]
				x.heapInuse, x.heapGoal = m["go_memstats_heap_inuse_bytes"], m["go_memstats_next_gc_bytes"]
				if ms, err := s.p.Memory(); err == nil {
					x.anon, x.file = ms.Anon, ms.File
				}
				if fi, err := os.Stat(s.dbPath); err == nil {
					x.dbSize = fi.Size()
				}
			}
			s.add(x)
		}()
	}
	wg.Wait()
}

// baseline returns the first good sample at or after from, and the last
// good sample.
func (s *series) baseline(from time.Duration) (first, last sample, ok bool) {
	for _, x := range s.all() {
		if x.err != nil || x.at < from {
			continue
		}
		if !ok {
			first, ok = x, true
		}
		last = x
	}
	return first, last, ok
}

// smoothSamples is how many samples growthPer1000 averages at each end:
// one minute of them, more than one GC cycle of the Go heap's sawtooth.
const smoothSamples = 12

// growth is how much a process's memory grew per 1,000 changes (store
// revisions), in KiB.
type growth struct{ anon, file, heapGoal, dbSize float64 }

// growthPer1000 compares the mean of the first smoothSamples good samples at
// or after from with the mean of the last smoothSamples, per 1,000
// revisions between them. It fails when there are too few samples or no
// changes.
func (s *series) growthPer1000(from time.Duration) (growth, bool) {
	var xs []sample
	for _, x := range s.all() {
		if x.err == nil && x.at >= from {
			xs = append(xs, x)
		}
	}
	if len(xs) < 2*smoothSamples {
		return growth{}, false
	}
	mean := func(part []sample) (g growth, rev float64) {
		for _, x := range part {
			g.anon += float64(x.anon)
			g.file += float64(x.file)
			g.heapGoal += x.heapGoal
			g.dbSize += float64(x.dbSize)
			rev += x.revision
		}
		n := float64(len(part))
		return growth{g.anon / n, g.file / n, g.heapGoal / n, g.dbSize / n}, rev / n
	}
	a, revA := mean(xs[:smoothSamples])
	b, revB := mean(xs[len(xs)-smoothSamples:])
	if revB <= revA {
		return growth{}, false
	}
	k := (revB - revA) / 1000 * 1024
	return growth{(b.anon - a.anon) / k, (b.file - a.file) / k, (b.heapGoal - a.heapGoal) / k, (b.dbSize - a.dbSize) / k}, true
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
