package client

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
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

// Reconcile by manifest, the SDK's side (docs/http-sync-reconcile.md).
//
// When a welcome says reset or gap for a channel, the Client does not drop
// the channel's records and download it all again: it ends the session,
// sends the server the {id, seq, hash} of every record it holds, page by
// page (POST /v1/sync/reconcile), and is told only what differs. Then it
// connects again at once, from the position the first answer gave, and the
// channel goes on as usual. It does this for compact bizzes; for another
// biz the server answers 422 and the Client remembers to keep the old way
// (drop and resync, or skip the gap) for that biz. It needs Config.Server:
// a Client on raw TCP has no HTTP endpoint, and keeps the old way too.
//
// What the app sees. The changes go through Config.Handler as one batch in
// key order, inside the transaction that applies them to the local records
// and stores the position: a put entry (with the record's seq, data, times
// and origin) for each record the device lacked or held other data of, and
// a delete entry for each record the server no longer has (its seq is the
// position's: the record was gone by then). Records whose data the device
// already had are not handed over, even when their seq and expiry change. OnReset and OnGap are not called: nothing was dropped or
// skipped. A crash before the commit repeats the reconcile, which then
// finds the same differences; after it, nothing is handed over twice. A
// Handler that returns StopAfter(n) keeps the first n changes, stores no
// position, and makes Run return; the next Run reconciles the rest.
//
// Local changes still in the outbox win as they do over pushes: a put or
// delete of such a record becomes the server version they are judged
// against, and the local record keeps the change.

// reconcilePageRecords is how many records one request carries: the
// server's limit.
const reconcilePageRecords = 10_000

// reconcileHoldBytes bounds the put data held in memory before it is
// applied. A reconcile whose changes are larger is applied in several
// transactions, the position with the last; a crash between them repeats
// the reconcile, which then finds only what is still different.
const reconcileHoldBytes = 32 << 20

// reconcileRequestTimeout bounds one page's request.
const reconcileRequestTimeout = time.Minute

// maxReconcileTries is how many welcomes in a row may send one channel to
// reconcile before the Client takes the old way for it: a channel that
// keeps losing entries faster than it reconciles.
const maxReconcileTries = 3

// reconciler is what the Client keeps between sessions about reconciles.
type reconciler struct {
	http *http.Client // nil until the first reconcile
	// off holds bizzes the server will not reconcile (not compact).
	off map[string]bool
	// tries counts welcomes in a row that sent a channel to reconcile.
	tries map[string]int
}

// The request and answer of POST /v1/sync/reconcile.
type (
	reconcileBody struct {
		Biz      string              `json:"biz"`
		Scope    map[string]string   `json:"scope,omitempty"`
		Epoch    string              `json:"epoch,omitempty"`
		Position *syncpoint.Position `json:"position,omitempty"`
		AfterID  string              `json:"after_id,omitempty"`
		UpToID   *string             `json:"up_to_id,omitempty"`
		Records  []manifestItem      `json:"records"`
	}
	manifestItem struct {
		ID   string `json:"id"`
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash,omitempty"`
	}
	reconcileReply struct {
		Put []struct {
			ID        string          `json:"id"`
			Seq       uint64          `json:"seq"`
			Data      json.RawMessage `json:"data"`
			CreatedAt int64           `json:"created_at"`
			ExpiresAt int64           `json:"expires_at"`
			Origin    string          `json:"origin"`
		} `json:"put"`
		Same []struct {
			ID        string `json:"id"`
			Seq       uint64 `json:"seq"`
			ExpiresAt int64  `json:"expires_at"`
		} `json:"same"`
		Stale    []string `json:"stale"`
		Delete   []string `json:"delete"`
		Position struct {
			Channel string `json:"channel"`
			Epoch   string `json:"epoch"`
			Seq     uint64 `json:"seq"`
		} `json:"position"`
		NextID *string `json:"next_id"`
	}
)

// reconcileError is a refusal by the server.
type reconcileError struct {
	status  int
	code    syncpoint.ErrorCode
	message string
}

func (e *reconcileError) Error() string {
	return fmt.Sprintf("reconcile: HTTP %d %s: %s", e.status, e.code, e.message)
}

