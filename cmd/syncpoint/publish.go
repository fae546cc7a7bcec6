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
)

// publishRequest is the body of POST /v1/publish.
type publishRequest struct {
	Biz            string          `json:"biz"`
	Users          []string        `json:"users,omitempty"`
	Devices        []string        `json:"devices,omitempty"`
	Groups         []string        `json:"groups,omitempty"`
	Global         bool            `json:"global,omitempty"`
	Op             string          `json:"op,omitempty"`
	Key            string          `json:"key,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"`
	TTL            string          `json:"ttl,omitempty"`
	Platforms      []string        `json:"platforms,omitempty"`
	MinAppVersion  string          `json:"min_app_version,omitempty"`
	MaxAppVersion  string          `json:"max_app_version,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// maxResponseBytes bounds what the CLI reads of a response.
const maxResponseBytes = 64 << 20

func newPublishCmd(e env) *cobra.Command {
	var (
		c                      clientFlags
		req                    publishRequest
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
			base, err := c.serverURL(e)
			if err != nil {
				return err
			}
			key, err := c.resolveAPIKey(e)
			if err != nil {
				return err
			}
			body, err := json.Marshal(req)
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			out, err := postJSON(cmd, base+"/v1/publish", key, body, timeout)
			if err != nil {
				return err
			}
			if _, err := e.stdout.Write(out); err != nil {
				return err
			}
			return channelErrors(out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&req.Biz, "biz", "", "biz name")
	fl.StringSliceVar(&users, "user", nil, "user ids")
	fl.StringSliceVar(&devices, "device", nil, "device ids")
	fl.StringSliceVar(&groups, "group", nil, "group ids")
	fl.BoolVar(&req.Global, "global", false, "publish to the biz's global channel")
	fl.StringVar(&req.Op, "op", "", "msg (default), put or delete")
	fl.StringVar(&req.Key, "key", "", "record key (needed by put and delete)")
	fl.StringVar(&data, "data", "", "entry data: JSON, @FILE or @- for stdin")
	fl.DurationVar(&ttl, "ttl", 0, "how long the entry is valid (default: the biz's retention)")
	fl.StringSliceVar(&platforms, "platforms", nil, "only devices on these platforms (comma-separated)")
	fl.StringVar(&req.MinAppVersion, "min-app-version", "", "only devices with at least this app version")
	fl.StringVar(&req.MaxAppVersion, "max-app-version", "", "only devices with at most this app version")
	fl.StringVar(&req.IdempotencyKey, "idempotency-key", "", "a repeat with the same key returns the original seq")
	fl.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the server")
	c.addServer(fl)
	c.addDataDir(fl, false)
	return cmd
}

// readData returns --data as JSON: literal text, @FILE or @- for stdin.
func readData(e env, v string) (json.RawMessage, error) {
	var raw []byte
	switch {
	case v == "@-":
		b, err := io.ReadAll(io.LimitReader(e.stdin, maxResponseBytes))
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

// apiError is the error body of the business API.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// postJSON sends body with the API key and returns the response body of a
// 2xx answer; any other answer becomes an error with the server's message.
func postJSON(cmd *cobra.Command, url, apiKey string, body []byte, timeout time.Duration) ([]byte, error) {
	ctx := cmd.Context()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	client := &http.Client{Timeout: timeout}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("publish: read response: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return out, nil
	}
	var ae apiError
	if json.Unmarshal(out, &ae) == nil && ae.Error.Message != "" {
		return nil, fmt.Errorf("server refused the publish (HTTP %d, %s): %s", resp.StatusCode, ae.Error.Code, ae.Error.Message)
	}
	return nil, fmt.Errorf("server answered HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(out))
}

// channelErrors fails when any channel of a publish reported an error.
func channelErrors(out []byte) error {
	var r struct {
		Entries []struct {
			Channel string `json:"channel"`
			Error   *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return fmt.Errorf("publish: the server's answer is not JSON: %w", err)
	}
	var errs []error
	for _, e := range r.Entries {
		if e.Error != nil {
			errs = append(errs, fmt.Errorf("%s: %s: %s", e.Channel, e.Error.Code, e.Error.Message))
		}
	}
	return errors.Join(errs...)
}
