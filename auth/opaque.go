package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// Opaque access tokens are 64 characters of [A-Za-z0-9] drawn from
// crypto/rand (about 381 bits), for clients that insist on a fixed-length
// personal access token and for tokens that must be revocable. The server
// keeps only their SHA-256 (syncpoint.AccessToken); a secret that is lost
// is minted anew, never shown again.
const (
	// OpaqueLen is the length of every opaque token.
	OpaqueLen = 64
	// DefaultOpaqueCacheTTL is how long a verified opaque token is
	// remembered without asking the store again. A revocation on this
	// node evicts it at once (Opaque.Forget); see Opaque for other nodes.
	DefaultOpaqueCacheTTL = 10 * time.Second
	// DefaultOpaqueCacheSize bounds the remembered tokens.
	DefaultOpaqueCacheSize = 10_000
	// DefaultOpaqueLookupTimeout bounds one store lookup of Verify, which
	// takes no context.
	DefaultOpaqueLookupTimeout = 5 * time.Second
)

const opaqueAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// IsOpaque reports whether token has the form of an opaque token. A JWT
// never does: it has dots.
func IsOpaque(token string) bool {
	if len(token) != OpaqueLen {
		return false
	}
	for i := 0; i < len(token); i++ {
		c := token[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// HashOpaque is the SHA-256 of a secret, as the store keeps it.
func HashOpaque(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// MintOpaque makes a new opaque token for user: the form to store, and the
// secret to hand over once. It expires ttl after now.
func MintOpaque(user string, groups []string, label string, now time.Time, ttl time.Duration) (syncpoint.AccessToken, string, error) {
	secret, err := opaqueSecret()
	if err != nil {
		return syncpoint.AccessToken{}, "", fmt.Errorf("mint opaque token: %w", err)
	}
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		return syncpoint.AccessToken{}, "", fmt.Errorf("mint opaque token: %w", err)
	}
	tok := syncpoint.AccessToken{
		ID:        syncpoint.TokenIDPrefix + hex.EncodeToString(id[:]),
		Hash:      HashOpaque(secret),
		User:      user,
		Groups:    slices.Clone(groups),
		Label:     label,
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}
	if err := tok.Validate(); err != nil {
		return syncpoint.AccessToken{}, "", fmt.Errorf("mint opaque token: %w", err)
	}
	return tok, secret, nil
}

// opaqueSecret draws OpaqueLen characters uniformly from the alphabet:
// bytes of 248 and up are dropped, so each kept byte mod 62 is unbiased.
func opaqueSecret() (string, error) {
	out := make([]byte, 0, OpaqueLen)
	var buf [OpaqueLen * 2]byte
	for len(out) < OpaqueLen {
		if _, err := rand.Read(buf[:]); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b >= 248 {
				continue
			}
			if out = append(out, opaqueAlphabet[b%62]); len(out) == OpaqueLen {
				break
			}
		}
	}
	return string(out), nil
}

// TokenStore is what Opaque reads: syncpoint.Store has it.
type TokenStore interface {
	TokenByHash(ctx context.Context, hash []byte) (syncpoint.AccessToken, error)
}

// OpaqueConfig configures an Opaque verifier; Store is required.
type OpaqueConfig struct {
	Store TokenStore
	Clock clock.Clock // nil: clock.Real{}
	// CacheTTL is how long a verified token is remembered; 0 means
	// DefaultOpaqueCacheTTL, negative no cache at all.
	CacheTTL  time.Duration
	CacheSize int           // 0: DefaultOpaqueCacheSize
	Timeout   time.Duration // 0: DefaultOpaqueLookupTimeout
}

// Opaque verifies opaque tokens against the store. It is safe for
// concurrent use.
//
// It remembers verified tokens for CacheTTL, by the hash of the secret and
// never past the token's expiry, so a busy device does not cost a store
// read per request. Forget evicts a token at once, and a lookup that was
// under way when Forget ran does not put it back, so a revocation on this
// node takes effect at once. Another node keeps its entry until its
// CacheTTL runs out, unless it is told to Forget too: in a cluster the
// revocation reaches every node as a control event of the broker (the
// cluster issue), whose handler calls Forget and the feed's Revoke there.
type Opaque struct {
	store   TokenStore
	clock   clock.Clock
	ttl     time.Duration
	size    int
	timeout time.Duration

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cachedToken
	// gen counts Forget calls: a lookup inserts its result only if none
	// happened since it began.
	gen uint64
}

type cachedToken struct {
	claims syncpoint.Claims
	until  time.Time
}

// NewOpaque returns a verifier for cfg.
func NewOpaque(cfg OpaqueConfig) *Opaque {
	o := &Opaque{store: cfg.Store, clock: cfg.Clock, ttl: cfg.CacheTTL, size: cfg.CacheSize, timeout: cfg.Timeout, cache: make(map[[sha256.Size]byte]cachedToken)}
	if o.clock == nil {
		o.clock = clock.Real{}
	}
	if o.ttl == 0 {
		o.ttl = DefaultOpaqueCacheTTL
	}
	if o.size <= 0 {
		o.size = DefaultOpaqueCacheSize
	}
	if o.timeout <= 0 {
		o.timeout = DefaultOpaqueLookupTimeout
	}
	return o
}

// Verify is VerifyContext bounded by the lookup timeout, for the surfaces
// whose Verifier takes no context (the hub, SSE, HTTP sync).
func (o *Opaque) Verify(token string) (Claims, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return o.VerifyContext(ctx, token)
}

// VerifyContext checks an opaque token and returns its claims, with its id
// as TokenID. A token that is malformed, unknown, revoked or expired is an
// *syncpoint.Error with CodeUnauthorized; a store that fails gives its
// error, wrapped. No message names the token.
func (o *Opaque) VerifyContext(ctx context.Context, token string) (Claims, error) {
	if !IsOpaque(token) {
		return Claims{}, unauthorized("not an opaque token: want %d characters of [A-Za-z0-9]", OpaqueLen)
	}
	h := sha256.Sum256([]byte(token))
	now := o.clock.Now()
	o.mu.Lock()
	c, hit := o.cache[h]
	if hit && !now.Before(c.until) {
		delete(o.cache, h)
		hit = false
	}
	gen := o.gen
	o.mu.Unlock()
	if hit {
		return cloneClaims(c.claims), nil
	}
	tok, err := o.store.TokenByHash(ctx, h[:])
	if errors.Is(err, syncpoint.ErrNotFound) {
		return Claims{}, unauthorized("the token is unknown, revoked or expired")
	}
	if err != nil {
		return Claims{}, fmt.Errorf("look up opaque token: %w", err)
	}
	if tok.Expired(now) {
		return Claims{}, unauthorized("the token is unknown, revoked or expired")
	}
	claims := tok.Claims()
	if o.ttl > 0 {
		o.mu.Lock()
		if o.gen == gen {
			if len(o.cache) >= o.size {
				for k := range o.cache { // any one: the map's order is random
					delete(o.cache, k)
					break
				}
			}
			o.cache[h] = cachedToken{claims: claims, until: minTime(now.Add(o.ttl), tok.ExpiresAt)}
		}
		o.mu.Unlock()
	}
	return cloneClaims(claims), nil
}

// Forget evicts the token with this id, so that its next use asks the
// store; call it when the token is revoked.
func (o *Opaque) Forget(tokenID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	for k, c := range o.cache {
		if c.claims.TokenID == tokenID {
			delete(o.cache, k)
		}
	}
}

func cloneClaims(c Claims) Claims {
	c.Groups = slices.Clone(c.Groups)
	return c
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Tokens verifies every kind of device token: an opaque one (when the
// token has that form and Opaque is set) against the store, anything else
// as a JWT. The hub, SSE and HTTP sync take it as their Verifier, so a
// token good on one surface is good on all.
type Tokens struct {
	JWT    *Verifier
	Opaque *Opaque
}

// Verify implements the surfaces' Verifier.
func (t Tokens) Verify(token string) (Claims, error) {
	if t.Opaque != nil && IsOpaque(token) {
		return t.Opaque.Verify(token)
	}
	return t.JWT.Verify(token)
}
