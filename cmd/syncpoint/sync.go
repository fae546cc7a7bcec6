package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/client"
)

func newSyncCmd(e env) *cobra.Command {
	var (
		c clientFlags
		d deviceFlags
	)
	cmd := &cobra.Command{
		Use:   "sync --device ID --biz a,b (--token T | --user ID)",
		Short: "Act as a device: one HTTP sync pass, no socket",
		Long: `Run one sync pass as a device over plain HTTP, with the Go SDK's SyncOnce:
everything new comes through one-shot sync (POST /v1/sync) page by page,
then the device's outbox goes out through POST /v1/write. Each new entry is
printed as one JSON line on stdout, as tail prints it, inside the
transaction that records it as applied, and sync exits once the pass is
done. The state file (the SDK's SQLite database; default
./DEVICE.syncpoint.db) keeps the sync points, so the next run, of sync or
of tail, goes on where this one stopped.

The server is --server, else DATA/server.json, else $SYNCPOINT_SERVER.
The token is --token, or one minted for --user (and --groups) with the
token secret: --token-secret, else DATA/secrets.json, else
$SYNCPOINT_TOKEN_SECRET. A refused token or biz ends sync with exit 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.check(); err != nil {
				return err
			}
			cfg, err := d.config(e)
			if err != nil {
				return err
			}
			if cfg.Server, cfg.Fallbacks, err = c.serverURLs(e); err != nil {
				return err
			}
			if c.tlsCA != "" {
				if cfg.TLS, err = tailTLS(c.tlsCA); err != nil {
					return err
				}
			}
			if err := d.mintToken(e, &c, &cfg); err != nil {
				return err
			}
			return runSync(cmd, e, cfg)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.server, "server", "", "server URL; several, comma-separated, are the nodes of a cluster, tried in turn (default: from DATA/server.json, else $"+envServer+", else http://"+defaultListen+")")
	c.addTLSCA(fl)
	d.add(fl, "bizzes to sync, comma-separated")
	c.addTokenSecret(fl)
	c.addDataDir(fl, true)
	return cmd
}

// runSync runs one pass, printing each new entry as a JSON line.
func runSync(cmd *cobra.Command, e env, cfg client.Config) error {
	var buf bytes.Buffer
	var writeErr error
	cfg.Handler = func(tx *sql.Tx, batch []client.Entry) error {
		buf.Reset()
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, en := range batch {
			line := tailLine{Channel: en.Channel, Seq: en.Seq, Op: en.Op, Key: en.Key, Data: en.Data, CreatedAt: en.CreatedAt, ExpiresAt: en.ExpiresAt, Origin: en.Origin}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("encode entry: %w", err)
			}
		}
		// Printed before the SDK commits: a crash repeats lines, never drops them.
		if _, err := e.stdout.Write(buf.Bytes()); err != nil {
			writeErr = err
			return err
		}
		return nil
	}
	c, err := client.Open(cfg)
	if err != nil {
		return usageError{fmt.Errorf("sync: %w", err)}
	}
	syncErr := c.SyncOnce(cmd.Context())
	if err := c.Close(); err != nil && syncErr == nil {
		syncErr = err
	}
	if writeErr != nil {
		return fmt.Errorf("sync: write output: %w", writeErr)
	}
	switch code := syncpoint.Code(syncErr); {
	case syncErr == nil:
		return nil
	case errors.Is(syncErr, cmd.Context().Err()):
		return fmt.Errorf("sync: interrupted; the next run goes on from what was applied")
	case code == syncpoint.CodeUnauthorized:
		return fmt.Errorf("sync: the server refused the token: %s", syncpoint.Message(syncErr))
	case code == syncpoint.CodeForbidden:
		return fmt.Errorf("sync: the server refused the sync: %s", syncpoint.Message(syncErr))
	}
	return fmt.Errorf("sync: %w", syncErr)
}
