package pebble

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/syncpoint/syncpoint"
)

// SaveToken implements syncpoint.Store. The token, its hash row, its row
// under the user and its expiry row are written in one batch.
func (s *Store) SaveToken(ctx context.Context, tok syncpoint.AccessToken) error {
	if err := tok.Validate(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	tok.Groups = slices.Clone(tok.Groups)
	v := encodeToken(&tok)
	err := s.write(ctx, func(t *txn) error {
		if _, ok := t.get(tokenKey(tok.ID)); ok {
			return syncpoint.Errorf(syncpoint.CodeConflict, "token %s exists", tok.ID)
		}
		if _, ok := t.get(tokenHashKey(tok.Hash)); ok {
			return syncpoint.Errorf(syncpoint.CodeConflict, "a token with that secret exists")
		}
		t.set(tokenKey(tok.ID), v)
		t.set(tokenHashKey(tok.Hash), []byte(tok.ID))
		t.setBlind(userTokenKey(tok.User, tok.CreatedAt, tok.ID), nil)
		t.setBlind(expiryKey(tok.ExpiresAt, xToken, []byte(tok.ID)), nil)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save token %s: %w", tok.ID, err)
	}
	return nil
}

// TokenByHash implements syncpoint.Store; expiry is judged by the store's
// clock.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (syncpoint.AccessToken, error) {
	if len(hash) != syncpoint.AccessTokenHashLen {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "the hash is %d bytes; want %d", len(hash), syncpoint.AccessTokenHashLen))
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", err)
	}
	defer s.leave()
	id, ok, err := s.get(tokenHashKey(hash))
	if err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", err)
	}
	if !ok {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", syncpoint.ErrNotFound)
	}
	tok, err := s.token(string(id))
	if err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", err)
	}
	return tok, nil
}

// token reads a token that has not expired.
func (s *Store) token(id string) (syncpoint.AccessToken, error) {
	v, ok, err := s.get(tokenKey(id))
	if err != nil {
		return syncpoint.AccessToken{}, err
	}
	if !ok {
		return syncpoint.AccessToken{}, syncpoint.ErrNotFound
	}
	tok, err := decodeToken(id, v)
	if err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("token %s: %w", id, err)
	}
	if tok.Expired(s.clock.Now()) {
		return syncpoint.AccessToken{}, syncpoint.ErrNotFound
	}
	return tok, nil
}

// UserTokens implements syncpoint.Store.
func (s *Store) UserTokens(ctx context.Context, userID string) ([]syncpoint.AccessToken, error) {
	if err := syncpoint.ValidateID("user id", userID); err != nil {
		return nil, fmt.Errorf("user tokens: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("user tokens: %w", err)
	}
	defer s.leave()
	prefix := appendStr([]byte{pUserTok}, userID)
	var out []syncpoint.AccessToken
	err := s.scan(ctx, prefix, func(k, _ []byte) error {
		if len(k) < len(prefix)+timeLen {
			return errCorrupt
		}
		tok, err := s.token(string(k[len(prefix)+timeLen:]))
		switch {
		case errors.Is(err, syncpoint.ErrNotFound):
			return nil // expired, and not swept yet
		case err != nil:
			return err
		}
		out = append(out, tok)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("tokens of user %s: %w", userID, err)
	}
	return out, nil
}

// DeleteToken implements syncpoint.Store.
func (s *Store) DeleteToken(ctx context.Context, id string) (syncpoint.AccessToken, error) {
	if err := syncpoint.ValidateTokenID(id); err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("delete token: %w", err)
	}
	var tok syncpoint.AccessToken
	err := s.write(ctx, func(t *txn) error {
		v, ok := t.get(tokenKey(id))
		if !ok {
			return syncpoint.ErrNotFound
		}
		var err error
		if tok, err = decodeToken(id, v); err != nil {
			return fmt.Errorf("token %s: %w", id, err)
		}
		if tok.Expired(t.now) {
			return syncpoint.ErrNotFound
		}
		t.dropToken(&tok)
		return nil
	})
	if err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("delete token %s: %w", id, err)
	}
	return tok, nil
}

// dropToken deletes a token's rows but its expiry row, which the sweep
// finds stale.
func (t *txn) dropToken(tok *syncpoint.AccessToken) {
	t.del(tokenKey(tok.ID))
	t.del(tokenHashKey(tok.Hash))
	t.delBlind(userTokenKey(tok.User, tok.CreatedAt, tok.ID))
}

// sweepToken removes the token an expiry row names, if it has expired by
// now: a token saved again under the id (never, with random ids) is kept.
func (s *Store) sweepToken(t *txn, sw *sweep, id string) {
	v, ok := t.get(tokenKey(id))
	if !ok {
		return
	}
	tok, err := decodeToken(id, v)
	if err != nil {
		s.log.Warn("sweep: removing a corrupt token row", "id", id, "err", err)
		t.del(tokenKey(id))
		return
	}
	if tok.Expired(sw.now) {
		t.dropToken(&tok)
	}
}
