package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/auth"
)

type mintAnswer struct {
	ID        string    `json:"id"`
	Token     string    `json:"token"`
	User      string    `json:"user"`
	Groups    []string  `json:"groups"`
	Label     string    `json:"label"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// withDebugLog makes the test server log everything, debug lines included,
// so that a test can look for a secret in all of it.
func withDebugLog(ts *syncBuffer) func(*Config) {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(ts, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

func TestTokensMintListRevoke(t *testing.T) {
	logs := &syncBuffer{}
	var revoked []string
	ts := MustStartServer(t, withDebugLog(logs), func(c *Config) {
		c.OnTokenRevoked = func(id string) { revoked = append(revoked, id) }
	})
	var a mintAnswer
	r := ts.call(t, "POST", "/v1/tokens", `{"user":"u1","groups":["g1","g2"],"ttl":"24h","label":"Ada's phone"}`, 201, &a)
	if !auth.IsOpaque(a.Token) || a.User != "u1" || !slices.Equal(a.Groups, []string{"g1", "g2"}) || a.Label != "Ada's phone" ||
		!a.ExpiresAt.Equal(t0.Add(24*time.Hour)) || !a.CreatedAt.Equal(t0) || !strings.HasPrefix(a.ID, "tok-") {
		t.Fatalf("minted %+v", a)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("the answer with the secret has Cache-Control %q", cc)
	}
	tok, err := ts.store.TokenByHash(t.Context(), auth.HashOpaque(a.Token))
	if err != nil || tok.ID != a.ID {
		t.Fatalf("the store finds the token by its hash: %+v %v", tok, err)
	}
	var b mintAnswer
	ts.call(t, "POST", "/v1/tokens", `{"user":"u1"}`, 201, &b)
	if !b.ExpiresAt.Equal(t0.Add(DefaultTokenTTL)) || b.Groups == nil || len(b.Groups) != 0 || b.Token == a.Token {
		t.Fatalf("a token with the defaults: %+v", b)
	}
	ts.call(t, "POST", "/v1/tokens", `{"user":"u2"}`, 201, nil)

	var list struct {
		Tokens []map[string]json.RawMessage `json:"tokens"`
	}
	lr := ts.call(t, "GET", "/v1/users/u1/tokens", "", 200, &list)
	if len(list.Tokens) != 2 {
		t.Fatalf("tokens of u1: %s", lr.body)
	}
	for _, secret := range []string{a.Token, b.Token} {
		if strings.Contains(string(lr.body), secret) {
			t.Fatal("the list shows a secret")
		}
	}
	for _, tk := range list.Tokens {
		if _, ok := tk["token"]; ok {
			t.Fatalf("a listed token has a token field: %v", tk)
		}
	}
	var ids []string
	for _, tk := range list.Tokens {
		var id string
		json.Unmarshal(tk["id"], &id)
		ids = append(ids, id)
	}
	if !slices.Contains(ids, a.ID) || !slices.Contains(ids, b.ID) {
		t.Fatalf("tokens of u1 are %v, want %s and %s", ids, a.ID, b.ID)
	}
	ts.call(t, "GET", "/v1/users/u9/tokens", "", 200, &list)
	if len(list.Tokens) != 0 {
		t.Fatalf("tokens of a user without any: %v", list.Tokens)
	}

	ts.call(t, "DELETE", "/v1/tokens/"+a.ID, "", 204, nil)
	if !slices.Equal(revoked, []string{a.ID}) {
		t.Fatalf("the revocation hook got %v", revoked)
	}
	if _, err := ts.store.TokenByHash(t.Context(), auth.HashOpaque(a.Token)); err == nil {
		t.Fatal("a revoked token is still found")
	}
	wantError(t, ts.do(t, "DELETE", "/v1/tokens/"+a.ID, "", testKey), 404, "not_found", a.ID)
	ts.call(t, "GET", "/v1/users/u1/tokens", "", 200, &list)
	if len(list.Tokens) != 1 {
		t.Fatalf("tokens of u1 after a revocation: %v", list.Tokens)
	}

	// Expired tokens are neither listed nor revocable.
	ts.clock.Advance(DefaultTokenTTL)
	ts.call(t, "GET", "/v1/users/u1/tokens", "", 200, &list)
	if len(list.Tokens) != 0 {
		t.Fatalf("tokens of u1 once all expired: %v", list.Tokens)
	}
	wantError(t, ts.do(t, "DELETE", "/v1/tokens/"+b.ID, "", testKey), 404, "not_found", "")

	for _, secret := range []string{a.Token, b.Token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret is in the log:\n%s", logs.String())
		}
	}
	if !strings.Contains(logs.String(), a.ID) {
		t.Fatalf("the log does not name the minted token's id:\n%s", logs.String())
	}
}

func TestTokensBadInput(t *testing.T) {
	ts := MustStartServer(t)
	for body, want := range map[string]string{
		`{}`:                            "user is empty",
		`{"user":"u 1"}`:                "user",
		`{"user":"u1","groups":[""]}`:   "group id is empty",
		`{"user":"u1","groups":"g1"}`:   "groups",
		`{"user":"u1","ttl":"forever"}`: "ttl",
		`{"user":"u1","ttl":"30s"}`:     "ttl",
		`{"user":"u1","ttl":"9000h"}`:   "ttl",
		`{"user":"u1","ttl":"-1h"}`:     "ttl",
		`{"user":"u1","label":"` + strings.Repeat("x", 129) + `"}`:        "label",
		`{"user":"u1","label":"a\nb"}`:                                    "label",
		`{"user":"u1","secret":"mine"}`:                                   "unknown field",
		`{"user":"u1","groups":["` + strings.Repeat(`g","`, 256) + `g"]}`: "groups",
	} {
		wantError(t, ts.do(t, "POST", "/v1/tokens", body, testKey), 422, "invalid", want)
	}
	wantError(t, ts.do(t, "POST", "/v1/tokens", `{"user":`, testKey), 400, "malformed", "")
	wantError(t, ts.do(t, "POST", "/v1/tokens", `{"user":"u1"}`, ""), 401, "unauthorized", "")
	wantError(t, ts.do(t, "DELETE", "/v1/tokens/tok-0123456789abcdef01234567", "", testKey), 404, "not_found", "")
	wantError(t, ts.do(t, "DELETE", "/v1/tokens/nope", "", testKey), 422, "invalid", "token id")
	wantError(t, ts.do(t, "GET", "/v1/users/u%20x/tokens", "", testKey), 422, "invalid", "user id")
	wantError(t, ts.do(t, "GET", "/v1/users/u1/tokens", "", ""), 401, "unauthorized", "")

	for i := range MaxTokensPerUser {
		ts.call(t, "POST", "/v1/tokens", fmt.Sprintf(`{"user":"busy","label":"%d"}`, i), 201, nil)
	}
	wantError(t, ts.do(t, "POST", "/v1/tokens", `{"user":"busy"}`, testKey), 422, "invalid", "revoke one first")
}
