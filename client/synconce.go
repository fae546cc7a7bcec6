package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// syncPageLimit is how many changes one request of SyncOnce asks for: the
// server's most.
const syncPageLimit = 1000

// syncRequestTimeout bounds one HTTP request of SyncOnce.
const syncRequestTimeout = time.Minute

// maxSyncPages bounds the pages of one pull, so a server that always says
// more cannot keep SyncOnce going for ever; the next pass goes on.
const maxSyncPages = 100_000

// SyncOnce runs one sync pass over plain HTTP, with no socket: for
// background jobs (an iOS background refresh, a cron job, a serverless
// function) that get a few seconds and cannot hold a connection. It pulls
// everything new through one-shot sync (POST /v1/sync), page by page, then
// sends the outbox (POST /v1/write), and pulls once more when the server
// saved any of it, so the local records are the server's versions.
//
// It applies what it pulls exactly as Run applies a push: in one local
// transaction per page, dropping what is at or below the channel's
// position, calling Config.Handler inside it, and storing the new
// positions with the data. A reset or gap of a compact biz is reconciled
// by manifest (POST /v1/sync/reconcile) as Run does, instead of dropping
// the channel's records and downloading them again. The outbox keeps its
// rules too: each write's
// write_id is stored before it is sent, and a write whose answer did not
// arrive goes again with the same write_id. So a pass that fails half way
// loses nothing, and the next pass, or Run, goes on from what committed.
// Notices (OnReset, OnGap, OnConflict, OnWriteError) are handed over as by
// Run.
//
// It needs Config.Server (TCP is a socket transport), and must not run
// beside Run or another SyncOnce. It returns nil once a pass completed or
// a Handler returned StopAfter; otherwise the first failure, and what
// committed before it stays.
func (c *Client) SyncOnce(ctx context.Context) error {
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return ErrClosed
	case c.running:
		c.mu.Unlock()
		return errors.New("client: SyncOnce while Run is running")
	}
	c.mu.Unlock()
	if c.cfg.Server == "" {
		return errors.New("client: SyncOnce needs Config.Server: it syncs over HTTP")
	}
	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		t, err := c.cfg.TokenFunc(ctx)
		if err != nil {
			return fmt.Errorf("client: get token: %w", err)
		}
		token = t
	}
	h := &httpSync{c: c, token: token, base: strings.TrimRight(c.server(), "/"),
		http: &http.Client{Timeout: syncRequestTimeout, Transport: &http.Transport{TLSClientConfig: c.cfg.TLS, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}}}
	defer h.http.CloseIdleConnections()
	if err := c.deliverNotices(ctx); err != nil {
		return fmt.Errorf("client: deliver notices: %w", err)
	}
	stopped, err := h.pull(ctx)
	if err != nil || stopped {
		return err
	}
	saved, err := h.sendOutbox(ctx)
	if err != nil {
		return err
	}
	if saved {
		if _, err := h.pull(ctx); err != nil {
			return err
		}
	}
	return nil
}

// httpSync is one pass of SyncOnce.
type httpSync struct {
	c     *Client
	token string
	base  string
	http  *http.Client
}

// The one-shot request and answer, in the parts this client uses
// (docs/http-sync.md).
type (
	syncRequest struct {
		Entities  []syncEntity   `json:"entities"`
		Positions []syncPosition `json:"positions"`
		Limit     int            `json:"limit"`
		Format    string         `json:"format"`
	}
	syncEntity struct {
		Name string `json:"name"`
	}
	syncPosition struct {
		Channel string `json:"channel"`
		Epoch   string `json:"epoch"`
		Seq     uint64 `json:"seq"`
	}
	syncAnswer struct {
		More     bool `json:"more"`
		Entities []struct {
			Channel  string             `json:"channel"`
			Status   string             `json:"status"`
			Position syncpoint.Position `json:"position"`
			FirstSeq uint64             `json:"first_seq"`
			LastSeq  uint64             `json:"last_seq"`
			Entries  []json.RawMessage  `json:"entries"`
		} `json:"entities"`
	}
)

