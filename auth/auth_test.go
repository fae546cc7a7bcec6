package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/internal/clock"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// MustNewVerifier returns a verifier for cfg on a fake clock at testNow.
func MustNewVerifier(tb testing.TB, cfg auth.VerifierConfig) (*auth.Verifier, *clock.Fake) {
	tb.Helper()
	fc := clock.NewFake(testNow)
	cfg.Clock = fc
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		tb.Fatalf("NewVerifier: %v", err)
	}
	return v, fc
}

// MustMint mints an HS256 token with testSecret at testNow.
func MustMint(tb testing.TB, c auth.Claims) string {
	tb.Helper()
	tok, err := auth.Mint(testSecret, c, testNow)
	if err != nil {
		tb.Fatalf("Mint: %v", err)
	}
	return tok
}

// signRaw signs arbitrary claims, for tokens Mint refuses to make.
func signRaw(tb testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	if err != nil {
		tb.Fatalf("sign: %v", err)
	}
	return s
}

func pemOf(tb testing.TB, pub any) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// wantUnauthorized checks that err is CodeUnauthorized and mentions want.
func wantUnauthorized(tb testing.TB, err error, want string) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("Verify succeeded; want an error mentioning %q", want)
	}
	if code := syncpoint.Code(err); code != syncpoint.CodeUnauthorized {
		tb.Fatalf("code = %q (%v); want unauthorized", code, err)
	}
	if !strings.Contains(syncpoint.Message(err), want) {
		tb.Fatalf("message %q does not mention %q", syncpoint.Message(err), want)
	}
}

func TestMintVerifyRoundTrip(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	exp := testNow.Add(time.Hour)
	tok := MustMint(t, auth.Claims{User: "u1", Groups: []string{"g1", "g2"}, ExpiresAt: exp})
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.User != "u1" || !slices.Equal(c.Groups, []string{"g1", "g2"}) || !c.ExpiresAt.Equal(exp) {
		t.Fatalf("claims = %+v", c)
	}
}

func TestMintOmitsEmptyGroups(t *testing.T) {
	tok := MustMint(t, auth.Claims{User: "u1", ExpiresAt: testNow.Add(time.Hour)})
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sub":"u1"`, `"iat":`, `"exp":`} {
		if !strings.Contains(string(payload), want) {
			t.Errorf("payload %s lacks %s", payload, want)
		}
	}
	if strings.Contains(string(payload), "groups") {
		t.Errorf("payload %s has groups; want them omitted", payload)
	}
}

func TestMintRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		secret []byte
		c      auth.Claims
	}{
		"no secret": {nil, auth.Claims{User: "u1", ExpiresAt: testNow.Add(time.Hour)}},
		"no user":   {testSecret, auth.Claims{ExpiresAt: testNow.Add(time.Hour)}},
		"bad user":  {testSecret, auth.Claims{User: "u 1", ExpiresAt: testNow.Add(time.Hour)}},
		"bad group": {testSecret, auth.Claims{User: "u1", Groups: []string{""}, ExpiresAt: testNow.Add(time.Hour)}},
		"no expiry": {testSecret, auth.Claims{User: "u1"}},
	} {
		if _, err := auth.Mint(tc.secret, tc.c, testNow); err == nil {
			t.Errorf("%s: Mint succeeded", name)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	for _, tok := range []string{"abc", "a.b", "a.b.c.d", "!!.??.**", base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256"}`)) + ".bm90IGpzb24.x"} {
		_, err := v.Verify(tok)
		wantUnauthorized(t, err, "malformed")
	}
	_, err := v.Verify("")
	wantUnauthorized(t, err, "no token")
	_, err = v.Verify(strings.Repeat("a", auth.MaxTokenBytes+1))
	wantUnauthorized(t, err, "limit")
}

func TestVerifyBadSignature(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	other, err := auth.Mint([]byte("another-secret-of-enough-length"), auth.Claims{User: "u1", ExpiresAt: testNow.Add(time.Hour)}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(other)
	wantUnauthorized(t, err, "signature is invalid")

	// A changed payload under the original signature must not pass.
	tok := MustMint(t, auth.Claims{User: "u1", ExpiresAt: testNow.Add(time.Hour)})
	parts := strings.Split(tok, ".")
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"admin","exp":9999999999}`))
	_, err = v.Verify(strings.Join(parts, "."))
	wantUnauthorized(t, err, "signature is invalid")
}

func TestVerifyExpired(t *testing.T) {
	v, fc := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret, Leeway: time.Second})
	exp := testNow.Add(time.Minute)
	tok := MustMint(t, auth.Claims{User: "u1", ExpiresAt: exp})
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("Verify before expiry: %v", err)
	}
	fc.Advance(time.Minute + 2*time.Second)
	_, err := v.Verify(tok)
	wantUnauthorized(t, err, "expired at "+exp.Format(time.RFC3339))
}

// The token passes until exp + leeway, and ValidUntil says when that is,
// so that a session can end at the same instant.
func TestVerifyLeeway(t *testing.T) {
	v, fc := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	exp := testNow.Add(time.Minute)
	tok := MustMint(t, auth.Claims{User: "u1", ExpiresAt: exp})
	fc.Advance(time.Minute + auth.DefaultLeeway - time.Millisecond)
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify within the default leeway: %v", err)
	}
	if !c.ExpiresAt.Equal(exp) || !c.ValidUntil.Equal(exp.Add(auth.DefaultLeeway)) {
		t.Fatalf("claims expire %v, valid until %v; want %v and %v", c.ExpiresAt, c.ValidUntil, exp, exp.Add(auth.DefaultLeeway))
	}
	fc.Advance(time.Millisecond)
	_, err = v.Verify(tok)
	wantUnauthorized(t, err, "expired")
}

func TestVerifyClaims(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	exp := testNow.Add(time.Hour).Unix()
	for _, tc := range []struct {
		claims jwt.MapClaims
		want   string
	}{
		{jwt.MapClaims{"exp": exp}, "no sub"},
		{jwt.MapClaims{"sub": "", "exp": exp}, "no sub"},
		{jwt.MapClaims{"sub": "u1"}, "no exp"},
		{jwt.MapClaims{"sub": "u/1", "exp": exp}, "sub"},
		{jwt.MapClaims{"sub": "u1", "exp": exp, "groups": []string{"ok", "not ok"}}, "group id"},
		{jwt.MapClaims{"sub": "u1", "exp": exp, "nbf": testNow.Add(time.Hour).Unix()}, "not valid before"},
		{jwt.MapClaims{"sub": "u1", "exp": exp, "iat": testNow.Add(time.Hour).Unix()}, "future"},
		{jwt.MapClaims{"sub": 7, "exp": exp}, `claim "sub" must be a string`},
		{jwt.MapClaims{"sub": 123, "exp": exp}, `claim "sub" must be a string`},
		{jwt.MapClaims{"sub": "u1", "exp": "tomorrow"}, `claim "exp" must be a number`},
		{jwt.MapClaims{"sub": "u1", "exp": exp, "groups": "g1"}, `claim "groups" must be a list of strings`},
		{jwt.MapClaims{"sub": "u1", "exp": exp, "aud": 5}, `claim "aud" must be a string or a list of strings`},
	} {
		_, err := v.Verify(signRaw(t, jwt.SigningMethodHS256, testSecret, tc.claims))
		wantUnauthorized(t, err, tc.want)
	}
}

func TestVerifyRejectsAlgNone(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	tok := signRaw(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "u1", "exp": testNow.Add(time.Hour).Unix()})
	_, err := v.Verify(tok)
	wantUnauthorized(t, err, `alg "none" is not accepted`)

	// A header naming an alg nobody knows.
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XX999","typ":"JWT"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"u1"}`))
	_, err = v.Verify(h + "." + p + ".c2ln")
	wantUnauthorized(t, err, `alg "XX999" is not accepted`)

	h = base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT"}`))
	_, err = v.Verify(h + "." + p + ".c2ln")
	wantUnauthorized(t, err, "no usable alg")
}

