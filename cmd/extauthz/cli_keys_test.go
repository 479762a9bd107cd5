package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/admin"
	"github.com/extauthz/extauthz/keystore"
	"github.com/extauthz/extauthz/policy"
)

const cliTestToken = "cli-operator-token-0123456789abcdef"

// cliPolicy is the Nexgent key format and scopes (examples/policies/nexgent.yaml).
const cliPolicy = `
keys:
  formats: [{prefix: nex_, charset: alphanumeric, length: 32}]
scopes: [full_access, signals, agents]
superScope: full_access
unmatched: require-super
`

var nexKey = regexp.MustCompile(`nex_[A-Za-z0-9]{32}`)

// startAdmin runs a real admin API over a real store on loopback.
func startAdmin(t *testing.T) (*httptest.Server, *keystore.Store) {
	t.Helper()
	st, err := keystore.Open(filepath.Join(t.TempDir(), "admin.db"), keystore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol, err := policy.Parse([]byte(cliPolicy))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Options{Store: st, Policy: func() *policy.Policy { return pol }, AdminToken: cliTestToken})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return hs, st
}

// cliRun is one CLI invocation's outcome.
type cliRun struct {
	stdout, stderr string
	err            error
}

type cliHarness struct {
	t     *testing.T
	env   map[string]string
	stdin string
	runs  []cliRun
}

func (h *cliHarness) getenv(k string) string { return h.env[k] }

func (h *cliHarness) keys(args ...string) cliRun {
	h.t.Helper()
	var out, errb bytes.Buffer
	err := runKeysIO(context.Background(), args, h.getenv, strings.NewReader(h.stdin), &out, &errb)
	r := cliRun{out.String(), errb.String(), err}
	h.runs = append(h.runs, r)
	return r
}

func (h *cliHarness) users(args ...string) cliRun {
	h.t.Helper()
	var out, errb bytes.Buffer
	err := runUsers(context.Background(), args, h.getenv, &out, &errb)
	r := cliRun{out.String(), errb.String(), err}
	h.runs = append(h.runs, r)
	return r
}

func (h *cliHarness) ok(r cliRun, what string) cliRun {
	h.t.Helper()
	if r.err != nil {
		h.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", what, r.err, r.stdout, r.stderr)
	}
	return r
}