// pull pages through one-shot sync until the server says there is no more,
// applying each page. stopped reports a Handler's StopAfter.
func (h *httpSync) pull(ctx context.Context) (stopped bool, err error) {
	c := h.c
	if len(c.cfg.Bizzes) == 0 {
		return false, nil
	}
	for range maxSyncPages {
		positions, err := loadPositions(ctx, c.db)
		if err != nil {
			return false, fmt.Errorf("client: %w", err)
		}
		req := syncRequest{Limit: syncPageLimit, Format: "entries", Positions: []syncPosition{}}
		for _, b := range c.cfg.Bizzes {
			req.Entities = append(req.Entities, syncEntity{Name: b})
		}
		for ch, p := range positions {
			biz, _, _ := strings.Cut(ch, "/")
			if p.Seq > 0 && slices.Contains(c.cfg.Bizzes, biz) {
				req.Positions = append(req.Positions, syncPosition{Channel: ch, Epoch: p.Epoch, Seq: p.Seq})
			}
		}
		body, err := json.Marshal(req)
		if err != nil {
			return false, fmt.Errorf("client: sync request: %w", err)
		}
		b, err := h.post(ctx, "/v1/sync", body)
		if err != nil {
			return false, err
		}
		var a syncAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			return false, fmt.Errorf("client: the sync answer does not decode: %w", err)
		}
		// The statuses say what a welcome says; the entries are a push.
		w := &wire.Welcome{}
		push := &wire.Push{}
		for _, en := range a.Entities {
			st := wire.ChannelStatus{Channel: en.Channel, Status: en.Status, Epoch: en.Position.Epoch, FirstSeq: en.FirstSeq, LastSeq: en.LastSeq}
			if st.Status == wire.StatusGap && en.FirstSeq > 0 {
				st.From = en.FirstSeq - 1
			}
			w.Channels = append(w.Channels, st)
			for _, raw := range en.Entries {
				e, err := wire.DecodeEntryJSON(raw)
				if err != nil {
					return false, fmt.Errorf("client: an entry of %s does not decode: %w", en.Channel, err)
				}
				push.Entries = append(push.Entries, e)
			}
			push.Positions = append(push.Positions, wire.Position{Channel: en.Channel, Epoch: en.Position.Epoch, Seq: en.Position.Seq})
		}
		// A reset or gap of a compact biz is reconciled by manifest, as on
		// the socket; the page is then asked for again from the positions
		// the reconcile stored, so its entries from the old ones are dropped.
		again, stopped, err := c.reconcileWelcome(ctx, w, h.token, func() {})
		switch {
		case err != nil:
			return false, fmt.Errorf("client: %w", err)
		case stopped:
			return true, nil
		case again:
			continue
		}
		epochs := make(map[string]string)
		if err := c.applyWelcome(ctx, w, epochs); err != nil {
			return false, fmt.Errorf("client: %w", err)
		}
		res, err := c.applyPush(ctx, push, epochs)
		if err != nil {
			return false, fmt.Errorf("client: %w", err)
		}
		if err := c.deliverNotices(ctx); err != nil {
			return false, fmt.Errorf("client: deliver notices: %w", err)
		}
		if res.stopped {
			return true, nil
		}
		if !a.More {
			return false, nil
		}
	}
	return false, nil
}

