package childproc

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

// StartTimeout bounds how long a child may take to log "started".
const StartTimeout = 3 * time.Minute

// Proc is one child process. Its stderr carries JSON log lines; the
// {"message":"listening","server":...,"addr":...} lines give the ports it
// bound, and {"message":"started"} says it serves.
type Proc struct {
	Name    string
	Started time.Time // just before exec

	cmd   *exec.Cmd
	addrs map[string]string

	done    chan struct{} // closed when the process has exited
	waitErr error
	exitAt  time.Time

	mu       sync.Mutex
	tail     []string // last log lines, for error reports
	warnings int      // warn-level lines after start
	errs     int      // error-level (or worse, or plain-text) lines after start
	problems []string // the first warn/error lines after start
}

// registry is every child started, so StopAll can end them.
var registry struct {
	mu   sync.Mutex
	list []*Proc
}

// Start runs bin with args (and env added to this process's environment)
// and waits until it logs "started". Children get SIGKILL if this process
// dies (Pdeathsig) and run in their own process group, so a terminal's
// Ctrl-C reaches only the parent, which stops them in order. On failure the
// child is killed and the error carries its last log lines.
func Start(ctx context.Context, name, bin string, args, env []string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: name, cmd: cmd, addrs: map[string]string{}, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	registry.mu.Lock()
	registry.list = append(registry.list, p)
	registry.mu.Unlock()

	ready := make(chan struct{})
	go p.consume(stderr, ready)
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it started (%v); last log lines:\n%s", name, p.waitErr, p.LogTail())
	case <-time.After(StartTimeout):
		p.Kill()
		return nil, fmt.Errorf("%s did not log \"started\" within %v; last log lines:\n%s", name, StartTimeout, p.LogTail())
	case <-ctx.Done():
		p.Kill()
		return nil, ctx.Err()
	}
}

// consume reads the log stream. Until "started" it decodes every line;
// after that it only keeps a tail and counts warn/error lines (sidecars log
// every denial at info, and decoding those would load the machine).
func (p *Proc) consume(r io.Reader, ready chan struct{}) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	started := false
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		if len(p.tail) >= 30 {
			p.tail = p.tail[1:]
		}
		p.tail = append(p.tail, line)
		if started {
			switch {
			case strings.Contains(line, `"level":"warn"`):
				p.warnings++
				p.noteProblem(line)
			case strings.Contains(line, `"level":"error"`), strings.Contains(line, `"level":"fatal"`), strings.Contains(line, `"level":"panic"`),
				!strings.HasPrefix(line, "{"): // a Go panic prints plain text
				p.errs++
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
func (p *Proc) noteProblem(line string) {
	if len(p.problems) < 5 {
		if len(line) > 400 {
			line = line[:400] + "…"
		}
		p.problems = append(p.problems, line)
	}
}

// Problems returns the counts of warn and error lines logged after start
// and the first few of them.
func (p *Proc) Problems() (warnings, errs int, first []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.warnings, p.errs, append([]string(nil), p.problems...)
}

// LogTail returns the last log lines.
func (p *Proc) LogTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// Addr returns host:port of the named server ("grpc", "http", "admin").
func (p *Proc) Addr(server string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[server]
}

// URL returns http://host:port of the named server.
func (p *Proc) URL(server string) string { return "http://" + p.Addr(server) }

// Pid returns the child's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitErr is the error of the ended process (valid once Done is closed).
func (p *Proc) WaitErr() error { return p.waitErr }

// ExitAt is when the process ended (valid once Done is closed).
func (p *Proc) ExitAt() time.Time { return p.exitAt }

// ExitCode is the exit code once the process ended (-1: killed by a signal
// or still running).
func (p *Proc) ExitCode() int {
	if !p.Exited() || p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to timeout for the exit, then SIGKILLs.
// It returns how long the process took to exit after SIGTERM.
func (p *Proc) Stop(timeout time.Duration) (time.Duration, error) {
	if p.Exited() {
		return 0, nil
	}
	t0 := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(t0), nil
	case <-time.After(timeout):
		p.Kill()
		return time.Since(t0), fmt.Errorf("%s ignored SIGTERM for %v; killed", p.Name, timeout)
	}
}

// Kill SIGKILLs the process and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// StopAll ends every child still running: SIGTERM to all at once, SIGKILL
// to those still there after ten seconds.
func StopAll() {
	registry.mu.Lock()
	list := registry.list
	registry.list = nil
	registry.mu.Unlock()
	for _, p := range list {
		if !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(10 * time.Second)
	for _, p := range list {
		select {
		case <-p.done:
		case <-deadline:
			p.Kill()
		}
	}
}

// Mem is the resident memory of a process, from /proc/PID/status.
type Mem struct {
	RSS, Anon, File int64 // bytes: VmRSS, RssAnon, RssFile
}

// Memory reads the process's resident memory.
func (p *Proc) Memory() (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		return Mem{}, err
	}
	var m Mem
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
			return Mem{}, fmt.Errorf("parse %s: %w", line, err)
		}
		*dst = kb << 10
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc status")
	}
	return m, nil
}

// WaitReady polls GET url every 5 ms until it answers 200 and returns the
// time since the process was started.
func (p *Proc) WaitReady(ctx context.Context, url string, timeout time.Duration) (time.Duration, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(p.Started), nil
			}
		}
		if p.Exited() {
			return 0, fmt.Errorf("%s exited while waiting for %s (%v); last log lines:\n%s", p.Name, url, p.waitErr, p.LogTail())
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %s not 200 within %v; last log lines:\n%s", p.Name, url, timeout, p.LogTail())
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
