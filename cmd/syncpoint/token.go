package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newTokenCmd(e env) *cobra.Command {
	var (
		c      clientFlags
		user   string
		groups []string
		ttl    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token --user ID [--groups g1,g2] [--ttl 24h]",
		Short: "Mint a device token (HS256) for development",
		Long: `Mint an HS256 device token for a user, signed with the server's token
secret: --token-secret, else DATA/secrets.json, else $SYNCPOINT_TOKEN_SECRET.
Production backends mint their own tokens with the same secret.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if user == "" {
				return usagef("--user is required")
			}
			if ttl <= 0 {
				return usagef("--ttl must be positive")
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
	c.addTokenSecret(fl)
	c.addDataDir(fl, true)
	return cmd
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
