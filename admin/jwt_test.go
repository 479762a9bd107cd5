package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// testJWKS holds generated signing keys and the JWKS file of their public
// halves.
type testJWKS struct {
	path string
	rsa  *rsa.PrivateKey
	ec   *ecdsa.PrivateKey
}

func newTestJWKS(t testing.TB) *testJWKS {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var set jwkset.JWKSMarshal
	for _, k := range []struct {
		pub any
		kid string
		alg jwkset.ALG
	}{{&rk.PublicKey, "rsa-1", jwkset.AlgRS256}, {&ek.PublicKey, "ec-1", jwkset.AlgES256}} {
		j, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: jwkset.UseSig}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, j.Marshal())
	}
	data, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return &testJWKS{path: path, rsa: rk, ec: ek}
}

func sign(t testing.TB, m jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func TestJWT(t *testing.T) {
	keys := newTestJWKS(t)
	// One admin accepts HS256 and the JWKS keys; the other only the JWKS,
	// where an HS256 token must never pass (algorithm confusion).
	both := newEnv(t, envConfig{jwt: &JWTOptions{HS256Secret: []byte(testHSSecret), JWKSFile: keys.path, Issuer: testIssuer, Audience: testAudience}})
	jwksOnly := newEnv(t, envConfig{jwt: &JWTOptions{JWKSFile: keys.path}})
	now := both.clock.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "alice", "iss": testIssuer, "aud": testAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	noneToken, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	hs := []byte(testHSSecret)

	tests := []struct {
		name  string
		env   *testEnv
		token string
		want  int
	}{
		{"HS256 valid", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(nil)), http.StatusOK},
		{"RS256 via JWKS", both, sign(t, jwt.SigningMethodRS256, "rsa-1", keys.rsa, claims(nil)), http.StatusOK},
		{"ES256 via JWKS", both, sign(t, jwt.SigningMethodES256, "ec-1", keys.ec, claims(nil)), http.StatusOK},
		{"RS256 without kid, one RSA key", jwksOnly, sign(t, jwt.SigningMethodRS256, "", keys.rsa, jwt.MapClaims{"sub": "alice", "exp": now.Add(time.Hour).Unix()}), http.StatusOK},
		{"expired", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Second).Unix() })), http.StatusUnauthorized},
		{"exp equal to now", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["exp"] = now.Unix() })), http.StatusUnauthorized},
		{"no exp", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { delete(c, "exp") })), http.StatusUnauthorized},
		{"not yet valid", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), http.StatusUnauthorized},
		{"wrong issuer", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.test" })), http.StatusUnauthorized},
		{"no issuer", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { delete(c, "iss") })), http.StatusUnauthorized},
		{"wrong audience", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["aud"] = "other-api" })), http.StatusUnauthorized},
		{"audience list containing ours", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["aud"] = []string{"x", testAudience} })), http.StatusOK},
		{"wrong HS256 secret", both, sign(t, jwt.SigningMethodHS256, "", []byte("another-secret-of-enough-length-0123456789"), claims(nil)), http.StatusUnauthorized},
		{"ES256 signed by another key", both, sign(t, jwt.SigningMethodES256, "ec-1", otherEC, claims(nil)), http.StatusUnauthorized},
		{"tampered payload", both, tamper(sign(t, jwt.SigningMethodHS256, "", hs, claims(nil))), http.StatusUnauthorized},
		{"alg none", both, noneToken, http.StatusUnauthorized},
		{"RS256 unknown kid", both, sign(t, jwt.SigningMethodRS256, "nope", keys.rsa, claims(nil)), http.StatusUnauthorized},
		{"RS256 token naming the EC kid", both, sign(t, jwt.SigningMethodRS256, "ec-1", keys.rsa, claims(nil)), http.StatusUnauthorized},
		{"RS384 not accepted", both, sign(t, jwt.SigningMethodRS384, "rsa-1", keys.rsa, claims(nil)), http.StatusUnauthorized},
		{"HS256 when only JWKS is configured", jwksOnly, sign(t, jwt.SigningMethodHS256, "", hs, claims(nil)), http.StatusUnauthorized},
		{"HS256 keyed with the RSA public key (alg confusion)", jwksOnly, sign(t, jwt.SigningMethodHS256, "rsa-1", pubPEM, claims(nil)), http.StatusUnauthorized},
		{"HS256 keyed with the RSA public key DER", jwksOnly, sign(t, jwt.SigningMethodHS256, "rsa-1", pubDER, claims(nil)), http.StatusUnauthorized},
		{"empty sub", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["sub"] = "" })), http.StatusUnauthorized},
		{"sub with control character", both, sign(t, jwt.SigningMethodHS256, "", hs, claims(func(c jwt.MapClaims) { c["sub"] = "a\nb" })), http.StatusUnauthorized},
		{"not a JWT", both, "abc.def.ghi", http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.env.request("GET", "/api/v1/api-keys", tc.token, nil)
			if r.status != tc.want {
				t.Fatalf("GET /api/v1/api-keys = %d %s; want %d", r.status, r.raw, tc.want)
			}
			if tc.want == http.StatusUnauthorized {
				if r.header.Get("WWW-Authenticate") != `Bearer realm="admin"` {
					t.Errorf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
				}
				r.errorMessage(t)
			}
		})
	}
}

