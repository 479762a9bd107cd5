package admin

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/extauthz/extauthz/policy"
)

// fuzzBodies seeds the body decoders: the documented request bodies and the
// interesting shapes of the validation table.
var fuzzBodies = []string{
	seedNexgentCreate,
	seedGraphCreateKey,
	seedGraphCreateExpiring,
	`{"name":"x","scopes":["signals"],"expiresAt":"2030-01-01T00:00:00Z","userId":"u","projectId":"p"}`,
	`{"gracePeriod":"24h"}`,
	`{"gracePeriod":"0s","expiresAt":"2030-01-01T00:00:00.123456789+02:00"}`,
	`{"active":false}`,
	`{"name":"x","scopes":["signals"]} {"name":"y"}`,
	`{"name":5,"scopes":[1]}`,
	`{"name":"x","colour":"red"}`,
	`[1,2]`,
	`null`,
	`{"name":"` + "\xff" + `"}`,
	`{"name":"x",,}`,
	`{"permissions":{"read":true},"label":"x"}`,
	``,
}

// FuzzDecodeBodies feeds arbitrary bytes to the strict JSON decoder and the
// validation of every JSON request type. Neither may panic; a decoding
// failure is always a 400, and whatever passes validation is well formed.
func FuzzDecodeBodies(f *testing.F) {
	for _, b := range fuzzBodies {
		f.Add([]byte(b))
	}
	pol := mustPolicy(f, nexgentPolicy)
	now := time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC)
	s := &Server{now: func() time.Time { return now }, policy: func() *policy.Policy { return pol }}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, dst := range []any{&createKeyRequest{}, &rotateKeyRequest{}, &createProjectRequest{}, &createProjectKeyRequest{}, &setUserRequest{}, &importLine{}} {
			if err := decodeJSON(data, dst, "request body"); err != nil {
				var rerr *requestError
				if !errors.As(err, &rerr) || rerr.status != http.StatusBadRequest || rerr.msg == "" {
					t.Fatalf("decodeJSON(%q) into %T = %v; want a 400 with a message", data, dst, err)
				}
				continue
			}
			req, ok := dst.(*createKeyRequest)
			if !ok {
				continue
			}
			for _, p := range []principal{{kind: kindOperator}, {kind: kindUser, userID: "u"}} {
				k, err := s.validateCreateKey(req, p, pol)
				if err != nil {
					var rerr *requestError
					if !errors.As(err, &rerr) || rerr.status/100 != 4 || rerr.msg == "" {
						t.Fatalf("validateCreateKey(%q) = %v; want a 4xx", data, err)
					}
					continue
				}
				if n := utf8.RuneCountInString(k.Name); n < 1 || n > MaxNameLength || !utf8.ValidString(k.Name) {
					t.Fatalf("accepted name %q", k.Name)
				}
				if len(k.Scopes) == 0 {
					t.Fatalf("accepted empty scopes from %q", data)
				}
				seen := map[string]bool{}
				for _, sc := range k.Scopes {
					if !pol.KnownScope(sc) || seen[sc] {
						t.Fatalf("accepted scopes %q", k.Scopes)
					}
					seen[sc] = true
				}
				if k.ExpiresAt != nil && !k.ExpiresAt.After(now) {
					t.Fatalf("accepted past expiry %v", k.ExpiresAt)
				}
				if p.kind == kindUser && k.UserID != "u" {
					t.Fatalf("a user created a key owned by %q", k.UserID)
				}
			}
		}
	})
}

// FuzzImportLine feeds arbitrary lines to the NDJSON import parser, and the
// same bytes as a stream to the bounded line reader.
func FuzzImportLine(f *testing.F) {
	valid := `{"hash":"` + hashOf("nex_"+strings.Repeat("A", 32)) + `","prefix":"nex_AAAA","name":"n","scopes":["signals"],"userId":"u","projectId":"p","createdAt":"2023-01-01T00:00:00Z","expiresAt":"2030-01-01T00:00:00Z"}`
	for _, s := range []string{
		valid,
		valid + "\n" + valid + "\r\n\n",
		`{"hash":"xyz","prefix":"nex_xxxx","scopes":["signals"]}`,
		`{"hash":"` + strings.Repeat("A", 64) + `","prefix":"p","scopes":["signals"]}`,
		`{"hash": "abc", "prefix":`,
		`{"hash":"` + hashOf("x") + `","prefix":"","scopes":[]}`,
		`{"hash":"` + hashOf("x") + `","prefix":"nex_ab cd","scopes":["signals"],"color":"red"}`,
		`[1,2,3]`,
	} {
		f.Add([]byte(s))
	}
	pol := mustPolicy(f, nexgentPolicy)
	f.Fuzz(func(t *testing.T, line []byte) {
		k, err := parseImportLine(line, pol)
		if err == nil {
			if k.ID == "" || k.Prefix == "" || len(k.Prefix) > MaxImportPrefixLength || len(k.Scopes) == 0 {
				t.Fatalf("parseImportLine(%q) accepted %+v", line, k)
			}
			for _, sc := range k.Scopes {
				if !pol.KnownScope(sc) {
					t.Fatalf("accepted unknown scope %q", sc)
				}
			}
		} else if err.Error() == "" {
			t.Fatalf("empty error for %q", line)
		}

		const max = 16
		lr := newImportReader(bytes.NewReader(line), max)
		lines := 0
		for {
			l, tooLong, err := nextImportLine(lr, max)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			lines++
			if lines > len(line)+1 {
				t.Fatalf("line reader does not terminate on %q", line)
			}
			if len(l) > max || (tooLong && l != nil) {
				t.Fatalf("line reader returned %q (tooLong %v) over the %d-byte limit", l, tooLong, max)
			}
		}
		if want := bytes.Count(line, []byte{'\n'}); lines < want || lines > want+1 {
			t.Fatalf("line reader returned %d lines for %d newlines in %q", lines, want, line)
		}
	})
}

// FuzzBearer feeds arbitrary Authorization values to the authentication
// entry point (bearer parsing, operator token, JWT verification, key
// lookup). It must not panic, and only the exact operator token or a JWT
// signed with the secret may authenticate.
func FuzzBearer(f *testing.F) {
	e := newEnv(f, envConfig{})
	valid := e.userToken("fuzzer")
	f.Add("Bearer " + valid)
	f.Add("Bearer " + testAdminToken)
	f.Add("bearer " + testAdminToken)
	f.Add("Bearer " + testAdminToken + "x")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer a.b.c")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Bearer nex_" + strings.Repeat("a", 32))
	f.Add("Bearer ")
	f.Add("")
	f.Fuzz(func(t *testing.T, header string) {
		r, _ := http.NewRequest("GET", "/api/v1/api-keys", nil)
		r.Header.Set("Authorization", header)
		p, err := e.srv.authenticate(r)
		if err != nil {
			var aerr *authError
			if !errors.As(err, &aerr) {
				t.Fatalf("store error for %q: %v", header, err)
			}
			if aerr.status != http.StatusUnauthorized && aerr.status != http.StatusForbidden {
				t.Fatalf("status %d for %q", aerr.status, header)
			}
			return
		}
		token, _ := bearerCredential(r.Header)
		switch p.kind {
		case kindOperator:
			if token != testAdminToken {
				t.Fatalf("%q authenticated as the operator", header)
			}
		case kindUser:
			if _, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return []byte(testHSSecret), nil }, jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation()); err != nil || p.userID == "" {
				t.Fatalf("%q authenticated as user %q without a valid signature", header, p.userID)
			}
		case kindKey:
			t.Fatalf("%q authenticated as a key, but the store holds none", header)
		}
	})
}
