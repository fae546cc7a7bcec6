package pebble

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// TestTokensReopenAndSweep: a token survives a reopen, and once it expired
// the sweep leaves none of its rows behind.
func TestTokensReopenAndSweep(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	s, err := Open(dir, Options{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("secret"))
	tok := syncpoint.AccessToken{ID: "tok-0123456789abcdef01234567", Hash: sum[:], User: "u1", CreatedAt: clk.Now(), ExpiresAt: clk.Now().Add(time.Hour)}
	if err := s.SaveToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpenStoreOptions(t, dir, Options{Clock: clk})
	if got, err := s.TokenByHash(ctx, sum[:]); err != nil || got.ID != tok.ID {
		t.Fatalf("token after a reopen: %+v %v", got, err)
	}
	if _, err := s.Sweep(ctx, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []byte{pToken, pTokHash, pUserTok, pExpiry} {
		n := 0
		if err := s.scan(ctx, []byte{p}, func(k, _ []byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows of prefix %q after the sweep", n, p)
		}
	}
}
