package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
)

// maxDataBytes bounds what --data @- reads from stdin.
const maxDataBytes = 64 << 20

func newPublishCmd(e env) *cobra.Command {
	var (
		c                      clientFlags
		req                    apiclient.PublishRequest
		users, devices, groups []string
		platforms              []string
		data                   string
		ttl                    time.Duration
		timeout                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "publish --biz NAME (--user ID | --device ID | --group ID | --global) [--data JSON]",
		Short: "Publish an entry through the business API",
		Long: `Publish one entry to one or more targets of a biz with POST /v1/publish,
and print the server's JSON answer: each channel's seq and epoch.

--data takes JSON text, @FILE to read it from a file, or @- for stdin.
--user, --device and --group take comma-separated lists and may be repeated.
The server and API key come from --server/--api-key, else from the data dir
(--data-dir, default ./syncpoint-data), else from $SYNCPOINT_SERVER and
$SYNCPOINT_API_KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if req.Biz == "" {
				return usagef("--biz is required")
			}
			req.Users, req.Devices, req.Groups = splitList(users), splitList(devices), splitList(groups)
			req.Platforms = splitList(platforms)
			if len(req.Users)+len(req.Devices)+len(req.Groups) == 0 && !req.Global {
				return usagef("no target: give --user, --device, --group or --global")
			}
			if cmd.Flags().Changed("ttl") {
				if ttl <= 0 {
					return usagef("--ttl must be positive")
				}
				req.TTL = ttl.String()
			}
			if cmd.Flags().Changed("data") {
				raw, err := readData(e, data)
				if err != nil {
					return err
				}
				req.Data = raw
			}
			// What the server would refuse whatever the biz is a mistake
			// on the command line (exit 2), not a failure.
			if _, _, err := req.Check(); err != nil {
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
			out, err := api.Do(cmd.Context(), http.MethodPost, "/v1/publish", req.AppendJSON(nil))
			if err != nil {
				return publishError(err)
			}
			if _, err := e.stdout.Write(out); err != nil {
				return err
			}
			var resp apiclient.PublishResponse
			if err := json.Unmarshal(out, &resp); err != nil {
				return fmt.Errorf("publish: the server's answer is not JSON: %w", err)
			}
			return resp.Err()
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Biz, "biz", "", "biz name")
	fl.StringSliceVar(&users, "user", nil, "user ids")
	fl.StringSliceVar(&devices, "device", nil, "device ids")
	fl.StringSliceVar(&groups, "group", nil, "group ids")
	fl.BoolVar(&req.Global, "global", false, "publish to the biz's global channel")
	fl.StringVar((*string)(&req.Op), "op", "", "msg (default), put or delete")
	fl.StringVar(&req.Key, "key", "", "record key (needed by put and delete)")
	fl.StringVar(&data, "data", "", "entry data: JSON, @FILE or @- for stdin")
	fl.DurationVar(&ttl, "ttl", 0, "how long the entry is valid (default: the biz's retention)")
	fl.StringSliceVar(&platforms, "platforms", nil, "only devices on these platforms (comma-separated)")
	fl.StringVar(&req.MinAppVersion, "min-app-version", "", "only devices with at least this app version")
	fl.StringVar(&req.MaxAppVersion, "max-app-version", "", "only devices with at most this app version")
	fl.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a repeat with the same key returns the original seq")
	fl.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the server")
	c.addServer(fl)
	c.addTLSCA(fl)
	c.addDataDir(fl, false)
	return cmd
}

// readData returns --data as JSON: literal text, @FILE or @- for stdin.
func readData(e env, v string) (json.RawMessage, error) {
	var raw []byte
	switch {
	case v == "@-":
		b, err := io.ReadAll(io.LimitReader(e.stdin, maxDataBytes))
		if err != nil {
			return nil, fmt.Errorf("read --data from stdin: %w", err)
		}
		raw = b
	case strings.HasPrefix(v, "@"):
		b, err := os.ReadFile(v[1:])
		if err != nil {
			return nil, fmt.Errorf("read --data: %w", err)
		}
		raw = b
	default:
		raw = []byte(v)
	}
	raw = bytes.TrimSpace(raw)
	if !json.Valid(raw) {
		return nil, usagef("--data is not valid JSON; quote a string as --data '\"text\"'")
	}
	return raw, nil
}

// publishError words a failed publish request for the command line.
func publishError(err error) error {
	var se *apiclient.StatusError
	if errors.As(err, &se) {
		if se.Code != "" {
			return fmt.Errorf("server refused the publish (HTTP %d, %s): %s", se.Status, se.Code, se.Message)
		}
		return fmt.Errorf("server answered HTTP %d: %s", se.Status, bytes.TrimSpace(se.Body))
	}
	return fmt.Errorf("publish: %w", err)
}
