package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

func newTokenCmd(e env) *cobra.Command {
	var (
		c       clientFlags
		user    string
		groups  []string
		ttl     time.Duration
		opaque  bool
		label   string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --user ID [--groups g1,g2] [--ttl 24h] [--opaque [--label L]]",
		Short: "Mint a device token: a JWT (HS256) for development, or an opaque access token",
		Long: `Mint an HS256 device token for a user, signed with the server's token
secret: --token-secret, else DATA/secrets.json, else $SYNCPOINT_TOKEN_SECRET.
Production backends mint their own tokens with the same secret.

With --opaque, ask the server for an opaque access token instead (POST
/v1/tokens with the API key, found as for publish): 64 characters that the
server keeps only hashed, and that can be listed and revoked. The token is
printed on stdout; its id, which revokes it (DELETE /v1/tokens/ID), and its
expiry on stderr. The server never shows the token again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("--user is required")
			}
			if ttl <= 0 {
				return usagef("--ttl must be positive")
			}
			if opaque {
				return mintOpaque(cmd.Context(), e, &c, user, splitList(groups), ttl, label, timeout)
			}
			if cmd.Flags().Changed("label") {
				return usagef("--label goes with --opaque")
			}
			tok, err := c.mintDeviceToken(e, user, groups, ttl)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, tok)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&user, "user", "", "user id (the token's sub)")
	fl.StringSliceVar(&groups, "groups", nil, "groups the token grants, comma-separated or repeated")
	fl.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	fl.BoolVar(&opaque, "opaque", false, "mint an opaque access token through the server's API")
	fl.StringVar(&label, "label", "", "with --opaque: where the token is used, for people")
	fl.DurationVar(&timeout, "timeout", 30*time.Second, "with --opaque: how long to wait for the server")
	c.addTokenSecret(fl)
	c.addServer(fl)
	c.addTLSCA(fl)
	c.addDataDir(fl, true)
	return cmd
}

// mintOpaque asks the server for an opaque access token and prints it.
func mintOpaque(ctx context.Context, e env, c *clientFlags, user string, groups []string, ttl time.Duration, label string, timeout time.Duration) error {
	// What the server would refuse whatever its state is a mistake on the
	// command line.
	if err := syncpoint.ValidateID("user", user); err != nil {
		return usagef("%s", syncpoint.Message(err))
	}
	if err := syncpoint.ValidateGroups(groups); err != nil {
		return usagef("%s", syncpoint.Message(err))
	}
	if err := syncpoint.ValidateTokenLabel(label); err != nil {
		return usagef("%s", syncpoint.Message(err))
	}
	base, err := c.serverURL(e)
	if err != nil {
		return err
	}
	key, err := c.resolveAPIKey(e)
	if err != nil {
		return err
	}
	hc, err := c.httpClient(timeout)
	if err != nil {
		return err
	}
	api := &apiclient.Client{BaseURL: base, APIKey: key, HTTP: hc}
	in := struct {
		User   string   `json:"user"`
		Groups []string `json:"groups,omitempty"`
		TTL    string   `json:"ttl"`
		Label  string   `json:"label,omitempty"`
	}{user, groups, ttl.String(), label}
	var out struct {
		ID        string    `json:"id"`
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	if err := api.Call(ctx, http.MethodPost, "/v1/tokens", in, &out); err != nil {
		var se *apiclient.StatusError
		if errors.As(err, &se) && se.Code != "" {
			return fmt.Errorf("server refused the token (HTTP %d, %s): %s", se.Status, se.Code, se.Message)
		}
		return fmt.Errorf("mint token: %w", err)
	}
	if _, err := fmt.Fprintln(e.stdout, out.Token); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stderr, "token %s, expires %s\n", out.ID, out.ExpiresAt.UTC().Format(time.RFC3339))
	return err
}

// splitList flattens repeated, comma-separated flag values and drops empty
// items.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}
