package admin

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"

	minHS256SecretBytes = 32
	minRSABits          = 2048
	maxJWKSFileBytes    = 1 << 20
)

// jwtVerifier checks user access tokens. Only the algorithms the configured
// key material supports are accepted, and each algorithm is paired with its
// own key type, so "none" and algorithm confusion (an HS256 token "signed"
// with an RSA public key) are refused.
type jwtVerifier struct {
	secret   []byte
	jwksPath string
	issuer   string
	audience string
	leeway   time.Duration
	now      func() time.Time
	keys     atomic.Pointer[jwksKeys]
}

// jwksKeys is the usable content of a JWKS file.
type jwksKeys struct {
	byKID map[string]jwksKey
	byAlg map[string][]jwksKey
}

type jwksKey struct {
	kid string
	alg string // algRS256 or algES256
	key any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// newJWTVerifier returns nil, nil when o configures no key material.
func newJWTVerifier(o JWTOptions, now func() time.Time) (*jwtVerifier, error) {
	if len(o.HS256Secret) == 0 && o.JWKSFile == "" {
		return nil, nil
	}
	if len(o.HS256Secret) > 0 && len(o.HS256Secret) < minHS256SecretBytes {
		return nil, fmt.Errorf("admin: JWT HS256 secret must be at least %d bytes, got %d", minHS256SecretBytes, len(o.HS256Secret))
	}
	if o.Leeway < 0 {
		return nil, errors.New("admin: JWT leeway must not be negative")
	}
	v := &jwtVerifier{
		secret:   append([]byte(nil), o.HS256Secret...),
		jwksPath: o.JWKSFile,
		issuer:   o.Issuer,
		audience: o.Audience,
		leeway:   o.Leeway,
		now:      now,
	}
	v.keys.Store(&jwksKeys{})
	if o.JWKSFile != "" {
		if err := v.reload(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func (v *jwtVerifier) enabled() bool { return v != nil }

// reload re-reads the JWKS file; on error the previous keys stay.
func (v *jwtVerifier) reload() error {
	if v.jwksPath == "" {
		return nil
	}
	f, err := os.Open(v.jwksPath)
	if err != nil {
		return fmt.Errorf("admin: JWKS file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSFileBytes+1))
	if err != nil {
		return fmt.Errorf("admin: JWKS file %s: %w", v.jwksPath, err)
	}
	if len(data) > maxJWKSFileBytes {
		return fmt.Errorf("admin: JWKS file %s is larger than %d bytes", v.jwksPath, maxJWKSFileBytes)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("admin: JWKS file %s: %w", v.jwksPath, err)
	}
	v.keys.Store(keys)
	return nil
}

// parseJWKS keeps the RS256 and ES256 signature keys of a JWKS document.
// It fails when a usable-looking key is malformed, a kid repeats, or no
// usable key remains.
func parseJWKS(data []byte) (*jwksKeys, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	out := &jwksKeys{byKID: map[string]jwksKey{}, byAlg: map[string][]jwksKey{}}
	for i, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		var alg string
		switch m.KTY {
		case jwkset.KtyRSA:
			alg = algRS256
		case jwkset.KtyEC:
			if m.CRV != jwkset.CrvP256 {
				continue
			}
			alg = algES256
		default:
			continue
		}
		if m.ALG != "" && string(m.ALG) != alg {
			continue
		}
		// Only the public half is read, even if the file holds private parts.
		m.D, m.P, m.Q, m.DP, m.DQ, m.QI, m.OTH = "", "", "", "", "", "", nil
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, m.KID, err)
		}
		k := jwksKey{kid: m.KID, alg: alg}
		switch pub := jwk.Key().(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("key %d (kid %q): RSA key of %d bits, need at least %d", i, m.KID, pub.N.BitLen(), minRSABits)
			}
			k.key = pub
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				continue
			}
			k.key = pub
		default:
			continue
		}
		if k.kid != "" {
			if _, dup := out.byKID[k.kid]; dup {
				return nil, fmt.Errorf("kid %q appears more than once", k.kid)
			}
			out.byKID[k.kid] = k
		}
		out.byAlg[alg] = append(out.byAlg[alg], k)
	}
	if len(out.byAlg) == 0 {
		return nil, errors.New("no RS256 or ES256 signature key")
	}
	return out, nil
}

// methods lists the algorithms the configured material can verify.
func (v *jwtVerifier) methods(keys *jwksKeys) []string {
	var m []string
	if len(v.secret) > 0 {
		m = append(m, algHS256)
	}
	if len(keys.byAlg[algRS256]) > 0 {
		m = append(m, algRS256)
	}
	if len(keys.byAlg[algES256]) > 0 {
		m = append(m, algES256)
	}
	return m
}

// verify checks a compact JWT and returns its subject, a valid user id.
func (v *jwtVerifier) verify(token string) (string, error) {
	keys := v.keys.Load()
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(v.methods(keys)),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.now),
		jwt.WithLeeway(v.leeway),
		jwt.WithStrictDecoding(),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.NewParser(opts...).ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		return v.keyFor(keys, t)
	})
	if err != nil {
		return "", err
	}
	if err := checkID(claims.Subject); err != nil {
		return "", fmt.Errorf("sub: %w", err)
	}
	return claims.Subject, nil
}

// keyFor picks the verification key for t: the HS256 secret, or the JWKS
// key named by "kid" (or the only key of the algorithm when there is no
// kid). The key's own algorithm must match the token's.
func (v *jwtVerifier) keyFor(keys *jwksKeys, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if alg == algHS256 {
		if len(v.secret) == 0 {
			return nil, errors.New("HS256 not configured")
		}
		return v.secret, nil
	}
	if alg != algRS256 && alg != algES256 {
		return nil, fmt.Errorf("algorithm %q not accepted", alg)
	}
	kid, _ := t.Header["kid"].(string)
	if kid != "" {
		k, ok := keys.byKID[kid]
		if !ok || k.alg != alg {
			return nil, fmt.Errorf("no %s key with kid %q", alg, kid)
		}
		return k.key, nil
	}
	if cands := keys.byAlg[alg]; len(cands) == 1 {
		return cands[0].key, nil
	}
	return nil, errors.New("token has no kid and the key is ambiguous")
}
