package syncpoint_test

import (
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func TestAccessTokenValidate(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ok := syncpoint.AccessToken{
		ID:        "tok-0123456789abcdef01234567",
		Hash:      make([]byte, syncpoint.AccessTokenHashLen),
		User:      "u1",
		Groups:    []string{"g1"},
		Label:     "Ada's phone ✓",
		CreatedAt: now,
		ExpiresAt: now.Add(time.Hour),
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	c := ok.Claims()
	if c.User != "u1" || c.TokenID != ok.ID || !c.ExpiresAt.Equal(ok.ExpiresAt) || !c.ValidUntil.Equal(ok.ExpiresAt) || c.Groups[0] != "g1" {
		t.Fatalf("claims %+v", c)
	}
	bad := map[string]func(*syncpoint.AccessToken){
		"id without prefix": func(t *syncpoint.AccessToken) { t.ID = "0123456789abcdef01234567" },
		"id in upper case":  func(t *syncpoint.AccessToken) { t.ID = "tok-0123456789ABCDEF01234567" },
		"short id":          func(t *syncpoint.AccessToken) { t.ID = "tok-0123" },
		"hash":              func(t *syncpoint.AccessToken) { t.Hash = nil },
		"user":              func(t *syncpoint.AccessToken) { t.User = "" },
		"groups":            func(t *syncpoint.AccessToken) { t.Groups = make([]string, syncpoint.MaxTokenGroups+1) },
		"long label":        func(t *syncpoint.AccessToken) { t.Label = strings.Repeat("x", syncpoint.MaxTokenLabelLen+1) },
		"label control":     func(t *syncpoint.AccessToken) { t.Label = "a\tb" },
		"label not UTF-8":   func(t *syncpoint.AccessToken) { t.Label = "\xff" },
		"no creation":       func(t *syncpoint.AccessToken) { t.CreatedAt = time.Time{} },
		"expiry first":      func(t *syncpoint.AccessToken) { t.ExpiresAt = t.CreatedAt },
	}
	for name, mod := range bad {
		tok := ok
		mod(&tok)
		if err := tok.Validate(); syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("%s: %v, want an invalid error", name, err)
		}
	}
	if !ok.Expired(ok.ExpiresAt) || ok.Expired(ok.ExpiresAt.Add(-time.Nanosecond)) {
		t.Fatal("a token expires exactly at ExpiresAt")
	}
}
