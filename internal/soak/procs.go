package main

import (
	"bufio"
	"context"
	"encoding/json"
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
const startTimeout = time.Minute

// proc is one extauthz child process. Its stderr carries JSON log lines;
// the "listening" lines give the ports it bound.
type proc struct {
	name  string
	cmd   *exec.Cmd
	addrs map[string]string

	done    chan struct{} // closed when the process has exited
	waitErr error
	exitAt  time.Time

	mu       sync.Mutex
	tail     []string // last log lines, for error reports
	warnings int      // log lines at warn level after start
	errors   int      // log lines at error level or above after start
	problems []string // the first warn/error lines after start
}

// startProc runs bin with args and waits until it logs {"message":"started"},
// collecting the address of each {"message":"listening"} line.
func startProc(ctx context.Context, name, bin string, args []string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "EXTAUTHZ_LOG_FORMAT=json")
	// Own process group: a terminal's Ctrl-C reaches only this program,
	// which stops the children in order. Pdeathsig covers a hard death.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, addrs: map[string]string{}, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	ready := make(chan struct{})
	go p.consume(stderr, ready)
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return p, fmt.Errorf("%s exited before it started (%v); last log lines:\n%s", name, p.waitErr, p.logTail())
	case <-time.After(startTimeout):
		return p, fmt.Errorf("%s did not log \"started\" within %v; last log lines:\n%s", name, startTimeout, p.logTail())
	case <-ctx.Done():
		return p, ctx.Err()
	}
}

// consume reads the log stream. Until "started" it decodes every line; after
// that it only keeps a tail and counts warn/error lines (sidecars log every
// denial at info, and decoding those would load the machine).
func (p *proc) consume(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	started := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.tail) >= 20 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		if started {
			switch {
			case strings.Contains(line, `"level":"warn"`):
				p.warnings++
				p.noteProblem(line)
			case strings.Contains(line, `"level":"error"`), strings.Contains(line, `"level":"fatal"`), strings.Contains(line, `"level":"panic"`):
				p.errors++
				p.noteProblem(line)
			case !strings.HasPrefix(line, "{"):
				// A Go panic or runtime error prints plain text.
				p.errors++
				p.noteProblem(line)
			}
		}
		p.mu.Unlock()
		if started {
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
			started = true
			close(ready)
		}
	}
	_, _ = io.Copy(io.Discard, r)
	p.waitErr = p.cmd.Wait()
	p.exitAt = time.Now()
	close(p.done)
}

// noteProblem keeps the first few warn/error lines; p.mu is held.
func (p *proc) noteProblem(line string) {
	if len(p.problems) < 5 {
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		p.problems = append(p.problems, line)
	}
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

// exitCode is the exit code after the process ended (-1: killed by a signal).
func (p *proc) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and waits up to timeout, then SIGKILLs. It returns how
// long the process took to exit.
func (p *proc) stop(timeout time.Duration) time.Duration {
	if p.exited() {
		return 0
	}
	t0 := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return time.Since(t0)
}

// memStatus is a process's resident memory split, from /proc/PID/status.
type memStatus struct{ anon, file int64 }

func (p *proc) memStatus() memStatus {
	var m memStatus
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "RssAnon":
			m.anon = kb << 10
		case "RssFile":
			m.file = kb << 10
		}
	}
	return m
}

// waitReady polls GET url until it answers 200.
func waitReady(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited while waiting for %s (%v); last log lines:\n%s", p.name, url, p.waitErr, p.logTail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not 200 within %v; last log lines:\n%s", p.name, url, timeout, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
