package replication

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
)

// memFront is front over an in-memory network (net.Pipe) instead of TCP,
// for tests inside a testing/synctest bubble: a goroutine waiting on a
// pipe is durably blocked, so the bubble's fake clock runs heartbeats,
// idle timeouts and backoffs in no real time, and the test waits for the
// follower to settle (synctest.Wait) instead of polling.
type memFront struct {
	srv     *http.Server
	ln      *pipeListener
	backend atomic.Pointer[http.Handler]

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

// pipeListener hands the server ends of in-memory connections to Serve.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func newMemFront(t testing.TB, h http.Handler) *memFront {
	t.Helper()
	f := &memFront{ln: &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}, conns: map[net.Conn]struct{}{}}
	f.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hp := f.backend.Load()
			if hp == nil {
				panic(http.ErrAbortHandler) // outage: no answer
			}
			(*hp).ServeHTTP(w, r)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			f.mu.Lock()
			defer f.mu.Unlock()
			switch s {
			case http.StateNew:
				f.conns[c] = struct{}{}
			case http.StateClosed, http.StateHijacked:
				delete(f.conns, c)
			}
		},
	}
	f.set(h)
	done := make(chan struct{})
	go func() { defer close(done); _ = f.srv.Serve(f.ln) }()
	t.Cleanup(func() {
		f.set(nil)
		_ = f.srv.Close()
		<-done
	})
	return f
}

func (f *memFront) url() string { return "http://admin.test" }

// client is the follower's HTTP client: it dials f in memory.
func (f *memFront) client() *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: f.ln.dial}}
}

// set switches the backend (nil = outage) and cuts open connections, as
// front.set does.
func (f *memFront) set(h http.Handler) {
	f.backend.Store(nil)
	f.mu.Lock()
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	if h != nil {
		f.backend.Store(&h)
	}
}