// tamper flips the payload's subject without re-signing.
func tamper(tok string) string {
	p := jwt.NewParser()
	claims := jwt.MapClaims{}
	_, parts, _ := p.ParseUnverified(tok, claims)
	claims["sub"] = "mallory"
	b, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func TestJWTUserIsolation(t *testing.T) {
	e := newEnv(t, envConfig{})
	alice, bob := e.userToken("alice"), e.userToken("bob")
	ak := e.createNexKey(alice, map[string]any{"name": "alice's", "scopes": []string{"signals"}})
	e.clock.Add(time.Second) // list order is creation order
	bk := e.createNexKey(bob, map[string]any{"name": "bob's", "scopes": []string{"agents"}})
	aid := ak["id"].(string)

	for _, tc := range []struct {
		name, method, path string
		body               any
	}{
		{"get", "GET", "/api/v1/api-keys/" + aid, nil},
		{"delete", "DELETE", "/api/v1/api-keys/" + aid, nil},
		{"rotate", "POST", "/api/v1/api-keys/" + aid + "/rotate", `{"gracePeriod":"0s"}`},
	} {
		t.Run("bob "+tc.name+"s alice's key", func(t *testing.T) {
			r := e.expect(e.request(tc.method, tc.path, bob, tc.body), http.StatusNotFound, tc.name)
			unknown := e.request(tc.method, "/api/v1/api-keys/00000000-0000-0000-0000-000000000000"+tc.path[len("/api/v1/api-keys/")+len(aid):], bob, tc.body)
			if string(r.raw) != string(unknown.raw) || unknown.status != http.StatusNotFound {
				t.Errorf("another user's key answers %s, an unknown one %d %s; must be identical", r.raw, unknown.status, unknown.raw)
			}
		})
	}
	if !e.keyValid(ak["key"].(string)) {
		t.Errorf("alice's key was changed by bob")
	}
	// Each user lists only their own keys; the operator sees both and can filter.
	for _, tc := range []struct {
		name, token, query string
		want               []string
	}{
		{"alice", alice, "", []string{aid}},
		{"bob", bob, "", []string{bk["id"].(string)}},
		{"operator", testAdminToken, "", []string{aid, bk["id"].(string)}},
		{"operator filtered", testAdminToken, "?userId=bob", []string{bk["id"].(string)}},
	} {
		t.Run("list "+tc.name, func(t *testing.T) {
			list := e.expect(e.request("GET", "/api/v1/api-keys"+tc.query, tc.token, nil), http.StatusOK, "list").array(t)
			var got []string
			for _, it := range list {
				got = append(got, it.(map[string]any)["id"].(string))
			}
			if len(got) != len(tc.want) {
				t.Fatalf("ids = %v; want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("ids = %v; want %v", got, tc.want)
				}
			}
		})
	}
	e.expect(e.request("GET", "/api/v1/api-keys?userId=bob", alice, nil), http.StatusForbidden, "alice lists bob's keys")
	e.expect(e.request("POST", "/api/v1/api-keys", alice, `{"name":"x","scopes":["signals"],"userId":"bob"}`), http.StatusForbidden, "alice creates a key for bob")

	// Deactivated user: their JWT gets 403 and their keys stop working.
	e.expect(e.request("PUT", "/api/v1/users/alice", testAdminToken, `{"active":false}`), http.StatusOK, "disable alice")
	r := e.expect(e.request("GET", "/api/v1/api-keys", alice, nil), http.StatusForbidden, "deactivated user's JWT")
	if msg := r.errorMessage(t); msg != "user is deactivated" {
		t.Errorf("error = %q", msg)
	}
	if e.keyValid(ak["key"].(string)) {
		t.Errorf("deactivated user's key is still valid")
	}
	e.expect(e.request("POST", "/api/v1/api-keys", testAdminToken, `{"name":"x","scopes":["signals"],"userId":"alice"}`), http.StatusConflict, "operator creates a key for a deactivated user")
	e.expect(e.request("PUT", "/api/v1/users/alice", testAdminToken, `{"active":true}`), http.StatusOK, "enable alice")
	e.expect(e.request("GET", "/api/v1/api-keys", alice, nil), http.StatusOK, "reactivated user")
	if !e.keyValid(ak["key"].(string)) {
		t.Errorf("reactivated user's key is not valid")
	}
}

func TestJWTConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		opts JWTOptions
	}{
		{"short HS256 secret", JWTOptions{HS256Secret: []byte("short")}},
		{"missing JWKS file", JWTOptions{JWKSFile: filepath.Join(dir, "nope.json")}},
		{"JWKS not JSON", JWTOptions{JWKSFile: write("bad.json", "{")}},
		{"JWKS without usable keys", JWTOptions{JWKSFile: write("oct.json", `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`)}},
		{"JWKS with a broken RSA key", JWTOptions{JWKSFile: write("rsa.json", `{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}`)}},
		{"negative leeway", JWTOptions{HS256Secret: []byte(testHSSecret), Leeway: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v, err := newJWTVerifier(tc.opts, time.Now); err == nil {
				t.Errorf("newJWTVerifier(%s) = %v, nil; want an error", tc.name, v)
			}
		})
	}
}
