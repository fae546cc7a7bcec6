package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/syncpoint/syncpoint"
)

const tokenCols = `id, hash, user_id, groups, label, created_at, expires_at`

func tokenDest(t *syncpoint.AccessToken) []any {
	return []any{&t.ID, &t.Hash, &t.User, &t.Groups, &t.Label, &t.CreatedAt, &t.ExpiresAt}
}

// SaveToken implements syncpoint.Store. The table's keys on id and hash
// refuse a second token with either; the insert runs through once, so
// that a retry after a lost answer to COMMIT does not meet the token it
// saved itself.
func (s *Store) SaveToken(ctx context.Context, tok syncpoint.AccessToken) error {
	if err := tok.Validate(); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	groups := tok.Groups
	if groups == nil {
		groups = []string{}
	}
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	defer s.leave()
	err := s.once(ctx, "save token", smallTx, func(ctx context.Context, t *onceTx) error {
		b := &pgx.Batch{}
		t.begin(b)
		b.Queue(`INSERT INTO access_tokens (`+tokenCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			tok.ID, tok.Hash, tok.User, groups, tok.Label, tok.CreatedAt, tok.ExpiresAt)
		return t.commit(ctx, b)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" { // unique_violation
		what := "a token with that secret exists"
		if pe.ConstraintName == "access_tokens_pkey" {
			what = fmt.Sprintf("token %s exists", tok.ID)
		}
		err = syncpoint.Errorf(syncpoint.CodeConflict, "%s", what)
	}
	if err != nil {
		return fmt.Errorf("save token %s: %w", tok.ID, giveUp(err))
	}
	return nil
}

// TokenByHash implements syncpoint.Store; expiry is judged by the store's
// clock.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (syncpoint.AccessToken, error) {
	if len(hash) != syncpoint.AccessTokenHashLen {
		return syncpoint.AccessToken{}, fmt.Errorf("token by hash: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "the hash is %d bytes; want %d", len(hash), syncpoint.AccessTokenHashLen))
	}
	var tok syncpoint.AccessToken
	err := s.read(ctx, "token by hash", func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `SELECT `+tokenCols+` FROM access_tokens WHERE hash = $1 AND expires_at > $2`, hash, s.clock.Now()).
			Scan(tokenDest(&tok)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncpoint.ErrNotFound
		}
		return err
	})
	if err != nil {
		return syncpoint.AccessToken{}, err
	}
	return tok, nil
}

// UserTokens implements syncpoint.Store. Tokens created at the same time
// come in id order.
func (s *Store) UserTokens(ctx context.Context, userID string) ([]syncpoint.AccessToken, error) {
	if err := syncpoint.ValidateID("user id", userID); err != nil {
		return nil, fmt.Errorf("user tokens: %w", err)
	}
	var out []syncpoint.AccessToken
	err := s.read(ctx, "tokens of user "+userID, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT `+tokenCols+` FROM access_tokens WHERE user_id = $1 AND expires_at > $2
			ORDER BY created_at DESC, id`, userID, s.clock.Now())
		if err != nil {
			return err
		}
		var tok syncpoint.AccessToken
		_, err = pgx.ForEachRow(rows, tokenDest(&tok), func() error {
			t := tok
			t.Groups = slices.Clone(tok.Groups)
			out = append(out, t)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteToken implements syncpoint.Store. It runs through once, so that a
// retry after a lost answer to COMMIT does not find its own deletion and
// answer ErrNotFound.
func (s *Store) DeleteToken(ctx context.Context, id string) (syncpoint.AccessToken, error) {
	if err := syncpoint.ValidateTokenID(id); err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("delete token: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("delete token: %w", err)
	}
	defer s.leave()
	var tok syncpoint.AccessToken
	err := s.once(ctx, "delete token", smallTx, func(ctx context.Context, t *onceTx) error {
		found := false
		b := &pgx.Batch{}
		t.begin(b)
		b.Queue(`DELETE FROM access_tokens WHERE id = $1 AND expires_at > $2 RETURNING `+tokenCols, id, s.clock.Now()).
			Query(func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, tokenDest(&tok), func() error { found = true; return nil })
				return err
			})
		if err := t.send(ctx, b); err != nil {
			return err
		}
		if !found {
			t.rollback()
			return syncpoint.ErrNotFound
		}
		return t.commit(ctx, &pgx.Batch{})
	})
	if err != nil {
		return syncpoint.AccessToken{}, fmt.Errorf("delete token %s: %w", id, giveUp(err))
	}
	return tok, nil
}
