package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/pebble"
)

// MustOpenStore opens a real store on a fake clock at testNow.
func MustOpenStore(tb testing.TB) (*pebble.Store, *clock.Fake) {
	tb.Helper()
	fc := clock.NewFake(testNow)
	s, err := pebble.Open(tb.TempDir(), pebble.Options{Clock: fc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s, fc
}

// mustSaveOpaque mints a token of user valid for ttl from the clock's now.
func mustSaveOpaque(tb testing.TB, s *pebble.Store, fc *clock.Fake, user string, ttl time.Duration, groups ...string) (syncpoint.AccessToken, string) {
	tb.Helper()
	tok, secret, err := auth.MintOpaque(user, groups, "test", fc.Now(), ttl)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.SaveToken(context.Background(), tok); err != nil {
		tb.Fatal(err)
	}
	return tok, secret
}

func TestMintOpaque(t *testing.T) {
	seen := map[string]bool{}
	ids := map[string]bool{}
	for range 200 {
		tok, secret, err := auth.MintOpaque("u1", []string{"g1"}, "laptop", testNow, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !auth.IsOpaque(secret) || len(secret) != auth.OpaqueLen {
			t.Fatalf("secret %q is not 64 characters of [A-Za-z0-9]", secret)
		}
		if string(tok.Hash) != string(auth.HashOpaque(secret)) || strings.Contains(tok.ID, secret) {
			t.Fatal("the stored form must be the secret's hash, and the id unrelated to it")
		}
		if err := syncpoint.ValidateTokenID(tok.ID); err != nil || ids[tok.ID] {
			t.Fatalf("id %s: %v (or repeated)", tok.ID, err)
		}
		ids[tok.ID] = true
		for _, c := range secret {
			seen[string(c)] = true
		}
	}
	// 12,800 draws from 62 characters: missing one would be a biased draw.
	if len(seen) != 62 {
		t.Fatalf("secrets used %d distinct characters, want all 62", len(seen))
	}
	if _, _, err := auth.MintOpaque("u 1", nil, "", testNow, time.Hour); syncpoint.Code(err) != syncpoint.CodeInvalid {
		t.Fatalf("mint for a bad user: %v", err)
	}
	for _, tc := range []struct {
		token string
		want  bool
	}{
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 63), false},
		{strings.Repeat("a", 65), false},
		{strings.Repeat("a", 63) + "-", false},
		{strings.Repeat("a", 63) + "é"[:1], false},
	} {
		if got := auth.IsOpaque(tc.token); got != tc.want {
			t.Errorf("IsOpaque(%q) = %v", tc.token, got)
		}
	}
}

func TestOpaqueVerify(t *testing.T) {
	s, fc := MustOpenStore(t)
	o := auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc})
	tok, secret := mustSaveOpaque(t, s, fc, "u1", time.Hour, "g1", "g2")
	c, err := o.Verify(secret)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "u1" || c.TokenID != tok.ID || len(c.Groups) != 2 || !c.ExpiresAt.Equal(tok.ExpiresAt) || !c.ValidUntil.Equal(tok.ExpiresAt) {
		t.Fatalf("claims %+v for %+v", c, tok)
	}
	c.Groups[0] = "changed" // a caller's change must not reach the cache
	if c, _ := o.Verify(secret); c.Groups[0] != "g1" {
		t.Fatalf("cached claims changed: %+v", c)
	}

	other := strings.Repeat("Z", auth.OpaqueLen)
	for name, token := range map[string]string{"unknown": other, "short": secret[:63], "jwt": "a.b.c"} {
		_, err := o.Verify(token)
		if syncpoint.Code(err) != syncpoint.CodeUnauthorized || strings.Contains(err.Error(), secret) {
			t.Errorf("%s token: %v, want unauthorized without the secret in it", name, err)
		}
	}

	// Expiry: no leeway, and the cache never outlives the token.
	short, shortSecret := mustSaveOpaque(t, s, fc, "u2", 5*time.Second)
	if _, err := o.Verify(shortSecret); err != nil {
		t.Fatal(err)
	}
	fc.Advance(5 * time.Second)
	if _, err := o.Verify(shortSecret); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("token %s at its expiry: %v, want unauthorized", short.ID, err)
	}
}

// TestOpaqueRevocation: Forget makes a revocation take effect at once,
// although the token is cached; without Forget the cache holds it for its
// TTL, as another node would until the cluster tells it.
func TestOpaqueRevocation(t *testing.T) {
	s, fc := MustOpenStore(t)
	ctx := context.Background()
	o := auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc, CacheTTL: time.Minute})
	tok, secret := mustSaveOpaque(t, s, fc, "u1", time.Hour)
	if _, err := o.Verify(secret); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Verify(secret); err != nil {
		t.Fatalf("a cached token before Forget: %v", err)
	}
	o.Forget(tok.ID)
	if _, err := o.Verify(secret); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("a revoked token after Forget: %v", err)
	}

	stale := auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc, CacheTTL: time.Minute})
	tok2, secret2 := mustSaveOpaque(t, s, fc, "u1", time.Hour)
	if _, err := stale.Verify(secret2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteToken(ctx, tok2.ID); err != nil {
		t.Fatal(err)
	}
	fc.Advance(time.Minute)
	if _, err := stale.Verify(secret2); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("a revoked token past the cache TTL: %v", err)
	}

	uncached := auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc, CacheTTL: -1})
	tok3, secret3 := mustSaveOpaque(t, s, fc, "u1", time.Hour)
	if _, err := uncached.Verify(secret3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteToken(ctx, tok3.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := uncached.Verify(secret3); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("without a cache a revocation is seen at once: %v", err)
	}
}

func TestOpaqueStoreFailure(t *testing.T) {
	s, fc := MustOpenStore(t)
	o := auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc})
	_, secret := mustSaveOpaque(t, s, fc, "u1", time.Hour)
	s.Close()
	_, err := o.Verify(secret)
	if !errors.Is(err, syncpoint.ErrClosed) || syncpoint.Code(err) == syncpoint.CodeUnauthorized {
		t.Fatalf("verify over a closed store: %v, want the store's error, not a refusal", err)
	}
}

func TestTokensTriesEachKind(t *testing.T) {
	s, fc := MustOpenStore(t)
	v, _ := MustNewVerifier(t, auth.VerifierConfig{Secret: testSecret})
	both := auth.Tokens{JWT: v, Opaque: auth.NewOpaque(auth.OpaqueConfig{Store: s, Clock: fc})}
	tok, secret := mustSaveOpaque(t, s, fc, "u1", time.Hour)
	if c, err := both.Verify(secret); err != nil || c.TokenID != tok.ID {
		t.Fatalf("opaque token: %+v %v", c, err)
	}
	jwt := MustMint(t, auth.Claims{User: "u2", ExpiresAt: testNow.Add(time.Hour)})
	if c, err := both.Verify(jwt); err != nil || c.User != "u2" || c.TokenID != "" {
		t.Fatalf("JWT: %+v %v", c, err)
	}
	jwtOnly := auth.Tokens{JWT: v}
	if _, err := jwtOnly.Verify(secret); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("an opaque token without an opaque verifier: %v", err)
	}
}
