package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// newToken is a valid token of user, named by n, created at created and
// valid for an hour.
func newToken(n int, user string, created time.Time) syncpoint.AccessToken {
	sum := sha256.Sum256(fmt.Appendf(nil, "secret %d", n))
	return syncpoint.AccessToken{
		ID:        fmt.Sprintf("%s%024x", syncpoint.TokenIDPrefix, n),
		Hash:      sum[:],
		User:      user,
		Groups:    []string{"g1", "g2"},
		Label:     fmt.Sprintf("laptop %d", n),
		CreatedAt: created.Truncate(time.Millisecond),
		ExpiresAt: created.Add(time.Hour).Truncate(time.Millisecond),
	}
}

func wantToken(tb testing.TB, what string, got, want syncpoint.AccessToken) {
	tb.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Hash, want.Hash) || got.User != want.User || !slices.Equal(got.Groups, want.Groups) ||
		got.Label != want.Label || !got.CreatedAt.Equal(want.CreatedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		tb.Fatalf("%s: token %+v, want %+v", what, got, want)
	}
}

func tokenIDs(ts []syncpoint.AccessToken) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

// testTokens saves, finds, lists and deletes access tokens.
func testTokens(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	now := time.Now()
	a, b, c := newToken(1, "u1", now.Add(-time.Minute)), newToken(2, "u1", now), newToken(3, "u2", now)
	c.Groups, c.Label = nil, ""
	for _, tok := range []syncpoint.AccessToken{a, b, c} {
		if err := s.SaveToken(ctx, tok); err != nil {
			t.Fatalf("save token %s: %v", tok.ID, err)
		}
	}
	for _, tok := range []syncpoint.AccessToken{a, b, c} {
		got, err := s.TokenByHash(ctx, tok.Hash)
		if err != nil {
			t.Fatalf("token by hash of %s: %v", tok.ID, err)
		}
		wantToken(t, "token by hash", got, tok)
	}
	list, err := s.UserTokens(ctx, "u1")
	if err != nil || !slices.Equal(tokenIDs(list), []string{b.ID, a.ID}) {
		t.Fatalf("tokens of u1: %v %v, want %s then %s (newest first)", tokenIDs(list), err, b.ID, a.ID)
	}
	wantToken(t, "listed token", list[1], a)
	if list, err := s.UserTokens(ctx, "u9"); err != nil || len(list) != 0 {
		t.Fatalf("tokens of a user without any: %v %v", list, err)
	}
	unknown := sha256.Sum256([]byte("never saved"))
	_, err = s.TokenByHash(ctx, unknown[:])
	wantErr(t, "token by an unknown hash", err, syncpoint.ErrNotFound)

	got, err := s.DeleteToken(ctx, a.ID)
	if err != nil {
		t.Fatalf("delete token: %v", err)
	}
	wantToken(t, "deleted token", got, a)
	_, err = s.TokenByHash(ctx, a.Hash)
	wantErr(t, "token by hash after its deletion", err, syncpoint.ErrNotFound)
	_, err = s.DeleteToken(ctx, a.ID)
	wantErr(t, "second delete", err, syncpoint.ErrNotFound)
	if list, err := s.UserTokens(ctx, "u1"); err != nil || !slices.Equal(tokenIDs(list), []string{b.ID}) {
		t.Fatalf("tokens of u1 after a deletion: %v %v", tokenIDs(list), err)
	}
	if _, err := s.TokenByHash(ctx, b.Hash); err != nil {
		t.Fatalf("another token of the user after a deletion: %v", err)
	}
}

