package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/oklog/ulid/v2"
	"github.com/spf13/cobra"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

func newWriteCmd(e env) *cobra.Command {
	var (
		c        clientFlags
		token    string
		user     string
		groups   []string
		device   string
		biz      string
		target   string
		id       string
		baseSeq  uint64
		del      bool
		data     string
		fields   []string
		writeID  string
		platform string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "write --device D --biz B --id ID [--base-seq N] [--delete] [--data JSON]",
		Short: "Upload one record change as a device and print the result",
		Long: `Connect as a device over WebSocket and upload one change to a writable biz:
a create (no --base-seq), an update (--base-seq and --data) or a delete
(--delete and --base-seq). Print the write_result as JSON.

The exit code is 0 when the change was saved, and 1 when the token was
refused, the write failed as a whole, or the change came back with an error
(a conflict, for example; the result on stdout says which).

--data takes JSON text, @FILE or @- for stdin. The token is --token, or one
minted for --user (and --groups) with the token secret: --token-secret, else
the data dir's secrets.json (--data-dir), else $SYNCPOINT_TOKEN_SECRET.
--write-id defaults to a new ULID; send the same one again to retry a write
whose result was lost: it is applied once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case device == "":
				return usagef("--device is required")
			case biz == "":
				return usagef("--biz is required")
			case id == "":
				return usagef("--id is required")
			case token == "" && user == "":
				return usagef("give --token, or --user to mint a token")
			case del && !cmd.Flags().Changed("base-seq"):
				return usagef("--delete needs --base-seq, the seq of the version deleted")
			case del && cmd.Flags().Changed("data"):
				return usagef("--delete takes no --data")
			case !del && !cmd.Flags().Changed("data"):
				return usagef("--data is required to create or update a record")
			case cmd.Flags().Changed("base-seq") && baseSeq == 0:
				return usagef("--base-seq must be at least 1")
			}
			if err := syncpoint.ValidateID("--device", device); err != nil {
				return usagef("%s", syncpoint.Message(err))
			}
			if err := syncpoint.ValidateBizName(biz); err != nil {
				return usagef("--biz: %s", syncpoint.Message(err))
			}
			if target != "" {
				if _, err := syncpoint.ParseTarget(target); err != nil {
					return usagef("--target: %s", syncpoint.Message(err))
				}
			}
			rec := wire.Record{ID: id, BaseSeq: baseSeq, Fields: splitList(fields)}
			if !del {
				raw, err := readData(e, data)
				if err != nil {
					return err
				}
				rec.Data = raw
			}
			cs := wire.ChangeSet{Biz: biz, Target: target}
			switch {
			case del:
				cs.Deleted = []wire.Record{rec}
			case baseSeq > 0:
				cs.Updated = []wire.Record{rec}
			default:
				cs.Created = []wire.Record{rec}
			}
			if writeID == "" {
				writeID = ulid.Make().String()
			}
			base, err := c.serverURL(e)
			if err != nil {
				return err
			}
			if token == "" {
				if token, err = c.mintDeviceToken(e, user, groups, time.Hour); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			hello := &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: token, DeviceID: device, Platform: platform}
			hc, err := c.httpClient(0)
			if err != nil {
				return err
			}
			res, err := uploadOnce(ctx, base, hc, hello, &wire.Write{WriteID: writeID, Changes: []wire.ChangeSet{cs}})
			if err != nil {
				return err
			}
			out, err := resultJSON(res)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintf(e.stdout, "%s\n", out); err != nil {
				return err
			}
			if res.Error != nil {
				return fmt.Errorf("the write failed: %s (%s); retry with --write-id %s", res.Error.Message, res.Error.Reason, writeID)
			}
			if len(res.Saved) == 0 && len(res.Errors) > 0 {
				re := res.Errors[0]
				return fmt.Errorf("the change was refused: %s: %s", re.Code, re.Message)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&device, "device", "", "the device id to write as")
	fl.StringVar(&biz, "biz", "", "a writable biz")
	fl.StringVar(&target, "target", "", "the channel's target, such as group:g1 (default: the device's own user, device or global channel)")
	fl.StringVar(&id, "id", "", "the record id: a UUID, a ULID or a 24-hex ObjectId")
	fl.Uint64Var(&baseSeq, "base-seq", 0, "the seq of the version changed (update, delete)")
	fl.BoolVar(&del, "delete", false, "delete the record")
	fl.StringVar(&data, "data", "", "the whole record: a JSON object, @FILE or @- for stdin")
	fl.StringSliceVar(&fields, "fields", nil, "for merge bizzes: the top-level fields changed (comma-separated)")
	fl.StringVar(&writeID, "write-id", "", "the write's id (default: a new ULID)")
	fl.StringVar(&token, "token", "", "the device token")
	fl.StringVar(&user, "user", "", "mint a token for this user instead of --token")
	fl.StringSliceVar(&groups, "groups", nil, "groups for the minted token")
	fl.StringVar(&platform, "platform", "cli", "the platform the device reports")
	fl.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the server")
	fl.StringVar(&c.server, "server", "", "server URL (default: from DATA/server.json, else $"+envServer+", else http://"+defaultListen+")")
	c.addTokenSecret(fl)
	c.addTLSCA(fl)
	c.addDataDir(fl, false)
	return cmd
}

// uploadOnce opens a session with hello, sends w and returns its result.
func uploadOnce(ctx context.Context, base string, hc *http.Client, hello *wire.Hello, w *wire.Write) (*wire.WriteResult, error) {
	url := "ws" + strings.TrimPrefix(base, "http") + "/v1/connect"
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", url, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(wire.DefaultMaxFrameBytes)
	send := func(f *wire.Frame) error {
		b, err := wire.EncodeJSON(nil, f)
		if err != nil {
			return fmt.Errorf("encode %s: %w", f.Type(), err)
		}
		if err := conn.Write(ctx, websocket.MessageText, b); err != nil {
			return fmt.Errorf("send %s: %w", f.Type(), err)
		}
		return nil
	}
	// next returns the next frame that is not a ping (answered) or a push.
	next := func() (*wire.Frame, error) {
		for {
			_, b, err := conn.Read(ctx)
			if err != nil {
				var ce websocket.CloseError
				if errors.As(err, &ce) {
					return nil, fmt.Errorf("the server closed the session: %d %s", ce.Code, ce.Reason)
				}
				return nil, fmt.Errorf("read: %w", err)
			}
			f, err := wire.DecodeJSON(b)
			if err != nil {
				return nil, fmt.Errorf("the server sent a bad frame: %w", err)
			}
			switch {
			case f.Ping != nil:
				if err := send(&wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}}); err != nil {
					return nil, err
				}
			case f.Push != nil:
			default:
				return f, nil
			}
		}
	}
	if err := send(&wire.Frame{Hello: hello}); err != nil {
		return nil, err
	}
	f, err := next()
	if err != nil {
		return nil, err
	}
	if f.Error != nil {
		if f.Error.Code == wire.CloseUnauthorized {
			return nil, fmt.Errorf("the server refused the token: %s", f.Error.Message)
		}
		return nil, fmt.Errorf("the server refused the session: %s (%s)", f.Error.Message, f.Error.Reason)
	}
	if f.Welcome == nil {
		return nil, fmt.Errorf("the server answered the hello with %s", f.Type())
	}
	if err := send(&wire.Frame{Write: w}); err != nil {
		return nil, err
	}
	for {
		f, err := next()
		if err != nil {
			return nil, err
		}
		switch {
		case f.WriteResult != nil && f.WriteResult.WriteID == w.WriteID:
			conn.Close(websocket.StatusNormalClosure, "")
			return f.WriteResult, nil
		case f.Error != nil:
			return nil, fmt.Errorf("the server refused the write: %s (%s)", f.Error.Message, f.Error.Reason)
		}
	}
}

// resultJSON is the write_result in the protocol's JSON form.
func resultJSON(r *wire.WriteResult) ([]byte, error) {
	b, err := wire.EncodeJSON(nil, &wire.Frame{WriteResult: r})
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	var frame map[string]json.RawMessage
	if err := json.Unmarshal(b, &frame); err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return frame["write_result"], nil
}
