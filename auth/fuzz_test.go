package auth_test

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
)

// FuzzVerify feeds arbitrary tokens to a verifier: it must never panic,
// every failure must be CodeUnauthorized, and a success must name a user.
func FuzzVerify(f *testing.F) {
	v, _ := MustNewVerifier(f, auth.VerifierConfig{Secret: testSecret})
	f.Add(MustMint(f, auth.Claims{User: "u1", Groups: []string{"g1"}, ExpiresAt: testNow.Add(time.Hour)}))
	f.Add(MustMint(f, auth.Claims{User: "u1", ExpiresAt: testNow.Add(-time.Hour)}))
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{"sub":"u1","exp":99999999999}`)) + ".")
	f.Add(enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(`{"sub":"u1","groups":"g1"}`)) + ".AAAA")
	f.Add(enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`[]`)) + "." + enc([]byte("sig")))
	f.Add("a.b.c")
	f.Add("...")
	f.Add("")
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if code := syncpoint.Code(err); code != syncpoint.CodeUnauthorized {
				t.Fatalf("code = %q (%v); want unauthorized", code, err)
			}
			return
		}
		if c.User == "" || c.ExpiresAt.IsZero() {
			t.Fatalf("Verify accepted %q with claims %+v", token, c)
		}
	})
}
