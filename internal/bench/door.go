package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/internal/childproc"
)

// The -door-e2e run: requests/s through nginx with auth_request, as
// examples/nginx/extauthz.conf ships it, beside the same nginx proxying to
// the same do-nothing upstream without auth, and the sidecar's CPU time
// per request. It is what a user of nginx feels of the HTTP door. The run
// that chose the door's HTTP stack (docs/design.md) measured a sidecar per
// stack at commit 8e782c0, which had both.

// nginxExample is the shipped configuration the run renders.
const nginxExample = "examples/nginx/extauthz.conf"

// doorE2E runs the -door-e2e measurement and prints its table.
func (b *bench) doorE2E(ctx context.Context) error {
	o := b.opts
	nginxBin, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr != nil {
			return fmt.Errorf("-door-e2e needs nginx (apt-get install nginx-light): %w", err)
		}
		nginxBin = "/usr/sbin/nginx"
	}
	keys, admin, err := b.smallAdmin(ctx)
	if err != nil {
		return err
	}
	upstream, err := childproc.Start(ctx, "upstream", b.self, []string{flagNoopHTTP, "127.0.0.1:0"}, nil)
	if err != nil {
		return err
	}
	sc, err := b.readySidecar(ctx, "sidecar", admin, []string{"--forward-headers", "nginx"}, nil)
	if err != nil {
		return err
	}
	arms := []*arm{{name: "nginx, no auth"}, {name: "nginx + extauthz", sidecar: sc}}
	stop, err := startBenchNginx(nginxBin, filepath.Join(b.root, "nginx"), upstream.Addr("http"), arms, o.nginxKeepalive)
	if err != nil {
		return err
	}
	defer stop()
	b.progress("door e2e: admin, sidecar, upstream and nginx up")

	err = b.runArms(ctx, "door e2e", arms, keys, func(a *arm, c int) (func(int) caller, func()) {
		cl := newProxyLoad(a.addr, c, keys.Valid, keys.Invalid, a.sidecar != nil)
		return func(int) caller { return cl.call }, cl.Close
	})
	if err != nil {
		return err
	}
	printArms(os.Stdout, b, "Through nginx auth_request", "vs no auth", arms)
	return nil
}

// procCPU is p's user+system CPU time so far (0 for no process). The
// sidecar's CPU per request is what the HTTP stack changes; unlike
// requests/s it barely depends on what else the machine runs.
func procCPU(p *childproc.Proc) time.Duration {
	if p == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parens.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticksPerSecond
}

// startBenchNginx runs one nginx with a server per arm: the shipped
// example with its addresses replaced for the sidecar arms, a plain
// proxy_pass for the no-auth arm. It sets each arm's addr.
//
// With keepalive, nginx keeps idle connections to each sidecar (an
// upstream block with keepalive, HTTP/1.1) instead of opening one per
// check as the example does.
func startBenchNginx(bin, dir, upstream string, arms []*arm, keepalive bool) (func(), error) {
	example, err := os.ReadFile(nginxExample)
	if err != nil {
		return nil, fmt.Errorf("%w (run from the repository root)", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var servers, upstreams strings.Builder
	for _, a := range arms {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		a.addr = ln.Addr().String()
		ln.Close()
		body := "location / { proxy_pass http://" + upstream + "; }"
		if a.sidecar != nil {
			body = strings.NewReplacer("127.0.0.1:9000", upstream, "127.0.0.1:9192", a.sidecar.Addr("http")).Replace(string(example))
			if keepalive {
				pool := "extauthz_" + strconv.Itoa(upstreams.Len())
				fmt.Fprintf(&upstreams, "    upstream %s { server %s; keepalive 64; }\n", pool, a.sidecar.Addr("http"))
				body = strings.Replace(body, "proxy_pass              http://"+a.sidecar.Addr("http")+"/auth;",
					"proxy_pass http://"+pool+"/auth; proxy_http_version 1.1; proxy_set_header Connection \"\";", 1)
			}
		}
		fmt.Fprintf(&servers, "    server {\n        listen %s;\n%s\n    }\n", a.addr, body)
	}
	conf := fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[3]s%[2]s}
`, dir, servers.String(), upstreams.String())
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	args := []string{"-p", dir, "-c", confPath, "-e", filepath.Join(dir, "error.log")}
	if out, err := exec.Command(bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx -t: %w\n%s", err, out)
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	for _, a := range arms {
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", a.addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				stop()
				log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
				return nil, fmt.Errorf("nginx not listening on %s: %s", a.addr, log)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return stop, nil
}

// proxyLoad sends the client's own request (GET checkPath with its key)
// to nginx over keep-alive connections.
type proxyLoad struct {
	client         *http.Client
	url            string
	valid, invalid []string
	check          bool
}

func newProxyLoad(addr string, concurrency int, valid, invalid []string, check bool) *proxyLoad {
	return &proxyLoad{client: keepAliveClient(concurrency), url: "http://" + addr + checkPath, valid: valid, invalid: invalid, check: check}
}

func (p *proxyLoad) Close() { p.client.CloseIdleConnections() }

func (p *proxyLoad) call(ctx context.Context, valid bool, idx int) (bool, error) {
	key, want := p.invalid[idx%len(p.invalid)], http.StatusUnauthorized
	if valid {
		key, want = p.valid[idx], http.StatusOK
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return false, err
	}
	req.Host = "api.nexgent.example"
	req.Header.Set("X-Api-Key", key)
	resp, err := p.client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return !p.check || resp.StatusCode == want, nil
}