// testTokensRefused refuses malformed tokens and a second token with an id
// or a hash that is taken, saving nothing of them.
func testTokensRefused(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	now := time.Now()
	a := newToken(1, "u1", now)
	if err := s.SaveToken(ctx, a); err != nil {
		t.Fatal(err)
	}
	sameID := newToken(2, "u2", now)
	sameID.ID = a.ID
	sameHash := newToken(3, "u2", now)
	sameHash.Hash = a.Hash
	for name, tok := range map[string]syncpoint.AccessToken{"same id": sameID, "same hash": sameHash} {
		if c := syncpoint.Code(s.SaveToken(ctx, tok)); c != syncpoint.CodeConflict {
			t.Errorf("%s: code %q, want %q", name, c, syncpoint.CodeConflict)
		}
	}
	if list, _ := s.UserTokens(ctx, "u2"); len(list) != 0 {
		t.Fatalf("a refused token was saved: %v", tokenIDs(list))
	}
	bad := map[string]func(*syncpoint.AccessToken){
		"id":        func(t *syncpoint.AccessToken) { t.ID = "tok-XYZ" },
		"hash":      func(t *syncpoint.AccessToken) { t.Hash = t.Hash[:16] },
		"user":      func(t *syncpoint.AccessToken) { t.User = "u 1" },
		"group":     func(t *syncpoint.AccessToken) { t.Groups = []string{""} },
		"label":     func(t *syncpoint.AccessToken) { t.Label = "a\nb" },
		"no expiry": func(t *syncpoint.AccessToken) { t.ExpiresAt = time.Time{} },
	}
	for name, mod := range bad {
		tok := newToken(9, "u3", now)
		mod(&tok)
		if c := syncpoint.Code(s.SaveToken(ctx, tok)); c != syncpoint.CodeInvalid {
			t.Errorf("a token with a bad %s: code %q, want %q", name, c, syncpoint.CodeInvalid)
		}
	}
	if list, _ := s.UserTokens(ctx, "u3"); len(list) != 0 {
		t.Fatalf("a malformed token was saved: %v", tokenIDs(list))
	}
	for name, err := range map[string]error{
		"TokenByHash of a short hash": func() error { _, err := s.TokenByHash(ctx, []byte("short")); return err }(),
		"UserTokens of a bad user":    func() error { _, err := s.UserTokens(ctx, "u 1"); return err }(),
		"DeleteToken of a bad id":     func() error { _, err := s.DeleteToken(ctx, "nope"); return err }(),
	} {
		if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
			t.Errorf("%s: %v (%q), want %q", name, err, c, syncpoint.CodeInvalid)
		}
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	for name, err := range map[string]error{
		"SaveToken":   s.SaveToken(cctx, newToken(4, "u1", now)),
		"TokenByHash": func() error { _, err := s.TokenByHash(cctx, a.Hash); return err }(),
		"UserTokens":  func() error { _, err := s.UserTokens(cctx, "u1"); return err }(),
		"DeleteToken": func() error { _, err := s.DeleteToken(cctx, a.ID); return err }(),
	} {
		wantErr(t, name+" with a cancelled context", err, context.Canceled)
	}
	if _, err := s.TokenByHash(ctx, a.Hash); err != nil {
		t.Fatalf("a cancelled DeleteToken deleted: %v", err)
	}
}

// testTokensExpire finds no expired token, lists none, deletes none, and
// sweeps them away.
func testTokensExpire(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	now := time.Now()
	old := newToken(1, "u1", now.Add(-2*time.Hour)) // expired an hour ago
	live := newToken(2, "u1", now)
	for _, tok := range []syncpoint.AccessToken{old, live} {
		if err := s.SaveToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.TokenByHash(ctx, old.Hash)
	wantErr(t, "an expired token by hash", err, syncpoint.ErrNotFound)
	if list, err := s.UserTokens(ctx, "u1"); err != nil || !slices.Equal(tokenIDs(list), []string{live.ID}) {
		t.Fatalf("tokens of u1: %v %v, want only the live one", tokenIDs(list), err)
	}
	_, err = s.DeleteToken(ctx, old.ID)
	wantErr(t, "delete of an expired token", err, syncpoint.ErrNotFound)
	mustSweep(t, s, now)
	if _, err := s.TokenByHash(ctx, live.Hash); err != nil {
		t.Fatalf("a live token after a sweep: %v", err)
	}
	mustSweep(t, s, now.Add(2*time.Hour))
	// Swept, its id and hash are free again.
	again := old
	again.CreatedAt, again.ExpiresAt = now, now.Add(time.Hour)
	if err := s.SaveToken(ctx, again); err != nil {
		t.Fatalf("save of a swept token's id: %v", err)
	}
}
