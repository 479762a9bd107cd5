package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthgrpc "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/keystore"
)

// Abuse against a real standalone process on loopback: oversized and
// numerous headers, slowloris, malformed HTTP/2 on the gRPC port, huge
// NDJSON lines and bodies, bad replication tokens. Every request gets a
// bounded answer, the process keeps serving, and its peak memory stays
// bounded.

// abuseDeadline bounds every exchange: an answer or a close must come well
// before it. It only bounds a broken run; nothing waits for it to pass.
const abuseDeadline = 30 * time.Second

type repeatReader struct{ chunk []byte }

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.chunk)
	}
	return n, nil
}

// filler is n bytes of c, streamed.
func filler(c byte, n int64) io.Reader {
	return io.LimitReader(repeatReader{bytes.Repeat([]byte{c}, 32<<10)}, n)
}

// rawExchange sends req over a new TCP connection and reads one HTTP/1.1
// response. The request is written from another goroutine: the server may
// answer and close before it has read all of it.
func rawExchange(t *testing.T, addr string, req io.Reader) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(abuseDeadline))
	go func() { _, _ = io.Copy(conn, req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no HTTP answer from %s: %v", addr, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, string(b)
}

// closedByServer waits until the server closes conn (EOF or reset),
// discarding whatever it sends first. It fails if conn is still open at
// the deadline.
func closedByServer(t *testing.T, conn net.Conn, what string, deadline time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(deadline))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: connection still open after %s", what, deadline)
	}
	return time.Since(start)
}

