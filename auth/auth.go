// Package auth mints and verifies the tokens that devices present: JWTs,
// and opaque access tokens (opaque.go) that the store keeps by their hash
// and that can be revoked.
//
// A device token names its user in "sub", may grant groups in "groups", and
// must carry "exp". The business backend signs tokens with a shared secret
// (HS256) or with its own private key (RS256 or ES256); the server holds the
// secret or the public key. Only the algorithms configured are accepted, so a
// token cannot choose a weaker one ("none", or HS256 keyed by a public key).
package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// Limits and defaults.
const (
	// DefaultLeeway absorbs clock skew between the token's issuer and us.
	DefaultLeeway = 30 * time.Second
	// MaxTokenBytes bounds the work one presented token can cause.
	MaxTokenBytes = 8 << 10
	// MaxGroups bounds the groups one token may grant.
	MaxGroups = 256
	// MinSecretBytes is the shortest HS256 secret accepted.
	MinSecretBytes = 16
)

// Claims is what a device token says about its holder. It is the root
// package's type, so that the hub, which takes claims from any verifier,
// need not import this package.
type Claims = syncpoint.Claims

// tokenClaims is the JSON shape of a token's payload.
type tokenClaims struct {
	Groups []string `json:"groups,omitempty"`
	jwt.RegisteredClaims
}

// Mint returns an HS256 JWT for c, issued at now. It is meant for
// development and tests; production backends mint their own.
func Mint(secret []byte, c Claims, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("mint: empty secret")
	}
	if err := syncpoint.ValidateID("user", c.User); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if err := validateGroups(c.Groups); err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	if c.ExpiresAt.IsZero() {
		return "", errors.New("mint: no expiry given")
	}
	tc := tokenClaims{
		Groups: c.Groups,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.User,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(c.ExpiresAt),
		},
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return s, nil
}

// VerifierConfig says which tokens a Verifier accepts. At least one of
// Secret and PublicKeyPEM must be set; with both, tokens of either kind pass.
type VerifierConfig struct {
	Secret       []byte        // HS256
	PublicKeyPEM []byte        // an RSA key (RS256) or a P-256 key (ES256): PKIX, PKCS#1 or a certificate
	Clock        clock.Clock   // nil: clock.Real{}
	Leeway       time.Duration // 0: DefaultLeeway; negative: none
}

// Verifier checks device tokens. It is safe for concurrent use.
type Verifier struct {
	secret    []byte
	publicKey any    // *rsa.PublicKey or *ecdsa.PublicKey
	publicAlg string // the alg that goes with publicKey
	methods   []string
	clock     clock.Clock
	leeway    time.Duration
	parser    *jwt.Parser
}

// NewVerifier returns a verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	v := &Verifier{clock: cfg.Clock, leeway: cfg.Leeway}
	if v.clock == nil {
		v.clock = clock.Real{}
	}
	if v.leeway == 0 {
		v.leeway = DefaultLeeway
	} else if v.leeway < 0 {
		v.leeway = 0
	}
	if len(cfg.Secret) == 0 && len(cfg.PublicKeyPEM) == 0 {
		return nil, errors.New("new verifier: neither a secret nor a public key is configured")
	}
	if len(cfg.Secret) > 0 {
		if len(cfg.Secret) < MinSecretBytes {
			return nil, fmt.Errorf("new verifier: the secret is %d bytes; want at least %d", len(cfg.Secret), MinSecretBytes)
		}
		v.secret = slices.Clone(cfg.Secret)
		v.methods = append(v.methods, jwt.SigningMethodHS256.Alg())
	}
	if len(cfg.PublicKeyPEM) > 0 {
		key, alg, err := parsePublicKey(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("new verifier: %w", err)
		}
		v.publicKey, v.publicAlg = key, alg
		v.methods = append(v.methods, alg)
	}
	// Claims are checked by hand in Verify, so that each failure gets its
	// own message; the parser checks only the encoding, alg and signature.
	v.parser = jwt.NewParser(jwt.WithValidMethods(v.methods), jwt.WithoutClaimsValidation())
	return v, nil
}

// parsePublicKey reads the first key in a PEM block and says which alg it
// verifies.
func parsePublicKey(data []byte) (any, string, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", errors.New("public key: no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			key = cert.PublicKey
		}
	default:
		return nil, "", fmt.Errorf("public key: PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
	}
	if err != nil {
		return nil, "", fmt.Errorf("public key: %w", err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, "", fmt.Errorf("public key: RSA key has %d bits; want at least 2048", k.N.BitLen())
		}
		return k, jwt.SigningMethodRS256.Alg(), nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, "", fmt.Errorf("public key: ECDSA curve %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		return k, jwt.SigningMethodES256.Alg(), nil
	}
	return nil, "", fmt.Errorf("public key: %T is not supported; want RSA or ECDSA P-256", key)
}

// Algorithms returns the algs the verifier accepts.
func (v *Verifier) Algorithms() []string { return slices.Clone(v.methods) }

