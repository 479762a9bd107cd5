package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartupWarnings: an admin accepting user JWTs without an audience
// or issuer check, and an admin port without TLS, say so at start.
func TestStartupWarnings(t *testing.T) {
	dir := t.TempDir()
	tok := writeFile(t, dir, "token", "startup-warning-token-0123456789")
	secret := writeFile(t, dir, "jwt-secret", "a-jwt-hs256-secret-of-at-least-32-bytes-0123456789")
	p := start(t, "admin", "--data-dir", filepath.Join(dir, "admin"), "--policy", copyPolicy(t, dir, "nexgent.yaml"),
		"--admin-token-file", tok, "--replication-token-file", tok, "--admin-addr", "127.0.0.1:0",
		"--jwt-hs256-secret-file", secret, "--jwt-issuer", "https://issuer.example")
	warned := func(what, substr string, unset ...string) {
		t.Helper()
		p.logs.waitFor(t, what, func(m map[string]any) bool {
			if m["level"] != "warn" || !strings.Contains(fmt.Sprint(m["message"]), substr) {
				return false
			}
			return len(unset) == 0 || fmt.Sprint(m["unset"]) == fmt.Sprint(unset)
		})
	}
	warned("the JWT audience warning", "without an audience or issuer check", "--jwt-audience")
	warned("the plain-HTTP admin warning", "serves plain HTTP")
}