// peakRSS returns the process's peak resident set (VmHWM) in bytes, or
// false where /proc is not available.
func peakRSS(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func h2frame(typ, flags byte, stream uint32, payload []byte) []byte {
	n := len(payload)
	b := []byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(b, payload...)
}

const h2preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestAbuse(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	const token = "abuse-operator-token-0123456789abcdef"
	const replToken = "abuse-replication-token-0123456789"
	p := start(t, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--admin-token-file", writeFile(t, dir, "admin-token", token),
		"--replication-token-file", writeFile(t, dir, "replication-token", replToken),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	var live createdKey
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "live", "scopes": []string{"signals"}}, &live); code != 201 {
		t.Fatalf("create: %d", code)
	}
	httpAddr, adminAddr, grpcAddr := p.addrs["http"], p.addrs["admin"], p.addrs["grpc"]
	authHead := "GET /auth HTTP/1.1\r\nHost: abuse\r\nX-Forwarded-Method: GET\r\nX-Forwarded-Uri: " + faultPath + "\r\n"

	// The subtests run at once, so the slowloris wait overlaps the rest.
	t.Run("group", func(t *testing.T) {
		t.Run("slowloris", func(t *testing.T) {
			if testing.Short() {
				t.Skip("waits for the servers' 10s header timeouts")
			}
			t.Parallel()
			// The only test here bound to a server timeout. It stays
			// deterministic: it waits for the server's close, however long
			// it takes, and fails only if the connection is still open at
			// 30s, three times the 10s bound (ReadHeaderTimeout on the
			// admin port, the whole-request ReadTimeout on the HTTP port);
			// without that bound the admin connection would live for
			// ReadTimeout (60s), and nothing would close the HTTP one.
			type slow struct {
				name    string
				addr    string
				opening string
			}
			var conns []slow
			for _, a := range []struct{ name, addr string }{{"http", httpAddr}, {"admin", adminAddr}} {
				conns = append(conns,
					slow{a.name + " request line", a.addr, "GET /auth HTT"},
					slow{a.name + " headers", a.addr, authHead + "X-Api-Key: nex_"})
			}
			results := make(chan string, len(conns))
			for _, s := range conns {
				go func() {
					conn, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
					if err != nil {
						results <- fmt.Sprintf("%s: dial: %v", s.name, err)
						return
					}
					defer conn.Close()
					_, _ = io.WriteString(conn, s.opening)
					stop := make(chan struct{})
					go func() { // trickle one byte every 500ms: never a complete header
						tick := time.NewTicker(500 * time.Millisecond)
						defer tick.Stop()
						for {
							select {
							case <-stop:
								return
							case <-tick.C:
								if _, err := conn.Write([]byte("a")); err != nil {
									return
								}
							}
						}
					}()
					took := closedByServer(t, conn, s.name, abuseDeadline)
					close(stop)
					results <- fmt.Sprintf("%s: closed after %s", s.name, took.Round(100*time.Millisecond))
				}()
			}
			// Meanwhile the server answers everyone else.
			if code, _ := authCode(t, p, live.Key); code != 200 {
				t.Errorf("live key during slowloris: %d", code)
			}
			for range conns {
				t.Log(<-results)
			}
		})

		t.Run("1 MiB header", func(t *testing.T) {
			t.Parallel()
			for _, addr := range []string{httpAddr, adminAddr} {
				resp, body := rawExchange(t, addr, io.MultiReader(strings.NewReader(authHead+"X-Big: "), filler('a', 1<<20), strings.NewReader("\r\n\r\n")))
				if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Errorf("%s: %d %s; want 431", addr, resp.StatusCode, body)
				}
			}
			// Under the HTTP port's 64 KiB a long key is judged like any
			// other; over it, 431.
			resp, body := rawExchange(t, httpAddr, io.MultiReader(strings.NewReader(authHead+"X-Api-Key: nex_"), filler('a', 60<<10), strings.NewReader("\r\nConnection: close\r\n\r\n")))
			if resp.StatusCode != 401 || !strings.Contains(body, "Invalid API key") {
				t.Errorf("60 KiB key: %d %s; want 401 invalid key", resp.StatusCode, body)
			}
			resp, body = rawExchange(t, httpAddr, io.MultiReader(strings.NewReader(authHead+"X-Api-Key: nex_"), filler('a', 65<<10), strings.NewReader("\r\nConnection: close\r\n\r\n")))
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("65 KiB key: %d %s; want 431", resp.StatusCode, body)
			}
		})

		t.Run("many headers", func(t *testing.T) {
			t.Parallel()
			send := func(mod func(h http.Header)) (int, string) {
				req, _ := http.NewRequest("GET", p.url("http")+"/auth", nil)
				req.Header.Set("X-Forwarded-Method", "GET")
				req.Header.Set("X-Forwarded-Uri", faultPath)
				mod(req.Header)
				resp, err := faultClient.Do(req)
				if err != nil {
					t.Fatalf("many headers: %v", err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			// Up to the HTTP port's 64 KiB of headers, every one is read
			// and the key among them is judged; 5,000 are over it: 431.
			many := func(n int) func(h http.Header) {
				return func(h http.Header) {
					for i := 0; i < n; i++ {
						h.Set(fmt.Sprintf("X-Filler-%d", i), "v")
					}
				}
			}
			if code, body := send(func(h http.Header) { many(2000)(h); h.Set("X-Api-Key", live.Key) }); code != 200 {
				t.Errorf("live key among 2000 headers: %d %s", code, body)
			}
			if code, _ := send(many(2000)); code != 401 {
				t.Errorf("no key among 2000 headers: %d; want 401", code)
			}
			// Written from another goroutine: the server answers 431 and
			// closes before it has read them all.
			var lines strings.Builder
			for i := 0; i < 5000; i++ {
				fmt.Fprintf(&lines, "X-Filler-%d: v\r\n", i)
			}
			if resp, body := rawExchange(t, httpAddr, strings.NewReader(authHead+lines.String()+"X-Api-Key: "+live.Key+"\r\n\r\n")); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Errorf("5000 headers: %d %s; want 431", resp.StatusCode, body)
			}
			repeated := func(last string) func(h http.Header) {
				return func(h http.Header) {
					for i := 0; i < 999; i++ {
						h.Add("X-Api-Key", live.Key)
					}
					h.Add("X-Api-Key", last)
				}
			}
			if code, body := send(repeated(live.Key)); code != 200 {
				t.Errorf("the same key 1000 times: %d %s; want 200", code, body)
			}
			if code, _ := send(repeated(unknownKey(t))); code != 401 {
				t.Errorf("1000 keys, the last one different: %d; want 401", code)
			}
		})

		t.Run("malformed HTTP/2 on the gRPC port", func(t *testing.T) {
			t.Parallel()
			settings := h2frame(0x4, 0, 0, nil)
			cases := map[string][]byte{
				"HTTP/1.1 request":          []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
				"64 KiB of garbage":         bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 16<<10),
				"half a preface":            []byte(h2preface[:12] + "XXXXXXXXXXXX"),
				"SETTINGS of bad length":    append([]byte(h2preface), h2frame(0x4, 0, 0, []byte{1, 2, 3, 4, 5})...),
				"frame over the size limit": append([]byte(h2preface+string(settings)), 0xff, 0xff, 0xff, 0x0, 0x0, 0, 0, 0, 1),
				"garbage HPACK":             append([]byte(h2preface+string(settings)), h2frame(0x1, 0x5, 1, bytes.Repeat([]byte{0xff}, 64))...),
				"DATA on stream 0":          append([]byte(h2preface+string(settings)), h2frame(0x0, 0, 0, []byte("x"))...),
			}
			for name, b := range cases {
				conn, err := net.DialTimeout("tcp", grpcAddr, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				go func() { _, _ = conn.Write(b) }()
				closedByServer(t, conn, name, abuseDeadline)
				conn.Close()
			}
			// A real client is still served.
			conn := dial(t, grpcAddr)
			resp, err := envoyCheck(t, authv3.NewAuthorizationClient(conn), "GET", faultPath, map[string]string{"x-api-key": live.Key})
			if err != nil || resp.GetStatus().GetCode() != 0 {
				t.Errorf("Check after malformed HTTP/2: %v %v", resp.GetStatus(), err)
			}
			h, err := healthgrpc.NewHealthClient(conn).Check(context.Background(), &healthgrpc.HealthCheckRequest{})
			if err != nil || h.GetStatus() != healthgrpc.HealthCheckResponse_SERVING {
				t.Errorf("health after malformed HTTP/2: %v %v", h, err)
			}
		})

		t.Run("oversized gRPC Check", func(t *testing.T) {
			t.Parallel()
			ac := authv3.NewAuthorizationClient(dial(t, grpcAddr))
			resp, err := envoyCheck(t, ac, "GET", faultPath, map[string]string{"x-api-key": "nex_" + strings.Repeat("a", 1<<20)})
			if err != nil || resp.GetStatus().GetCode() != int32(codes.Unauthenticated) {
				t.Errorf("1 MiB key in Check: %v %v; want UNAUTHENTICATED", resp.GetStatus(), err)
			}
			_, err = envoyCheck(t, ac, "GET", faultPath, map[string]string{"x-filler": strings.Repeat("a", 5<<20)})
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("5 MiB Check: %v; want ResourceExhausted", err)
			}
		})

		t.Run("256 MiB NDJSON line on import", func(t *testing.T) {
			// Larger than the RSS bound below: holding the line would fail it.
			t.Parallel()
			raws := []string{unknownKey(t), unknownKey(t)}
			line := func(raw string) string {
				return fmt.Sprintf(`{"hash":"%s","prefix":"%s","name":"imported","scopes":["signals"]}`+"\n", keystore.HashKey(raw), keystore.DisplayPrefix(raw))
			}
			body := io.MultiReader(strings.NewReader(line(raws[0])+`{"hash":"`), filler('a', 256<<20), strings.NewReader("\"}\n"+line(raws[1])))
			req, _ := http.NewRequest("POST", p.url("admin")+"/api/v1/api-keys/import", body)
			req.Header.Set("Content-Type", "application/x-ndjson")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := faultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var res struct {
				Imported int `json:"imported"`
				Errors   []struct {
					Line  int    `json:"line"`
					Error string `json:"error"`
				} `json:"errors"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != 200 {
				t.Fatalf("import: %d %v", resp.StatusCode, err)
			}
			if res.Imported != 2 || len(res.Errors) != 1 || res.Errors[0].Line != 2 || !strings.Contains(res.Errors[0].Error, "longer than") {
				t.Errorf("import result %+v; want 2 imported and line 2 too long", res)
			}
			for _, raw := range raws {
				if code, _ := authCode(t, p, raw); code != 200 {
					t.Errorf("imported key around the huge line: %d", code)
				}
			}
		})

		t.Run("2 MiB JSON bodies", func(t *testing.T) {
			t.Parallel()
			big := strings.Repeat("a", 2<<20)
			if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": big, "scopes": []string{"signals"}}, nil); code != 413 {
				t.Errorf("create with a 2 MiB body: %d; want 413", code)
			}
			usage := map[string]any{"node": "n", "usage": []map[string]any{{"key_id": big, "count": 1}}}
			if code := httpJSON(t, "POST", p.url("admin")+"/replication/v1/usage", replToken, usage, nil); code != 413 {
				t.Errorf("usage report of 2 MiB: %d; want 413", code)
			}
		})

		t.Run("replication with a bad token", func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/replication/v1/watch?since=0", "/replication/v1/snapshot", "/replication/v1/usage"} {
				for _, auth := range []string{"", "Bearer wrong-token", "Basic " + replToken, "Bearer " + replToken + "x", "Bearer " + token} {
					req, _ := http.NewRequest("GET", p.url("admin")+path, nil)
					if auth != "" {
						req.Header.Set("Authorization", auth)
					}
					resp, err := faultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					if resp.StatusCode != 401 || bytes.Contains(b, []byte(`"type"`)) {
						t.Errorf("%s with %q: %d %.100s; want 401", path, auth, resp.StatusCode, b)
					}
				}
			}
		})
	})

	select {
	case err := <-p.done:
		t.Fatalf("process exited during the abuse: %v\n%s", err, p.logs.String())
	default:
	}
	for _, u := range []string{p.url("http") + "/healthz", p.url("http") + "/readyz", p.url("admin") + "/healthz"} {
		if code := httpJSON(t, "GET", u, "", nil, nil); code != 200 {
			t.Errorf("%s after the abuse: %d", u, code)
		}
	}
	if code, _ := authCode(t, p, live.Key); code != 200 {
		t.Errorf("live key after the abuse: %d", code)
	}
	if peak, ok := peakRSS(p.cmd.Process.Pid); ok {
		t.Logf("peak RSS %d MiB", peak>>20)
		if peak > 200<<20 {
			t.Errorf("peak RSS %d MiB; want below 200 MiB", peak>>20)
		}
	}
}

// TestHTTPMalformedRequests: requests the HTTP port's parser refuses get a
// 4xx and close, the key they carry appears in no log line even at debug
// level (where the server logs its connection errors), and the process
// keeps serving.
func TestHTTPMalformedRequests(t *testing.T) {
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	const token = "malformed-operator-token-0123456789ab"
	p := start(t, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--admin-token-file", writeFile(t, dir, "admin-token", token), "--log-level", "debug",
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	var live createdKey
	if code := httpJSON(t, "POST", p.url("admin")+"/api/v1/api-keys", token, map[string]any{"name": "live", "scopes": []string{"signals"}}, &live); code != 201 {
		t.Fatalf("create: %d", code)
	}
	head := "GET /auth HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + live.Key + "\r\nX-Forwarded-Uri: " + faultPath + "\r\n"
	for name, req := range map[string]string{
		"header line without a colon":          head + "Not A Header\r\n\r\n",
		"bad content length":                   head + "Content-Length: abc\r\n\r\n",
		"garbage request line":                 "\x00\x01\x02 " + live.Key + "\r\n\r\n",
		"key in a header line without a colon": head + "X-Api-Key " + live.Key + "\r\n\r\n",
	} {
		resp, body := rawExchange(t, p.addrs["http"], strings.NewReader(req))
		if resp.StatusCode < 400 || resp.StatusCode > 499 {
			t.Errorf("%s: %d %s; want a 4xx", name, resp.StatusCode, body)
		}
		if strings.Contains(body, live.Key) || strings.Contains(fmt.Sprint(resp.Header), live.Key) {
			t.Errorf("%s: the answer repeats the key", name)
		}
	}
	if code, _ := authCode(t, p, live.Key); code != 200 {
		t.Errorf("live key after malformed requests: %d", code)
	}
	p.stop(t, syscall.SIGTERM)
	logs := p.logs.String()
	if !strings.Contains(logs, `"http connection error"`) {
		t.Errorf("no debug line from the HTTP server; the leak check below would prove nothing:\n%s", logs)
	}
	if strings.Contains(logs, live.Key) || strings.Contains(logs, live.Key[8:]) {
		t.Errorf("the key reached the logs:\n%s", logs)
	}
}

// TestHTTPOutOfDescriptors: idle connections use up the process's file
// descriptors, so accepting on the HTTP port fails (EMFILE). The process
// keeps running, and serves again once those connections are gone.
func TestHTTPOutOfDescriptors(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc to count the child's descriptors")
	}
	dir := t.TempDir()
	pol := copyPolicy(t, dir, "nexgent.yaml")
	const limit = 64
	p := startLimited(t, "nofile", limit, "standalone", "--data-dir", filepath.Join(dir, "data"), "--policy", pol,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	fds := func() int {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
		return len(ents)
	}
	var conns []net.Conn
	for i := 0; i < 2*limit; i++ {
		c, err := net.DialTimeout("tcp", p.addrs["http"], 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// Every descriptor is in use and connections are still waiting in the
	// backlog: the next accept fails with EMFILE.
	eventually(t, "the child's descriptors used up", func() bool { return fds() >= limit })
	for _, c := range conns {
		c.Close()
	}
	if code, body := authCode(t, p, ""); code != 401 {
		t.Fatalf("after the descriptors came back: %d %s; want 401", code, body)
	}
	if code := p.stop(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d; want 0 (the process must not have stopped serving)\n%s", code, p.logs.String())
	}
}