func TestVerifyRejectsUnconfiguredAlg(t *testing.T) {
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tok := signRaw(t, jwt.SigningMethodES256, key, jwt.MapClaims{"sub": "u1", "exp": testNow.Add(time.Hour).Unix()})
	_, err = v.Verify(tok)
	wantUnauthorized(t, err, `alg "ES256" is not accepted; want HS256`)
	tok = signRaw(t, jwt.SigningMethodHS512, testSecret, jwt.MapClaims{"sub": "u1", "exp": testNow.Add(time.Hour).Unix()})
	_, err = v.Verify(tok)
	wantUnauthorized(t, err, `alg "HS512" is not accepted`)
}

func TestVerifyRS256(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := MustNewVerifier(t, auth.VerifierConfig{PublicKeyPEM: pemOf(t, &key.PublicKey)})
	claims := jwt.MapClaims{"sub": "u1", "groups": []string{"g1"}, "exp": testNow.Add(time.Hour).Unix()}
	c, err := v.Verify(signRaw(t, jwt.SigningMethodRS256, key, claims))
	if err != nil {
		t.Fatalf("Verify RS256: %v", err)
	}
	if c.User != "u1" || !slices.Equal(c.Groups, []string{"g1"}) {
		t.Fatalf("claims = %+v", c)
	}

	// The classic confusion: HS256 keyed by the public key's bytes.
	_, err = v.Verify(signRaw(t, jwt.SigningMethodHS256, pemOf(t, &key.PublicKey), claims))
	wantUnauthorized(t, err, `alg "HS256" is not accepted; want RS256`)

	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(signRaw(t, jwt.SigningMethodRS256, other, claims))
	wantUnauthorized(t, err, "signature is invalid")

	// PKCS#1 form of the same key.
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&key.PublicKey)})
	v1, _ := MustNewVerifier(t, auth.VerifierConfig{PublicKeyPEM: pkcs1})
	if _, err := v1.Verify(signRaw(t, jwt.SigningMethodRS256, key, claims)); err != nil {
		t.Fatalf("Verify with a PKCS#1 key: %v", err)
	}
}

func TestVerifyES256(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret, PublicKeyPEM: pemOf(t, &key.PublicKey)})
	if got := v.Algorithms(); !slices.Equal(got, []string{"HS256", "ES256"}) {
		t.Fatalf("Algorithms = %v", got)
	}
	claims := jwt.MapClaims{"sub": "u2", "exp": testNow.Add(time.Hour).Unix()}
	c, err := v.Verify(signRaw(t, jwt.SigningMethodES256, key, claims))
	if err != nil || c.User != "u2" {
		t.Fatalf("Verify ES256 = %+v, %v", c, err)
	}
	// Both kinds pass when both are configured.
	if _, err := v.Verify(MustMint(t, auth.Claims{User: "u3", ExpiresAt: testNow.Add(time.Hour)})); err != nil {
		t.Fatalf("Verify HS256 beside ES256: %v", err)
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(signRaw(t, jwt.SigningMethodES256, other, claims))
	wantUnauthorized(t, err, "signature is invalid")
}

func TestNewVerifierRejectsConfig(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]auth.VerifierConfig{
		"nothing":      {},
		"short secret": {Secret: []byte("short")},
		"not pem":      {PublicKeyPEM: []byte("hello")},
		"bad block":    {PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})},
		"bad der":      {PublicKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})},
		"P-384":        {PublicKeyPEM: pemOf(t, &p384.PublicKey)},
		"RSA 1024":     {PublicKeyPEM: pemOf(t, &small.PublicKey)},
	} {
		if _, err := auth.NewVerifier(cfg); err == nil {
			t.Errorf("%s: NewVerifier succeeded", name)
		}
	}
}

func BenchmarkVerifyHS256(b *testing.B) {
	v, _ := MustNewVerifier(b, auth.VerifierConfig{Secret: testSecret})
	tok := MustMint(b, auth.Claims{User: "u1", Groups: []string{"g1"}, ExpiresAt: testNow.Add(time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
