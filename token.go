package syncpoint

import (
	"crypto/sha256"
	"strings"
	"time"
	"unicode/utf8"
)

// AccessToken is an opaque device access token as the store keeps it: the
// SHA-256 of its secret, never the secret itself, and what it grants. Unlike
// a JWT it can be listed and revoked; a verifier that finds it by the hash
// of a presented secret turns it into Claims.
type AccessToken struct {
	ID        string    `json:"id"`
	Hash      []byte    `json:"-"` // SHA-256 of the secret; never shown
	User      string    `json:"user"`
	Groups    []string  `json:"groups"`
	Label     string    `json:"label"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Limits on access tokens.
const (
	// AccessTokenHashLen is the length of AccessToken.Hash.
	AccessTokenHashLen = sha256.Size
	// MaxTokenLabelLen bounds a token's label, in bytes.
	MaxTokenLabelLen = 128
	// MaxTokenGroups bounds the groups one token grants, as for JWTs.
	MaxTokenGroups = 256
	// TokenIDPrefix starts every token id, so an id in a log or a URL is
	// never mistaken for a secret.
	TokenIDPrefix = "tok-"
	// tokenIDHexLen is the random part of an id: 12 bytes in hex.
	tokenIDHexLen = 24
)

// ValidateTokenID checks an access token id: TokenIDPrefix and 24 lowercase
// hex digits.
func ValidateTokenID(id string) error {
	rest, ok := strings.CutPrefix(id, TokenIDPrefix)
	if !ok || len(rest) != tokenIDHexLen || strings.ContainsFunc(rest, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f')
	}) {
		return Errorf(CodeInvalid, "token id %q: want %s and %d lowercase hex digits", clipText(id), TokenIDPrefix, tokenIDHexLen)
	}
	return nil
}

// ValidateTokenLabel checks a label: at most MaxTokenLabelLen bytes of UTF-8
// without control characters; it may be empty.
func ValidateTokenLabel(label string) error {
	if len(label) > MaxTokenLabelLen || !utf8.ValidString(label) || strings.ContainsFunc(label, isControl) {
		return Errorf(CodeInvalid, "label: want at most %d bytes of UTF-8 without control characters", MaxTokenLabelLen)
	}
	return nil
}

// ValidateGroups checks the groups a token grants: at most MaxTokenGroups
// valid group ids.
func ValidateGroups(groups []string) error {
	if len(groups) > MaxTokenGroups {
		return Errorf(CodeInvalid, "groups: %d given; the limit is %d", len(groups), MaxTokenGroups)
	}
	for _, g := range groups {
		if err := ValidateID("group id", g); err != nil {
			return err
		}
	}
	return nil
}

// Validate returns an *Error with CodeInvalid naming the first bad field.
func (t *AccessToken) Validate() error {
	if err := ValidateTokenID(t.ID); err != nil {
		return err
	}
	if len(t.Hash) != AccessTokenHashLen {
		return Errorf(CodeInvalid, "token %s: the hash is %d bytes; want %d", t.ID, len(t.Hash), AccessTokenHashLen)
	}
	if err := ValidateID("user", t.User); err != nil {
		return err
	}
	if err := ValidateGroups(t.Groups); err != nil {
		return err
	}
	if err := ValidateTokenLabel(t.Label); err != nil {
		return err
	}
	if t.CreatedAt.IsZero() || !t.ExpiresAt.After(t.CreatedAt) {
		return Errorf(CodeInvalid, "token %s: it needs a creation time and an expiry after it", t.ID)
	}
	return nil
}

// Expired reports whether the token has expired at now.
func (t *AccessToken) Expired(now time.Time) bool { return !now.Before(t.ExpiresAt) }

// Claims is what the token grants. It has no leeway: the server that checks
// it also set its expiry, by the same clocks.
func (t *AccessToken) Claims() Claims {
	return Claims{User: t.User, Groups: t.Groups, ExpiresAt: t.ExpiresAt, ValidUntil: t.ExpiresAt, TokenID: t.ID}
}

// clipText bounds text from outside before it goes into a message.
func clipText(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}