func TestCLIKeys(t *testing.T) {
	hs, st := startAdmin(t)
	h := &cliHarness{t: t, env: map[string]string{"EXTAUTHZ_ADMIN_URL": hs.URL, "EXTAUTHZ_ADMIN_TOKEN": cliTestToken}}
	t.Cleanup(func() {
		for i, r := range h.runs {
			msg := ""
			if r.err != nil {
				msg = r.err.Error()
			}
			if strings.Contains(r.stdout+r.stderr+msg, cliTestToken) {
				t.Errorf("run %d printed the operator token", i)
			}
		}
	})

	// create, table output: the key is shown once, with a warning on stderr.
	r := h.ok(h.keys("create", "--name", "Trading Bot", "--scopes", "signals, agents", "--user-id", "u1"), "create")
	raw := nexKey.FindString(r.stdout)
	if raw == "" || !regexp.MustCompile(`(?m)^KEY\s+nex_`).MatchString(r.stdout) {
		t.Fatalf("create output has no key:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "shown only once") {
		t.Errorf("create stderr = %q; want the shown-once warning", r.stderr)
	}
	id := regexp.MustCompile(`(?m)^ID\s+(\S+)`).FindStringSubmatch(r.stdout)[1]
	if res, err := st.Lookup(keystore.HashKey(raw)); err != nil || res.Key.ID != id || res.Key.UserID != "u1" {
		t.Fatalf("created key not in the store: %+v %v", res.Key, err)
	}

	// create, JSON output.
	r = h.ok(h.keys("create", "-o", "json", "--name", "second", "--scopes", "full_access"), "create -o json")
	var second map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &second); err != nil {
		t.Fatalf("create -o json output is not JSON: %v\n%s", err, r.stdout)
	}
	if !nexKey.MatchString(second["key"].(string)) || second["name"] != "second" {
		t.Errorf("create -o json = %v", second)
	}

	// list: table, then JSON; never a key.
	r = h.ok(h.keys("list"), "list")
	if !strings.HasPrefix(r.stdout, "ID") || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, second["id"].(string)) || nexKey.MatchString(r.stdout) {
		t.Errorf("list table:\n%s", r.stdout)
	}
	if lines := strings.Count(strings.TrimSpace(r.stdout), "\n"); lines != 2 {
		t.Errorf("list table has %d rows; want header + 2", lines+1)
	}
	r = h.ok(h.keys("list", "--output", "json", "--user-id", "u1"), "list json")
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 1 || listed[0]["id"] != id {
		t.Errorf("list -o json --user-id u1 = %s (%v)", r.stdout, err)
	}

	// get, with flags after the argument.
	r = h.ok(h.keys("get", id, "-o", "table"), "get")
	if !strings.Contains(r.stdout, "Trading Bot") || !strings.Contains(r.stdout, "LAST USED") {
		t.Errorf("get:\n%s", r.stdout)
	}

	// rotate with the flag after the id: a new key, the old one revoked.
	r = h.ok(h.keys("rotate", second["id"].(string), "--grace-period", "0s"), "rotate")
	if nexKey.FindString(r.stdout) == "" || nexKey.FindString(r.stdout) == second["key"] {
		t.Errorf("rotate output:\n%s", r.stdout)
	}
	if res, _ := st.Lookup(keystore.HashKey(second["key"].(string))); res.Key == nil || !res.Key.Revoked() {
		t.Errorf("old key not revoked by rotate --grace-period 0s")
	}

	// revoke, then the server's message for a second revoke.
	r = h.ok(h.keys("revoke", id), "revoke")
	if strings.TrimSpace(r.stdout) != "revoked "+id {
		t.Errorf("revoke output = %q", r.stdout)
	}
	r = h.keys("revoke", id)
	if r.err == nil || r.err.Error() != "API key not found" {
		t.Errorf("second revoke error = %v; want the server's message \"API key not found\"", r.err)
	}
	r = h.ok(h.keys("list", "-o", "json"), "list after revoke")
	if strings.Contains(r.stdout, id) {
		t.Errorf("revoked key still listed: %s", r.stdout)
	}

	// import from stdin: one good line, one bad; the bad line is an error.
	sum := sha256.Sum256([]byte("nex_" + strings.Repeat("Q", 32)))
	h.stdin = `{"hash":"` + hex.EncodeToString(sum[:]) + `","prefix":"nex_QQQQ","scopes":["signals"]}` + "\nnot json\n"
	r = h.keys("import", "-")
	if r.err == nil || !strings.Contains(r.err.Error(), "1 lines were not imported") {
		t.Errorf("import error = %v; want the count of bad lines", r.err)
	}
	if !regexp.MustCompile(`IMPORTED\s+1`).MatchString(r.stdout) || !strings.Contains(r.stdout, "line must be a JSON object") {
		t.Errorf("import output:\n%s", r.stdout)
	}
	file := filepath.Join(t.TempDir(), "keys.ndjson")
	os.WriteFile(file, []byte(strings.SplitAfter(h.stdin, "\n")[0]), 0o600)
	r = h.ok(h.keys("import", file, "-o", "json"), "import file")
	if !strings.Contains(r.stdout, `"skipped": 1`) {
		t.Errorf("re-import output: %s", r.stdout)
	}

	// users disable/enable.
	r = h.ok(h.users("disable", "u1"), "users disable")
	if !regexp.MustCompile(`u1\s+false`).MatchString(r.stdout) {
		t.Errorf("users disable output:\n%s", r.stdout)
	}
	h.ok(h.users("enable", "u1", "-o", "json"), "users enable")
}

