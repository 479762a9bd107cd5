package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a child may take to log "started".
const startTimeout = 3 * time.Minute

// proc is one child process (extauthz or a do-nothing server). Its stderr
// carries JSON log lines; the "listening" lines give the ports it bound.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time // just before exec
	addrs   map[string]string

	done    chan struct{} // closed when the process has exited
	waitErr error

	mu   sync.Mutex
	tail []string // last log lines, for error reports
}

// procs is every child started, so cleanup can end them all.
var procs struct {
	mu   sync.Mutex
	list []*proc
}

// startProc runs bin with args and waits until it logs {"message":"started"},
// collecting the address of each {"message":"listening"} line. Children get
// SIGKILL if the bench process dies (Pdeathsig), and cleanup ends them on
// every normal exit.
func startProc(ctx context.Context, name, bin string, args, env []string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, addrs: map[string]string{}, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	procs.mu.Lock()
	procs.list = append(procs.list, p)
	procs.mu.Unlock()

	ready := make(chan struct{})
	go p.consume(stderr, ready)
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it started (%v); last log lines:\n%s", name, p.waitErr, p.logTail())
	case <-time.After(startTimeout):
		p.kill()
		return nil, fmt.Errorf("%s did not log \"started\" within %v; last log lines:\n%s", name, startTimeout, p.logTail())
	case <-ctx.Done():
		p.kill()
		return nil, ctx.Err()
	}
}

// consume reads the log stream: JSON-decodes lines until "started", then
// only keeps a short tail (the sidecar logs every denial at info level, and
// decoding those would load the machine being measured).
func (p *proc) consume(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	isStarted := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.tail) >= 30 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		p.mu.Unlock()
		if isStarted {
			continue
		}
		var m struct {
			Message string `json:"message"`
			Server  string `json:"server"`
			Addr    string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m.Message {
		case "listening":
			p.mu.Lock()
			p.addrs[m.Server] = m.Addr
			p.mu.Unlock()
		case "started":
			isStarted = true
			close(ready)
		}
	}
	_, _ = io.Copy(io.Discard, r)
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

func (p *proc) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// addr returns host:port of the named server ("grpc", "http", "admin").
func (p *proc) addr(server string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[server]
}

func (p *proc) url(server string) string { return "http://" + p.addr(server) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout for a clean exit, then
// SIGKILLs. It returns how long the process took to exit after SIGTERM.
func (p *proc) stop(timeout time.Duration) (time.Duration, error) {
	if p.exited() {
		return 0, nil
	}
	t0 := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(t0), nil
	case <-time.After(timeout):
		p.kill()
		return time.Since(t0), fmt.Errorf("%s ignored SIGTERM for %v; killed", p.name, timeout)
	}
}

func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll ends every child still running: SIGTERM to all at once, SIGKILL
// to those still there after a grace period.
func stopAll() {
	procs.mu.Lock()
	list := procs.list
	procs.list = nil
	procs.mu.Unlock()
	for _, p := range list {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(10 * time.Second)
	for _, p := range list {
		select {
		case <-p.done:
		case <-deadline:
			p.kill()
		}
	}
}

// memInfo is the resident memory of a process, from /proc/PID/status.
type memInfo struct {
	RSS, Anon, File int64 // bytes: VmRSS, RssAnon, RssFile
}

func (p *proc) memory() (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return memInfo{}, err
	}
	var m memInfo
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmRSS":
			dst = &m.RSS
		case "RssAnon":
			dst = &m.Anon
		case "RssFile":
			dst = &m.File
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("parse %s: %w", line, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// waitReady polls GET url every 5 ms until it answers 200 and returns the
// time since the process was started.
func (p *proc) waitReady(ctx context.Context, url string, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.started), nil
			}
		}
		if p.exited() {
			return 0, fmt.Errorf("%s exited while waiting for %s (%v); last log lines:\n%s", p.name, url, p.waitErr, p.logTail())
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %s not 200 within %v; last log lines:\n%s", p.name, url, timeout, p.logTail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
