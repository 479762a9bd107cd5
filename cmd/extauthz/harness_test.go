package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binPath is the extauthz binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "extauthz-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "extauthz")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build extauthz:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuffer collects a process's log lines and lets tests wait for one.
type logBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []map[string]any
	cond  *sync.Cond
}

func newLogBuffer() *logBuffer {
	l := &logBuffer{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *logBuffer) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var m map[string]any
		_ = json.Unmarshal(line, &m)
		l.mu.Lock()
		l.buf.Write(line)
		l.buf.WriteByte('\n')
		if m != nil {
			l.lines = append(l.lines, m)
		}
		l.cond.Broadcast()
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.lines = append(l.lines, map[string]any{"message": "<eof>"})
	l.cond.Broadcast()
	l.mu.Unlock()
}

func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }

// waitFor blocks until a log line satisfies match or the process ends.
func (l *logBuffer) waitFor(t *testing.T, what string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.AfterFunc(60*time.Second, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer deadline.Stop()
	start := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 0; ; {
		for ; i < len(l.lines); i++ {
			if l.lines[i]["message"] == "<eof>" {
				t.Fatalf("process exited before %s; logs:\n%s", what, l.buf.String())
			}
			if match(l.lines[i]) {
				return l.lines[i]
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no %s within 60s; logs:\n%s", what, l.buf.String())
		}
		l.cond.Wait()
	}
}

// proc is a running extauthz process.
type proc struct {
	cmd   *exec.Cmd
	logs  *logBuffer
	addrs map[string]string // server name -> host:port
	done  chan error
}

// start runs the binary with args and waits until it logs "started".
// Ports are chosen at run time (127.0.0.1:0) and read from its logs.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProc(t, binPath, nil, args...)
}

// startProc runs exe with args (and env added) and waits until it logs
// "started", collecting the address of every "listening" line.
func startProc(t *testing.T, exe string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), "EXTAUTHZ_LOG_FORMAT=json"), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: newLogBuffer(), addrs: map[string]string{}, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait closes the pipe, so it may only run once every log line has
	// been read; otherwise the last lines (such as "drained") can be lost.
	go func() {
		p.logs.consume(stderr)
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	p.logs.waitFor(t, "startup", func(m map[string]any) bool {
		if m["message"] == "listening" {
			p.addrs[m["server"].(string)] = m["addr"].(string)
		}
		return m["message"] == "started"
	})
	return p
}

func (p *proc) url(server string) string { return "http://" + p.addrs[server] }

// stop sends sig and returns the exit code.
func (p *proc) stop(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		// SIGQUIT makes the Go runtime print every goroutine's stack.
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
		}
		logs := p.logs.String()
		t.Fatalf("process did not exit within 60s after %v; last logs and stacks:\n%s", sig, logs[max(0, len(logs)-60000):])
	}
	return p.cmd.ProcessState.ExitCode()
}

// writeFile writes content into dir/name and returns the path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyPolicy copies an example policy into dir so a test may change it.
func copyPolicy(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "policies", name))
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, "policy.yaml", string(b))
}

// httpJSON sends a JSON request and decodes the JSON answer into out.
func httpJSON(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	code, err := tryJSON(method, url, token, body, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return code
}

// tryJSON is httpJSON returning transport and decoding errors.
func tryJSON(method, url, token string, body any, out any) (int, error) {
	return clientJSON(http.DefaultClient, method, url, token, body, out)
}

// clientJSON is tryJSON through client.
func clientJSON(client *http.Client, method, url, token string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, url, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %q: %w", data, err)
		}
	}
	return resp.StatusCode, nil
}

// forwardAuth asks the HTTP front door as Traefik would.
func forwardAuth(t *testing.T, base, method, uri string, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/auth", nil)
	req.Header.Set("X-Forwarded-Method", method)
	req.Header.Set("X-Forwarded-Uri", uri)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// eventually polls cond until it holds, failing after a generous deadline.
// It waits on observed state; the deadline only bounds a broken run.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
