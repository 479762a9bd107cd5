package cluster

import (
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Members' requests travel over kept-open connections (reqConn): a
// mutual-TLS handshake per forwarded write or read index cost the leader
// more CPU than applying the write. A connection carries one request at a
// time, answered before the next is sent; a member keeps its idle ones to
// each other member for reuse.

const (
	// connIdle is how long a member reuses an idle connection. The
	// member it is to waits connIdleServe for the next request, well
	// beyond, so it never closes one that is about to be reused (a
	// command sent into a closed connection would have an unknown
	// outcome).
	connIdle      = 10 * time.Second
	connIdleServe = 6 * connIdle
	// connIdleMax bounds the idle connections kept per member.
	connIdleMax = 64
)

// memberConns are a member's kept-open connections: the idle ones it
// dialed (by address) and the ones it serves, all closed by Close.
type memberConns struct {
	mu     sync.Mutex
	idle   map[string][]idleConn
	served map[net.Conn]struct{}
	closed bool
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

// take returns an idle connection to addr that is young enough, or nil.
func (f *memberConns) take(addr string) net.Conn {
	f.mu.Lock()
	defer f.mu.Unlock()
	for l := f.idle[addr]; len(l) > 0; l = f.idle[addr] {
		ic := l[len(l)-1]
		f.idle[addr] = l[:len(l)-1]
		if time.Since(ic.since) < connIdle {
			return ic.c
		}
		ic.c.Close()
	}
	return nil
}

// put keeps c for reuse, or closes it.
func (f *memberConns) put(addr string, c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || len(f.idle[addr]) >= connIdleMax {
		c.Close()
		return
	}
	if f.idle == nil {
		f.idle = map[string][]idleConn{}
	}
	f.idle[addr] = append(f.idle[addr], idleConn{c: c, since: time.Now()})
}

// dropIdle closes the idle connections. A member that crashed and came
// back at the same address left its old connections looking idle here: a
// request sent into one would be answered by the peer's reset, its outcome
// unknown. A crash changes the leader, and at every leader change the
// node drops them.
func (f *memberConns) dropIdle() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.idle {
		for _, ic := range l {
			ic.c.Close()
		}
	}
	f.idle = nil
}

// idleTo counts the idle connections to addr.
func (f *memberConns) idleTo(addr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.idle[addr])
}

// serving tracks a served connection until done is called; false means
// the member is closing.
func (f *memberConns) serving(c net.Conn) (done func(), ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, false
	}
	if f.served == nil {
		f.served = map[net.Conn]struct{}{}
	}
	f.served[c] = struct{}{}
	return func() {
		f.mu.Lock()
		delete(f.served, c)
		f.mu.Unlock()
	}, true
}

// close closes every connection, idle or served.
func (f *memberConns) close() {
	f.dropIdle()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for c := range f.served {
		c.Close()
	}
	f.served = nil
}

// askRaw sends one request to the member id at addr over a kept-open
// connection and returns its answer.
func (n *Node) askRaw(id, addr string, kind byte, payload []byte, timeout time.Duration) ([]byte, error) {
	for {
		c, reused := n.conns.take(addr), true
		if c == nil {
			reused = false
			var err error
			if c, err = n.stream.Dial(raft.ServerAddress(addr), min(timeout, firstByteTimeout)); err != nil {
				return nil, unavailable(fmt.Errorf("cluster: reach the leader %s: %w", id, err), "")
			}
			c.SetDeadline(time.Now().Add(timeout))
			if _, err := c.Write([]byte{reqConn}); err != nil {
				c.Close()
				return nil, unavailable(fmt.Errorf("cluster: send to the leader %s: %w", id, err), "")
			}
		}
		c.SetDeadline(time.Now().Add(timeout))
		_, err := c.Write([]byte{kind})
		if err == nil {
			err = writeMsg(c, payload)
		}
		if err != nil {
			// The member cannot have read the whole request, so it did
			// not act on it. A reused connection may have been closed by
			// the member's restart: try a new one.
			c.Close()
			if reused {
				continue
			}
			return nil, unavailable(fmt.Errorf("cluster: send to the leader %s: %w", id, err), "")
		}
		ans, err := readMsg(c, maxAnswer)
		if err != nil {
			c.Close()
			if reused && (kind == reqStatus || kind == reqReadIndex) {
				continue // a question, safe to ask again; the member may have restarted
			}
			// Sent, but no answer: the write may have been applied.
			if kind == reqForward {
				return nil, unavailable(fmt.Errorf("%w: no answer from the leader %s: %v", ErrOutcomeUnknown, id, err), "")
			}
			return nil, unavailable(fmt.Errorf("cluster: no answer from the leader %s: %w", id, err), "")
		}
		n.conns.put(addr, c)
		return ans, nil
	}
}

// serveMember answers the requests another member sends over c until it
// stops (or stays idle longer than connIdleServe) or this member closes.
func (n *Node) serveMember(first byte, c net.Conn) {
	defer c.Close()
	if first != reqConn {
		return
	}
	done, ok := n.conns.serving(c)
	if !ok {
		return
	}
	defer done()
	var kind [1]byte
	for {
		c.SetDeadline(time.Now().Add(connIdleServe))
		if _, err := io.ReadFull(c, kind[:]); err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(2*n.cfg.ApplyTimeout + firstByteTimeout))
		payload, err := readMsg(c, MaxCommandSize)
		if err != nil {
			return
		}
		out, ok := n.answer(kind[0], payload)
		if !ok || writeMsg(c, out) != nil {
			return
		}
	}
}