func TestCLIFlagsAndErrors(t *testing.T) {
	hs, _ := startAdmin(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("\n  "+cliTestToken+"  \n"), 0o600)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte("wrong-token"), 0o600)

	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string // "" = success; "usage" = errUsage
		stdout  []string
	}{
		{"token file flag", nil, []string{"list", "--admin-url", hs.URL, "--admin-token-file", tokenFile}, "", []string{"ID"}},
		{"token file variable", map[string]string{"EXTAUTHZ_ADMIN_TOKEN_FILE": tokenFile, "EXTAUTHZ_ADMIN_URL": hs.URL}, []string{"list"}, "", nil},
		{"flag wins over variable", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "wrong", "EXTAUTHZ_ADMIN_URL": hs.URL}, []string{"list", "--admin-token-file", tokenFile}, "", nil},
		{"output variable", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken, "EXTAUTHZ_ADMIN_URL": hs.URL, "EXTAUTHZ_OUTPUT": "json"}, []string{"list"}, "", []string{"[]"}},
		{"wrong token shows the server's message", map[string]string{"EXTAUTHZ_ADMIN_URL": hs.URL}, []string{"list", "--admin-token-file", wrongFile}, "invalid or expired credentials", nil},
		{"server validation message", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken, "EXTAUTHZ_ADMIN_URL": hs.URL}, []string{"create", "--name", "x", "--scopes", "moon"}, `scopes: unknown scope "moon"`, nil},
		{"no token", map[string]string{"EXTAUTHZ_ADMIN_URL": hs.URL}, []string{"list"}, "no operator token", nil},
		{"bad output", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken}, []string{"list", "-o", "yaml"}, "--output", nil},
		{"bad URL", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken}, []string{"list", "--admin-url", "ftp://x"}, "--admin-url", nil},
		{"unknown flag", nil, []string{"list", "--colour"}, "usage", nil},
		{"unknown command", nil, []string{"frobnicate"}, "usage", nil},
		{"no command", nil, nil, "usage", nil},
		{"get without id", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken}, []string{"get"}, "usage", nil},
		{"help", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken}, []string{"--help"}, "", []string{"create", "import"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := runKeysIO(context.Background(), tc.args, func(k string) string { return tc.env[k] }, strings.NewReader(""), &out, &errb)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("err = %v; stderr %s", err, errb.String())
			case tc.wantErr == "usage" && !errors.Is(err, errUsage):
				t.Fatalf("err = %v; want errUsage", err)
			case tc.wantErr != "" && tc.wantErr != "usage" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v; want it to contain %q", err, tc.wantErr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout %q lacks %q", out.String(), s)
				}
			}
			if strings.Contains(out.String()+errb.String(), cliTestToken) {
				t.Errorf("token printed")
			}
		})
	}

	// --help of a subcommand lists its flags and defaults, never the token.
	var out, errb bytes.Buffer
	env := map[string]string{"EXTAUTHZ_ADMIN_TOKEN": cliTestToken}
	if err := runKeysIO(context.Background(), []string{"rotate", "--help"}, func(k string) string { return env[k] }, nil, &out, &errb); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("rotate --help: %v; want flag.ErrHelp", err)
	}
	help := out.String() + errb.String()
	for _, s := range []string{"-admin-url", "http://127.0.0.1:8181", "-admin-token-file", "-grace-period", `default "24h"`, "-output", `default "table"`} {
		if !strings.Contains(help, s) {
			t.Errorf("rotate --help lacks %q:\n%s", s, help)
		}
	}
	if strings.Contains(help, cliTestToken) {
		t.Errorf("--help printed the token")
	}
}

// TestCLIAdminURLList: --admin-url may list an admin cluster's members;
// the CLI uses the first that can be connected to, sends a write once,
// and reports every member when none can.
func TestCLIAdminURLList(t *testing.T) {
	hs, st := startAdmin(t)
	dead := "http://" + freeAddr(t) // nothing listens there
	h := &cliHarness{t: t, env: map[string]string{"EXTAUTHZ_ADMIN_URL": dead + ", " + hs.URL + "/", "EXTAUTHZ_ADMIN_TOKEN": cliTestToken}}
	h.ok(h.keys("create", "--name", "through the list", "--scopes", "signals"), "create through a list whose first member is down")
	r := h.ok(h.keys("list", "-o", "json"), "list")
	var keys []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 {
		t.Fatalf("list: %v %s; want the one key", err, r.stdout)
	}
	if n := st.Revision(); n != 1 {
		t.Fatalf("store at revision %d after one create, want 1", n)
	}
	h.env["EXTAUTHZ_ADMIN_URL"] = dead + "," + dead
	if r := h.keys("list"); r.err == nil || strings.Count(r.err.Error(), "connection refused") != 2 {
		t.Fatalf("list with every member down: %v, want both refusals", r.err)
	}
}
