package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
)

// Opaque access tokens, as POST /v1/tokens mints them.
const (
	// DefaultTokenTTL is a token's life when the request names none.
	DefaultTokenTTL = 30 * 24 * time.Hour
	// MinTokenTTL and MaxTokenTTL bound the ttl a request may name.
	MinTokenTTL = time.Minute
	MaxTokenTTL = 365 * 24 * time.Hour
	// MaxTokensPerUser bounds the live tokens of one user, so that a
	// backend minting in a loop fills no disk.
	MaxTokensPerUser = 100
)

// tokenInput is the body of POST /v1/tokens.
type tokenInput struct {
	User   string   `json:"user"`
	Groups []string `json:"groups"`
	TTL    string   `json:"ttl"`
	Label  string   `json:"label"`
}

// tokenView is a token as GET /v1/users/{id}/tokens lists it: never with
// its secret, which is not kept.
type tokenView struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Groups    []string  `json:"groups"`
	Label     string    `json:"label"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// mintedToken is the answer of POST /v1/tokens: the only time the secret is
// shown.
type mintedToken struct {
	tokenView
	Token string `json:"token"`
}

func viewOfToken(t syncpoint.AccessToken) tokenView {
	groups := t.Groups
	if groups == nil {
		groups = []string{}
	}
	return tokenView{ID: t.ID, User: t.User, Groups: groups, Label: t.Label, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

// decodeTokenInput decodes and checks a POST /v1/tokens body and returns it
// with its ttl. Errors are *syncpoint.Error.
func decodeTokenInput(body []byte) (tokenInput, time.Duration, error) {
	var in tokenInput
	err := checkIJSON(body)
	if err == nil {
		err = decodeStrict(body, &in)
	}
	if err != nil {
		return tokenInput{}, 0, err
	}
	if err := syncpoint.ValidateID("user", in.User); err != nil {
		return tokenInput{}, 0, syncpoint.WithField(err, "user")
	}
	if err := syncpoint.ValidateGroups(in.Groups); err != nil {
		return tokenInput{}, 0, syncpoint.WithField(err, "groups")
	}
	if err := syncpoint.ValidateTokenLabel(in.Label); err != nil {
		return tokenInput{}, 0, syncpoint.WithField(err, "label")
	}
	ttl := DefaultTokenTTL
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d < MinTokenTTL || d > MaxTokenTTL {
			return tokenInput{}, 0, syncpoint.FieldErrorf(syncpoint.CodeInvalid, "ttl", "ttl %q: want a duration from %s to %s, such as 24h (the default is %s)", clip(in.TTL), MinTokenTTL, MaxTokenTTL, DefaultTokenTTL)
		}
		ttl = d
	}
	return in, ttl, nil
}

// handleMintToken mints an opaque access token. The secret is in this
// answer only; the store keeps its hash.
func (s *Server) handleMintToken(w http.ResponseWriter, r *http.Request) error {
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	in, ttl, err := decodeTokenInput(body)
	done()
	if err != nil {
		return err
	}
	ctx := r.Context()
	held, err := s.store.UserTokens(ctx, in.User)
	if err != nil {
		return fmt.Errorf("tokens of %s: %w", in.User, err)
	}
	if len(held) >= MaxTokensPerUser {
		return syncpoint.FieldErrorf(syncpoint.CodeInvalid, "user", "user %s holds %d tokens, the most one user may; revoke one first", in.User, len(held))
	}
	tok, secret, err := auth.MintOpaque(in.User, in.Groups, in.Label, s.clock.Now().UTC().Truncate(time.Millisecond), ttl)
	if err != nil {
		return err
	}
	if err := s.store.SaveToken(ctx, tok); err != nil {
		return fmt.Errorf("save token: %w", err)
	}
	s.logger.Info("httpapi: access token minted", "token_id", tok.ID, "user", tok.User, "expires_at", tok.ExpiresAt)
	// The answer carries a secret: no cache may keep it.
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, mintedToken{tokenView: viewOfToken(tok), Token: secret})
	return nil
}

func (s *Server) handleUserTokens(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := syncpoint.ValidateID("user id", id); err != nil {
		return err
	}
	toks, err := s.store.UserTokens(r.Context(), id)
	if err != nil {
		return fmt.Errorf("tokens of %s: %w", id, err)
	}
	out := make([]tokenView, 0, len(toks))
	for _, t := range toks {
		out = append(out, viewOfToken(t))
	}
	writeJSON(w, http.StatusOK, struct {
		Tokens []tokenView `json:"tokens"`
	}{out})
	return nil
}

// handleRevokeToken deletes a token and then has the node drop it: the
// verifier's cache forgets it and the sessions and streams opened with it
// close with 4001 (Config.OnTokenRevoked).
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := syncpoint.ValidateTokenID(id); err != nil {
		return err
	}
	tok, err := s.store.DeleteToken(r.Context(), id)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "no token %s: it never existed, was revoked or expired", id)
	}
	if err != nil {
		return fmt.Errorf("delete token %s: %w", id, err)
	}
	if s.onRevoke != nil {
		s.onRevoke(id)
	}
	s.logger.Info("httpapi: access token revoked", "token_id", id, "user", tok.User)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// clip bounds text from a client before it goes into a message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "..."
}
