package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/admin"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{
		"admin-url":               "EXTAUTHZ_ADMIN_URL",
		"jwt-hs256-secret-file":   "EXTAUTHZ_JWT_HS256_SECRET_FILE",
		"release-memory-interval": "EXTAUTHZ_RELEASE_MEMORY_INTERVAL",
	} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestServeFlagsEnvironment: each flag not on the command line takes its
// variable, a flag on the command line wins, an empty variable is unset.
func TestServeFlagsEnvironment(t *testing.T) {
	env := map[string]string{
		"EXTAUTHZ_POLICY":                 "/etc/extauthz/policy.yaml",
		"EXTAUTHZ_SHUTDOWN_TIMEOUT":       "3s",
		"EXTAUTHZ_LOG_LEVEL":              "debug",
		"EXTAUTHZ_CHANGELOG_RETENTION":    "7",
		"EXTAUTHZ_PUBLIC_PROJECT_CREATE":  "true",
		"EXTAUTHZ_DATA_DIR":               "",
		"EXTAUTHZ_ADMIN_TOKEN_FILE":       "/env/admin-token",
		"EXTAUTHZ_REPLICATION_TOKEN_FILE": "/env/replication-token",
		"EXTAUTHZ_ADMIN_RATE_LIMIT":       "5/1m",
		"EXTAUTHZ_QUOTA_ALLOWANCE":        "250",
	}
	var out bytes.Buffer
	c, err := parseServeFlags(roleStandalone, []string{"--log-level", "warn", "--admin-token-file", "/flag/admin-token"}, func(k string) string { return env[k] }, &out)
	if err != nil {
		t.Fatalf("parseServeFlags: %v\n%s", err, out.String())
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"policy (variable)", c.policyFile, "/etc/extauthz/policy.yaml"},
		{"shutdown-timeout (variable)", c.shutdownTimeout, 3 * time.Second},
		{"changelog-retention (variable)", c.retentionCount, 7},
		{"public-project-create (variable)", c.publicProjectCreate, true},
		{"replication-token-file (variable)", c.replicationTokenFile, "/env/replication-token"},
		{"log-level (flag wins)", c.logLevel, "warn"},
		{"admin-token-file (flag wins)", c.adminTokenFile, "/flag/admin-token"},
		{"data-dir (empty variable: default)", c.dataDir, "./data"},
		{"drain-delay (default)", c.drainDelay, time.Duration(0)},
		{"admin-rate-limit (variable)", c.principalRate, admin.Rate{N: 5, Per: time.Minute}},
		{"public-project-create-rate-limit (default)", c.publicCreateRate, admin.DefaultPublicCreateRate},
		{"operator-rate-limit (default: none)", c.operatorRate, admin.Rate{}},
		{"quota-allowance (variable)", c.quotaAllowance, int64(250)},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestServeFlagsBadEnvironment: every bad value is reported, naming its
// variable; one whose flag is on the command line is not read.
func TestServeFlagsBadEnvironment(t *testing.T) {
	env := map[string]string{
		"EXTAUTHZ_POLICY":                "p.yaml",
		"EXTAUTHZ_SHUTDOWN_TIMEOUT":      "forever",
		"EXTAUTHZ_CHANGELOG_RETENTION":   "many",
		"EXTAUTHZ_PUBLIC_PROJECT_CREATE": "sure",
		"EXTAUTHZ_HEARTBEAT":             "often",
		"EXTAUTHZ_ADMIN_RATE_LIMIT":      "lots",
	}
	_, err := parseServeFlags(roleStandalone, []string{"--heartbeat", "1s"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err == nil || errors.Is(err, errUsage) {
		t.Fatalf("err = %v; want the bad values", err)
	}
	if code := exitCode(err); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	for _, want := range []string{`"forever" for EXTAUTHZ_SHUTDOWN_TIMEOUT`, `"many" for EXTAUTHZ_CHANGELOG_RETENTION`, `"sure" for EXTAUTHZ_PUBLIC_PROJECT_CREATE`, `"lots" for EXTAUTHZ_ADMIN_RATE_LIMIT`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "EXTAUTHZ_HEARTBEAT") {
		t.Errorf("err %q names EXTAUTHZ_HEARTBEAT, whose flag was given", err)
	}
}

// TestServeFlagsHelp: --help and -h return flag.ErrHelp (exit 0) after
// printing every flag as --name with its default and variable, never a
// variable's value.
func TestServeFlagsHelp(t *testing.T) {
	env := map[string]string{"EXTAUTHZ_ADMIN_URL": "http://secret-admin:8181", "EXTAUTHZ_MAX_STALENESS": "9m"}
	for _, arg := range []string{"--help", "-h"} {
		var out bytes.Buffer
		_, err := parseServeFlags(roleSidecar, []string{arg}, func(k string) string { return env[k] }, &out)
		if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
			t.Fatalf("%s: err = %v; want flag.ErrHelp", arg, err)
		}
		help := out.String()
		for _, want := range []string{
			"Usage: extauthz sidecar [flags]",
			"  --admin-url string ",
			"(env EXTAUTHZ_ADMIN_URL)",
			"  --max-staleness duration ",
			"(default 0s, env EXTAUTHZ_MAX_STALENESS)",
			`(default "info", env EXTAUTHZ_LOG_LEVEL)`,
		} {
			if !strings.Contains(help, want) {
				t.Errorf("%s output lacks %q:\n%s", arg, want, help)
			}
		}
		if strings.Contains(help, "secret-admin") || strings.Contains(help, "9m") {
			t.Errorf("%s printed a variable's value:\n%s", arg, help)
		}
		if strings.Contains(help, "\n  -admin-url") {
			t.Errorf("%s spells a flag with one dash:\n%s", arg, help)
		}
	}
}

// TestCLIFlagsEnvironment: -o is --output, on the command line over
// EXTAUTHZ_OUTPUT; EXTAUTHZ_O is no variable; --admin-token-file on the
// command line wins over EXTAUTHZ_ADMIN_TOKEN.
func TestCLIFlagsEnvironment(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(" from-file \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		json      bool
		token     string
		wantError string
	}{
		{"variables", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": " from-env ", "EXTAUTHZ_OUTPUT": "json"}, nil, true, "from-env", ""},
		{"-o wins over EXTAUTHZ_OUTPUT", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "t", "EXTAUTHZ_OUTPUT": "json"}, []string{"-o", "table"}, false, "t", ""},
		{"EXTAUTHZ_O is not read", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "t", "EXTAUTHZ_O": "json"}, nil, false, "t", ""},
		{"--admin-token wins", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "env"}, []string{"--admin-token", "flag", "--admin-token-file", tokenFile}, false, "flag", ""},
		{"--admin-token-file wins over EXTAUTHZ_ADMIN_TOKEN", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "env"}, []string{"--admin-token-file", tokenFile}, false, "from-file", ""},
		{"EXTAUTHZ_ADMIN_TOKEN over EXTAUTHZ_ADMIN_TOKEN_FILE", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "env", "EXTAUTHZ_ADMIN_TOKEN_FILE": tokenFile}, nil, false, "env", ""},
		{"EXTAUTHZ_ADMIN_TOKEN_FILE", map[string]string{"EXTAUTHZ_ADMIN_TOKEN_FILE": tokenFile}, nil, false, "from-file", ""},
		{"bad EXTAUTHZ_OUTPUT", map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "t", "EXTAUTHZ_OUTPUT": "yaml"}, nil, false, "", `--output "yaml"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, pos, err := parseCLI("keys list", "", tc.args, func(k string) string { return tc.env[k] }, &bytes.Buffer{}, nil)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("err = %v; want it to contain %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(pos) != 0 || cli.json != tc.json || cli.token != tc.token {
				t.Errorf("pos %q, json %v, token %q; want [], %v, %q", pos, cli.json, cli.token, tc.json, tc.token)
			}
		})
	}
}

// TestCLIHelp: a subcommand's --help, even after its positional argument,
// returns flag.ErrHelp, which run passes up and main exits 0 for.
func TestCLIHelp(t *testing.T) {
	var out, errb bytes.Buffer
	env := map[string]string{"EXTAUTHZ_ADMIN_TOKEN": "never-printed"}
	err := run(context.Background(), []string{"keys", "rotate", "some-id", "--help"}, func(k string) string { return env[k] }, &out, &errb)
	if !errors.Is(err, flag.ErrHelp) || exitCode(err) != 0 {
		t.Fatalf("err = %v; want flag.ErrHelp", err)
	}
	help := errb.String()
	for _, want := range []string{"Usage: extauthz keys rotate [flags] ID", "-o, --output string", `(default "24h", env EXTAUTHZ_GRACE_PERIOD)`, "(env EXTAUTHZ_ADMIN_TOKEN)"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "never-printed") || strings.Contains(help, "EXTAUTHZ_O)") {
		t.Errorf("help:\n%s", help)
	}
}
