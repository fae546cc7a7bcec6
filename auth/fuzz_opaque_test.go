package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
)

// FuzzVerifyTokens feeds arbitrary tokens to the verifier of both kinds
// over a real store holding one opaque token: it must never panic, every
// failure must be CodeUnauthorized and never quote the token, and only the
// stored secret passes as an opaque token.
func FuzzVerifyTokens(f *testing.F) {
	s, fc := MustOpenStore(f)
	v, _ := MustNewVerifier(f, auth.VerifierConfig{Secret: testSecret})
	tokens := auth.Tokens{JWT: v, Opaque: auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc})}
	tok, secret := mustSaveOpaque(f, s, fc, "u1", time.Hour)
	f.Add(secret)
	f.Add(MustMint(f, auth.Claims{User: "u1", ExpiresAt: testNow.Add(time.Hour)}))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := tokens.Verify(token)
		if err != nil {
			if code := syncpoint.Code(err); code != syncpoint.CodeUnauthorized {
				t.Fatalf("code = %q (%v); want unauthorized", code, err)
			}
			if len(token) >= 8 && strings.Contains(err.Error(), token) {
				t.Fatalf("the error quotes the token: %v", err)
			}
			return
		}
		if c.User == "" || c.ExpiresAt.IsZero() {
			t.Fatalf("accepted %q with claims %+v", token, c)
		}
		if auth.IsOpaque(token) && (token != secret || c.TokenID != tok.ID) {
			t.Fatalf("accepted an opaque token that was never minted: %+v", c)
		}
	})
}