// Verify checks token's encoding, alg, signature and claims and returns the
// claims. Every error is an *syncpoint.Error with CodeUnauthorized whose
// message says what is wrong.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, unauthorized("no token given")
	}
	if len(token) > MaxTokenBytes {
		return Claims{}, unauthorized("token is %d bytes; the limit is %d", len(token), MaxTokenBytes)
	}
	var tc tokenClaims
	_, err := v.parser.ParseWithClaims(token, &tc, v.key)
	if err != nil {
		return Claims{}, v.explain(token, err)
	}
	now := v.clock.Now()
	if tc.ExpiresAt == nil {
		return Claims{}, unauthorized("token has no exp claim; tokens must expire")
	}
	if exp := tc.ExpiresAt.Time; !now.Before(exp.Add(v.leeway)) {
		return Claims{}, unauthorized("token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if tc.NotBefore != nil && now.Add(v.leeway).Before(tc.NotBefore.Time) {
		return Claims{}, unauthorized("token is not valid before %s", tc.NotBefore.UTC().Format(time.RFC3339))
	}
	if tc.IssuedAt != nil && now.Add(v.leeway).Before(tc.IssuedAt.Time) {
		return Claims{}, unauthorized("token is issued in the future (%s); check the issuer's clock", tc.IssuedAt.UTC().Format(time.RFC3339))
	}
	if tc.Subject == "" {
		return Claims{}, unauthorized("token has no sub claim naming the user")
	}
	if err := syncpoint.ValidateID("sub", tc.Subject); err != nil {
		return Claims{}, unauthorized("token %s", syncpoint.Message(err))
	}
	if err := validateGroups(tc.Groups); err != nil {
		return Claims{}, unauthorized("token %s", syncpoint.Message(err))
	}
	exp := tc.ExpiresAt.Time
	return Claims{User: tc.Subject, Groups: tc.Groups, ExpiresAt: exp, ValidUntil: exp.Add(v.leeway)}, nil
}

// key hands the parser the key for the token's alg; WithValidMethods has
// already refused any alg that is not configured.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	switch alg := t.Method.Alg(); {
	case alg == jwt.SigningMethodHS256.Alg() && v.secret != nil:
		return v.secret, nil
	case alg == v.publicAlg && v.publicKey != nil:
		return v.publicKey, nil
	default:
		return nil, fmt.Errorf("alg %q is not configured", alg)
	}
}

// explain turns a parser error into a message a client can act on.
func (v *Verifier) explain(token string, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		if msg, ok := claimTypeError(token); ok {
			return unauthorized("token is malformed: %s", msg)
		}
		return unauthorized("token is malformed: want three base64url parts with a JSON header and payload")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		if alg, ok := headerAlg(token); ok && !slices.Contains(v.methods, alg) {
			return unauthorized("token alg %q is not accepted; want %s", alg, strings.Join(v.methods, " or "))
		}
		if errors.Is(err, jwt.ErrTokenUnverifiable) {
			return unauthorized("token header has no usable alg; want %s", strings.Join(v.methods, " or "))
		}
		return unauthorized("token signature is invalid")
	}
	return unauthorized("token is invalid")
}

// claimTypes is the JSON type each claim the verifier reads must have.
var claimTypes = []struct {
	name, want string
	ok         func(json.RawMessage) bool
}{
	{"sub", "a string", isJSON[string]},
	{"exp", "a number of seconds since 1970", isJSON[float64]},
	{"nbf", "a number of seconds since 1970", isJSON[float64]},
	{"iat", "a number of seconds since 1970", isJSON[float64]},
	{"iss", "a string", isJSON[string]},
	{"jti", "a string", isJSON[string]},
	{"aud", "a string or a list of strings", func(v json.RawMessage) bool { return isJSON[string](v) || isJSON[[]string](v) }},
	{"groups", "a list of strings", isJSON[[]string]},
}

func isJSON[T any](v json.RawMessage) bool {
	var x T
	return string(v) == "null" || json.Unmarshal(v, &x) == nil
}

// claimTypeError names the first claim of the token's payload whose JSON
// type is wrong, which the parser reports only as "malformed".
func claimTypeError(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return "", false
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return "", false
	}
	for _, c := range claimTypes {
		if v, ok := claims[c.name]; ok && !c.ok(v) {
			return fmt.Sprintf("claim %q must be %s", c.name, c.want), true
		}
	}
	return "", false
}

// headerAlg reads the token's alg again, only to name it in an error.
func headerAlg(token string) (string, bool) {
	t, _, _ := jwt.NewParser().ParseUnverified(token, jwt.MapClaims{})
	if t == nil || t.Header == nil {
		return "", false
	}
	alg, ok := t.Header["alg"].(string)
	return alg, ok
}

func validateGroups(groups []string) error {
	if len(groups) > MaxGroups {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "grants %d groups; the limit is %d", len(groups), MaxGroups)
	}
	for _, g := range groups {
		if err := syncpoint.ValidateID("group id", g); err != nil {
			return err
		}
	}
	return nil
}

func unauthorized(format string, args ...any) error {
	return syncpoint.Errorf(syncpoint.CodeUnauthorized, format, args...)
}
