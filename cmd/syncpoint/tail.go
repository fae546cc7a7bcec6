package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/wire"
)

// tailTokenTTL is how long a token minted by tail is valid.
const tailTokenTTL = 24 * time.Hour

// tailLine is one line of tail's output.
type tailLine struct {
	Channel   string          `json:"channel"`
	Seq       uint64          `json:"seq"`
	Op        string          `json:"op"`
	Key       string          `json:"key"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
	ExpiresAt time.Time       `json:"expires_at,omitzero"`
	Origin    string          `json:"origin"`
}

func newTailCmd(e env) *cobra.Command {
	var (
		c        clientFlags
		d        deviceFlags
		tcpAddr  string
		useTLS   bool
		tlsCA    string
		count    int
		encoding string
	)
	cmd := &cobra.Command{
		Use:   "tail --device ID --biz a,b (--token T | --user ID) [--count N]",
		Short: "Act as a device: print every entry it receives as a JSON line",
		Long: `Connect as a device with the Go SDK, subscribe to the bizzes, and print each
entry as one JSON line on stdout: channel, seq, op, key, data, created_at,
expires_at (when set) and origin. Sync points live in a state file (the
SDK's SQLite database; default ./DEVICE.syncpoint.db), so the next run
resumes where this one stopped. --count N exits 0 after N entries.

Each line is printed inside the transaction that records its entry as
applied, before that transaction commits: a crash can print a line again on
the next run, but never loses one.

A failure that retrying would repeat (a refused token, a refused biz, an
untrusted certificate, a server that does not speak TLS) ends tail with
exit 1 and the reason. Others (a refused connection, a server going away)
are retried with backoff, with one line on stderr for each retry (at
log level info, the default).

The server is --server (WebSocket), else DATA/server.json, else
$SYNCPOINT_SERVER; or --tcp HOST:PORT for raw TCP, with TLS when --tls or
--tls-ca is given. The token is --token, or one minted for --user (and
--groups) with the token secret: --token-secret, else DATA/secrets.json,
else $SYNCPOINT_TOKEN_SECRET.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := d.check(); err != nil {
				return err
			}
			switch {
			case count < 0:
				return usagef("--count must not be negative")
			case tcpAddr != "" && c.server != "":
				return usagef("give --server or --tcp, not both")
			case tcpAddr != "" && encoding == client.EncodingJSON:
				return usagef("--tcp speaks only protobuf; drop --encoding")
			case encoding != "" && encoding != client.EncodingJSON && encoding != client.EncodingProto:
				return usagef("--encoding %q: want json or proto", encoding)
			}
			cfg, err := d.config(e)
			if err != nil {
				return err
			}
			cfg.Encoding = encoding
			if tcpAddr != "" {
				tcps := splitList([]string{tcpAddr})
				cfg.TCP, cfg.Fallbacks = tcps[0], tcps[1:]
			} else if cfg.Server, cfg.Fallbacks, err = c.serverURLs(e); err != nil {
				return err
			}
			if tlsCA != "" || useTLS {
				if cfg.TLS, err = tailTLS(tlsCA); err != nil {
					return err
				}
			}
			if err := d.mintToken(e, &c, &cfg); err != nil {
				return err
			}
			return runTail(cmd.Context(), e, cfg, count)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&c.server, "server", "", "server URL for WebSocket; several, comma-separated, are the nodes of a cluster, tried in turn (default: from DATA/server.json, else $"+envServer+", else http://"+defaultListen+")")
	fl.StringVar(&tcpAddr, "tcp", "", "connect over raw TCP to HOST:PORT instead of WebSocket (several, comma-separated, tried in turn)")
	fl.BoolVar(&useTLS, "tls", false, "use TLS on --tcp, trusting the system roots (implied by --tls-ca)")
	fl.StringVar(&tlsCA, "tls-ca", "", "PEM file of the CA (or self-signed certificate) to trust for TLS")
	d.add(fl, "bizzes to subscribe to, comma-separated")
	fl.IntVar(&count, "count", 0, "exit after this many entries (0: run until interrupted)")
	fl.StringVar(&encoding, "encoding", "", "WebSocket encoding: json (default) or proto")
	c.addTokenSecret(fl)
	c.addDataDir(fl, true)
	return cmd
}

// tailTLS trusts caFile, or the system roots when it is empty.
func tailTLS(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("tail: read --tls-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("--tls-ca %s holds no PEM certificate", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// runTail streams entries to stdout until ctx is done or count entries were
// printed.
func runTail(ctx context.Context, e env, cfg client.Config, count int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	printed := 0
	var writeErr error
	var buf bytes.Buffer
	cfg.Handler = func(tx *sql.Tx, batch []client.Entry) error {
		n := len(batch)
		if count > 0 {
			n = min(n, count-printed)
		}
		buf.Reset()
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		for _, en := range batch[:n] {
			line := tailLine{Channel: en.Channel, Seq: en.Seq, Op: en.Op, Key: en.Key, Data: en.Data, CreatedAt: en.CreatedAt, ExpiresAt: en.ExpiresAt, Origin: en.Origin}
			if err := enc.Encode(line); err != nil {
				return fmt.Errorf("encode entry: %w", err)
			}
		}
		// Printed before the SDK commits: a crash repeats lines, never drops them.
		if _, err := e.stdout.Write(buf.Bytes()); err != nil {
			writeErr = err
			cancel()
			return err
		}
		printed += n
		if count > 0 && printed >= count {
			return client.StopAfter(n)
		}
		return nil
	}
	c, err := client.Open(cfg)
	if err != nil {
		return usageError{fmt.Errorf("tail: %w", err)}
	}
	runErr := c.Run(ctx)
	if err := c.Close(); err != nil && runErr == nil {
		runErr = err
	}
	if writeErr != nil {
		return fmt.Errorf("tail: write output: %w", writeErr)
	}
	var we *wire.Error
	var pe *client.PermanentError
	switch {
	case runErr == nil:
		return nil
	case errors.As(runErr, &pe):
		return fmt.Errorf("tail: not retrying: %w", pe)
	case errors.As(runErr, &we) && we.Code == wire.CloseUnauthorized:
		return fmt.Errorf("tail: the server refused the token: %s", we)
	case errors.As(runErr, &we) && we.Code == wire.CloseForbidden:
		return fmt.Errorf("tail: the server refused the subscription: %s", we)
	case errors.As(runErr, &we):
		return fmt.Errorf("tail: the server ended the session: %s", we)
	}
	return fmt.Errorf("tail: %w", runErr)
}