// sendOutbox sends the outbox one write at a time: first the writes given
// their rows before (with their write_id), then new ones. It reports
// whether the server saved any change.
func (h *httpSync) sendOutbox(ctx context.Context) (saved bool, err error) {
	c := h.c
	queued, err := c.loadAssigned(ctx)
	if err != nil {
		return false, fmt.Errorf("client: %w", err)
	}
	busy := make(map[recKey]bool)
	for {
		var w *outWrite
		if len(queued) > 0 {
			w, queued = queued[0], queued[1:]
		} else if w, err = c.nextWrite(ctx, busy); err != nil {
			return saved, fmt.Errorf("client: %w", err)
		} else if w == nil {
			return saved, nil
		}
		res, err := h.write(ctx, w)
		if err != nil {
			return saved, err
		}
		out, err := c.applyResult(ctx, res)
		if err != nil {
			return saved, fmt.Errorf("client: %w", err)
		}
		if err := c.deliverNotices(ctx); err != nil {
			return saved, fmt.Errorf("client: deliver notices: %w", err)
		}
		saved = saved || len(res.Saved) > 0
		if out.retryWrite || out.retried > 0 {
			// The server could not take it now; the next pass sends it
			// again, with the same write_id.
			return saved, fmt.Errorf("client: the server could not take a write now; it stays in the outbox")
		}
	}
}

// write sends one write of the outbox and returns its result. A write the
// server refused as a whole for good comes back as a result with that
// error, so the outbox settles its changes; one it could not take for now
// is an error, and the write stays.
func (h *httpSync) write(ctx context.Context, w *outWrite) (*wire.WriteResult, error) {
	body, err := wire.EncodeJSON(nil, &wire.Frame{Write: w.frame})
	if err != nil {
		return &wire.WriteResult{WriteID: w.id, Error: &wire.Error{Code: wire.CloseBadRequest, Reason: string(syncpoint.CodeInvalid), Message: "the write does not encode"}}, nil
	}
	if h.c.hooks.sentWrite != nil {
		h.c.hooks.sentWrite(w.id)
	}
	b, err := h.post(ctx, "/v1/write", body)
	var se *statusError
	if errors.As(err, &se) && se.status < 500 && se.status != http.StatusTooManyRequests && se.status != http.StatusUnauthorized && se.status != http.StatusForbidden && se.status != http.StatusRequestTimeout {
		return &wire.WriteResult{WriteID: w.id, Error: wire.ErrorFrom(&syncpoint.Error{Code: se.code, Message: se.message}, false)}, nil
	}
	if err != nil {
		return nil, err
	}
	f, err := wire.DecodeJSON(b)
	if err != nil || f.WriteResult == nil {
		return nil, fmt.Errorf("client: the answer to write %s is no write_result", w.id)
	}
	return f.WriteResult, nil
}

// statusError is an HTTP answer that is not 2xx.
type statusError struct {
	status  int
	code    syncpoint.ErrorCode
	message string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("client: HTTP %d %s: %s", e.status, e.code, e.message)
}

// Unwrap gives the server's error, so syncpoint.Code sees its code.
func (e *statusError) Unwrap() error { return &syncpoint.Error{Code: e.code, Message: e.message} }

// post sends body to path as the device and returns the body of a 2xx
// answer.
func (h *httpSync) post(ctx context.Context, path string, body []byte) ([]byte, error) {
	c := h.c
	u, err := url.JoinPath(h.base, path)
	if err != nil {
		return nil, fmt.Errorf("client: server URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("X-Device-Id", c.cfg.DeviceID)
	req.Header.Set("Content-Type", "application/json")
	if c.cfg.Platform != "" {
		req.Header.Set("X-Device-Platform", c.cfg.Platform)
	}
	if c.cfg.AppVersion != "" {
		req.Header.Set("X-Device-App-Version", c.cfg.AppVersion)
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.cfg.MaxFrameBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("client: POST %s: %w", path, err)
	}
	if len(b) > c.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("client: POST %s: the answer is over %d bytes; raise Config.MaxFrameBytes", path, c.cfg.MaxFrameBytes)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	var e struct {
		Error struct {
			Code    syncpoint.ErrorCode `json:"code"`
			Message string              `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		e.Error.Code, e.Error.Message = syncpoint.CodeInternal, strings.TrimSpace(string(b[:min(len(b), 200)]))
	}
	return nil, &statusError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
}