// recordHash is the manifest's hash of a record, as the server computes it
// over what it stores: the first 12 bytes of the SHA-256 of the data, in
// unpadded base64url.
func recordHash(data []byte) string {
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// reconcileWelcome reconciles the channels a welcome says reset or gap of,
// where it can. When there is one to reconcile, it first ends the session
// with end, so that the server does not push the backlog the reconcile
// spares; again then reports that the session must start over from the new
// positions, and stopped that the Handler returned StopAfter. err is a
// failure of every reconcile tried; the next session tries again, up to
// maxReconcileTries welcomes in a row.
func (c *Client) reconcileWelcome(ctx context.Context, w *wire.Welcome, token string, end func()) (again, stopped bool, err error) {
	if c.cfg.Server == "" {
		return false, false, nil
	}
	var todo []wire.ChannelStatus
	c.mu.Lock()
	if c.rec.tries == nil {
		c.rec.tries, c.rec.off = make(map[string]int), make(map[string]bool)
	}
	for _, st := range w.Channels {
		biz, _, _ := strings.Cut(st.Channel, "/")
		switch {
		case st.Status != wire.StatusReset && st.Status != wire.StatusGap:
			delete(c.rec.tries, st.Channel)
		case c.rec.off[biz] || c.rec.tries[st.Channel] >= maxReconcileTries:
		default:
			c.rec.tries[st.Channel]++
			todo = append(todo, st)
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return false, false, nil
	}
	end()
	var failed error
	for _, st := range todo {
		biz, _, _ := strings.Cut(st.Channel, "/")
		n, stop, err := c.reconcile(ctx, st, token)
		var re *reconcileError
		switch {
		case errors.As(err, &re) && re.status == http.StatusUnprocessableEntity:
			// Not a compact biz (or nothing to reconcile it with): the old
			// way, for as long as this Client lives.
			c.log.Info("client: the server does not reconcile this biz; resyncing it instead", "biz", biz, "err", err)
			c.mu.Lock()
			c.rec.off[biz] = true
			c.mu.Unlock()
			again = true
			continue
		case err != nil && ctx.Err() != nil:
			return false, false, ctx.Err()
		case err != nil:
			c.log.Warn("client: reconcile failed; trying again on the next connection", "channel", st.Channel, "err", err)
			failed = err
			continue
		}
		c.log.Info("client: reconciled the channel instead of resyncing it", "channel", st.Channel, "status", st.Status, "changes", n)
		if stop {
			return false, true, nil
		}
		again = true
	}
	if !again {
		return false, false, failed
	}
	return true, false, nil
}

// reconcile runs one channel's reconcile to its end, and returns how many
// changes the Handler was given.
func (c *Client) reconcile(ctx context.Context, st wire.ChannelStatus, token string) (int, bool, error) {
	ch, err := syncpoint.ParseChannel(st.Channel)
	if err != nil {
		return 0, false, fmt.Errorf("reconcile %s: %w", st.Channel, err)
	}
	c.mu.Lock()
	local := c.pos[st.Channel]
	c.mu.Unlock()
	body := reconcileBody{Biz: ch.Biz}
	if ch.Target.Kind != syncpoint.TargetGlobal {
		body.Scope = map[string]string{string(ch.Target.Kind): ch.Target.ID}
	}
	// The device's seqs compare with the server's only within one epoch,
	// which a gap keeps and a reset ends.
	if st.Status == wire.StatusGap && local.Epoch == st.Epoch {
		body.Epoch = st.Epoch
	}
	// A reset between pages (409) starts the reconcile over, once.
	for attempt := 0; ; attempt++ {
		n, stop, err := c.reconcilePages(ctx, st.Channel, body, token)
		var re *reconcileError
		if errors.As(err, &re) && re.status == http.StatusConflict && attempt == 0 {
			continue
		}
		return n, stop, err
	}
}

// reconcileChanges is what the answers said, not applied yet.
type reconcileChanges struct {
	entries []Entry  // puts and deletes, for the Handler and the records
	same    []Entry  // data held already: only the seq and expiry change
	stale   []string // the sync from the position brings their newest
	bytes   int
}

func (c *Client) reconcilePages(ctx context.Context, ch string, body reconcileBody, token string) (int, bool, error) {
	var (
		acc     reconcileChanges
		pos     *syncpoint.Position
		after   string
		changes int
	)
	for {
		page, more, err := manifestPage(ctx, c.db, ch, after, reconcilePageRecords)
		if err != nil {
			return changes, false, err
		}
		body.AfterID, body.Records, body.UpToID, body.Position = after, page, nil, pos
		if more {
			body.UpToID = &page[len(page)-1].ID
		}
		ans, err := c.postReconcile(ctx, &body, token)
		if err != nil {
			return changes, false, err
		}
		if pos == nil {
			pos = &syncpoint.Position{Epoch: ans.Position.Epoch, Seq: ans.Position.Seq}
		}
		acc.add(ch, ans, pos.Seq)
		switch {
		case ans.NextID != nil && *ans.NextID <= after:
			return changes, false, fmt.Errorf("reconcile %s: the server's next_id %q does not move past %q", ch, *ans.NextID, after)
		case ans.NextID != nil:
			after = *ans.NextID
		case more:
			after = *body.UpToID
		}
		last := ans.NextID == nil && !more
		if !last && acc.bytes < reconcileHoldBytes {
			continue
		}
		var at *syncpoint.Position
		if last {
			at = pos
		}
		n, stopped, err := c.applyReconcile(ctx, ch, &acc, at)
		changes += n
		if err != nil || stopped || last {
			return changes, stopped, err
		}
		acc = reconcileChanges{}
	}
}

func (acc *reconcileChanges) add(ch string, ans *reconcileReply, at uint64) {
	for _, p := range ans.Put {
		e := Entry{Channel: ch, Seq: p.Seq, Op: OpPut, Key: p.ID, Data: p.Data, CreatedAt: fromMs(p.CreatedAt), ExpiresAt: fromMs(p.ExpiresAt), Origin: p.Origin}
		acc.entries = append(acc.entries, e)
		acc.bytes += len(p.Data)
	}
	for _, id := range ans.Delete {
		acc.entries = append(acc.entries, Entry{Channel: ch, Seq: at, Op: OpDelete, Key: id})
	}
	for _, s := range ans.Same {
		acc.same = append(acc.same, Entry{Channel: ch, Seq: s.Seq, Key: s.ID, ExpiresAt: fromMs(s.ExpiresAt)})
	}
	acc.stale = append(acc.stale, ans.Stale...)
}

func fromMs(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// manifestPage reads up to limit records of ch with ids above after, in
// byte order of the id, each with the seq and hash of the server's version
// the device holds: a record with local changes pending is listed by the
// server version kept aside for it, or not at all when the server has none.
// more reports that records above the page may remain.
func manifestPage(ctx context.Context, db *sql.DB, ch, after string, limit int) ([]manifestItem, bool, error) {
	rows, err := db.QueryContext(ctx, `SELECT key, seq, data FROM (
			SELECT key, seq, data FROM syncpoint_records r WHERE channel = ?1 AND key > ?2
				AND NOT EXISTS (SELECT 1 FROM syncpoint_server_records s WHERE s.channel = r.channel AND s.key = r.key)
			UNION ALL
			SELECT key, seq, data FROM syncpoint_server_records WHERE channel = ?1 AND key > ?2 AND live = 1
		) ORDER BY key LIMIT ?3`, ch, after, limit+1)
	if err != nil {
		return nil, false, fmt.Errorf("reconcile %s: read records: %w", ch, err)
	}
	defer rows.Close()
	var out []manifestItem
	for rows.Next() {
		var it manifestItem
		var seq int64
		var data []byte
		if err := rows.Scan(&it.ID, &seq, &data); err != nil {
			return nil, false, fmt.Errorf("reconcile %s: read records: %w", ch, err)
		}
		it.Seq, it.Hash = uint64(seq), recordHash(data)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("reconcile %s: read records: %w", ch, err)
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	if out == nil {
		out = []manifestItem{}
	}
	return out, false, nil
}

// postReconcile sends one page as the device.
func (c *Client) postReconcile(ctx context.Context, body *reconcileBody, token string) (*reconcileReply, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	u, err := url.JoinPath(c.server(), "/v1/sync/reconcile")
	if err != nil {
		return nil, fmt.Errorf("reconcile: server URL: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, reconcileRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Device-Id", c.cfg.DeviceID)
	if c.cfg.Platform != "" {
		req.Header.Set("X-Device-Platform", c.cfg.Platform)
	}
	if c.cfg.AppVersion != "" {
		req.Header.Set("X-Device-App-Version", c.cfg.AppVersion)
	}
	resp, err := c.reconcileHTTP().Do(req)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.cfg.MaxFrameBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("reconcile: read the answer: %w", err)
	}
	if len(data) > c.cfg.MaxFrameBytes {
		return nil, fmt.Errorf("reconcile: the answer is over %d bytes; raise Config.MaxFrameBytes", c.cfg.MaxFrameBytes)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code    syncpoint.ErrorCode `json:"code"`
				Message string              `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
			e.Error.Code, e.Error.Message = syncpoint.CodeInternal, strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return nil, &reconcileError{status: resp.StatusCode, code: e.Error.Code, message: e.Error.Message}
	}
	var ans reconcileReply
	if err := json.Unmarshal(data, &ans); err != nil {
		return nil, fmt.Errorf("reconcile: the answer does not decode: %w", err)
	}
	return &ans, nil
}

// reconcileHTTP returns the Client's HTTP client for reconciles, made on
// first use with the Client's TLS settings.
func (c *Client) reconcileHTTP() *http.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rec.http == nil {
		c.rec.http = &http.Client{Transport: &http.Transport{TLSClientConfig: c.cfg.TLS, Proxy: http.ProxyFromEnvironment, ForceAttemptHTTP2: true}}
	}
	return c.rec.http
}

// applyReconcile applies what the answers said in one transaction, with
// the position when at is set, and hands the changes to the Handler in it.
// It returns how many changes the Handler took.
func (c *Client) applyReconcile(ctx context.Context, ch string, acc *reconcileChanges, at *syncpoint.Position) (int, bool, error) {
	slices.SortFunc(acc.entries, func(a, b Entry) int { return cmp.Compare(a.Key, b.Key) })
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("apply reconcile: %w", err)
	}
	defer tx.Rollback()
	entries, stopped := acc.entries, false
	if len(entries) > 0 && c.cfg.Handler != nil {
		if err := c.cfg.Handler(tx, entries); err != nil {
			var se *StopError
			if !errors.As(err, &se) {
				return 0, false, fmt.Errorf("handler: %w", err)
			}
			stopped = true
			entries = entries[:min(max(se.N, 0), len(entries))]
		}
	}
	rtx := newCachedTx(tx)
	for i := range entries {
		if err := reconcileRecord(ctx, rtx, &entries[i]); err != nil {
			return 0, false, fmt.Errorf("apply reconcile: %w", err)
		}
	}
	if !stopped {
		for _, e := range acc.same {
			if err := setRecordSeq(ctx, rtx, recKey{ch, e.Key}, e.Seq, unixMs(e.ExpiresAt)); err != nil {
				return 0, false, fmt.Errorf("apply reconcile: %w", err)
			}
		}
		for _, id := range acc.stale {
			if err := setRecordSeq(ctx, rtx, recKey{ch, id}, 0, -1); err != nil {
				return 0, false, fmt.Errorf("apply reconcile: %w", err)
			}
		}
	}
	if at != nil && !stopped {
		if at.Seq == 0 {
			// Nothing to resume after: the channel syncs from its start.
			if _, err := rtx.ExecContext(ctx, `DELETE FROM syncpoint_positions WHERE channel = ?`, ch); err != nil {
				return 0, false, fmt.Errorf("apply reconcile: %w", err)
			}
		} else if err := savePosition(ctx, rtx, ch, *at, c.clock.Now().UnixMilli()); err != nil {
			return 0, false, fmt.Errorf("apply reconcile: %w", err)
		}
		if err := dropGuards(ctx, rtx, ch, at.Seq); err != nil {
			return 0, false, fmt.Errorf("apply reconcile: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("apply reconcile: %w", err)
	}
	if at != nil && !stopped {
		c.mu.Lock()
		if at.Seq == 0 {
			delete(c.pos, ch)
		} else {
			c.pos[ch] = *at
		}
		c.mu.Unlock()
	}
	return len(entries), stopped, nil
}

// reconcileRecord makes a record what the server said, whatever seq the
// device held it at (it may be another epoch's); with local changes
// pending it sets the server version they are judged against instead.
func reconcileRecord(ctx context.Context, tx dbTx, e *Entry) error {
	k := recKey{e.Channel, e.Key}
	pending, err := hasPending(ctx, tx, k)
	if err != nil {
		return err
	}
	srv := serverRecOf(e)
	if e.Op == OpDelete {
		// The server knows no seq for the record now.
		srv.seq = 0
	}
	if pending {
		return saveServerRec(ctx, tx, k, srv)
	}
	if err := deleteServerRec(ctx, tx, k); err != nil {
		return err
	}
	return setLocal(ctx, tx, k, srv)
}

// setRecordSeq gives a record another seq, and an expiry unless expiresMs
// is negative, where the device holds the server's version: aside when
// local changes are pending, else the local record.
func setRecordSeq(ctx context.Context, tx dbTx, k recKey, seq uint64, expiresMs int64) error {
	s, err := dbSeq(seq)
	if err != nil {
		return err
	}
	for _, table := range []string{"syncpoint_server_records", "syncpoint_records"} {
		q := `UPDATE ` + table + ` SET seq = ?1, expires_at = CASE WHEN ?2 < 0 THEN expires_at ELSE ?2 END WHERE channel = ?3 AND key = ?4`
		res, err := tx.ExecContext(ctx, q, s, expiresMs, k.ch, k.key)
		if err != nil {
			return fmt.Errorf("set seq of %s/%s: %w", k.ch, k.key, err)
		}
		if n, err := res.RowsAffected(); err == nil && n > 0 {
			return nil
		}
	}
	return nil
}
