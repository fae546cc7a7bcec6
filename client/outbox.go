package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// The ops of a Change.
const (
	OpPut    = "put"
	OpDelete = "delete"
)

// maxIDLen is the protocol's limit on record ids; the server judges their
// form (UUID, ULID or ObjectId).
const maxIDLen = 128

// Change is one local change to a record, as Put or Delete made it.
type Change struct {
	Channel string          `json:"channel"`
	ID      string          `json:"id"`
	Op      string          `json:"op"`             // OpPut or OpDelete
	Data    json.RawMessage `json:"data,omitempty"` // OpPut: the whole record
}

// Conflict is a local change the server did not take as it was, because the
// record changed on the server since the version the change was based on.
// The local record has already been set to the server's (Current).
type Conflict struct {
	Change
	// Dropped are later local changes to the same record, not sent yet,
	// that were discarded with it; the app's newest value is the last one.
	Dropped []Change `json:"dropped,omitempty"`
	// Saved reports that the rest of the change was applied: a merge biz
	// kept the server's value of Field and took the other fields.
	Saved   bool   `json:"saved,omitempty"`
	Field   string `json:"field,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	// Current is the server's record as a put or delete entry; nil when
	// the server did not send it.
	Current *Entry `json:"current,omitempty"`
}

// WriteError is a local change the server refused for a reason other than a
// conflict; the local record was rolled back to the server's version.
type WriteError struct {
	Change
	Field string `json:"field,omitempty"`
	// Code is the server's: invalid_id, invalid_data, too_large, invalid,
	// exists, not_found, forbidden, not_writable, unknown_biz, rejected...
	Code    string `json:"code"`
	Message string `json:"message"`
	// Current is the server's record, when it sent one (exists, not_found).
	Current *Entry `json:"current,omitempty"`
}

// recKey names one record.
type recKey struct{ ch, key string }

// serverRec is a record as the server last confirmed it: a live version at
// seq, or none (live false; seq is the delete's, or 0 when unknown).
type serverRec struct {
	seq       uint64
	live      bool
	data      []byte
	createdAt int64
	expiresAt int64
	origin    string
}

func (r serverRec) liveAt(nowMs int64) bool {
	return r.live && (r.expiresAt == 0 || nowMs < r.expiresAt)
}

// serverRecOf is the record a put or delete entry leaves.
func serverRecOf(e *Entry) serverRec {
	r := serverRec{seq: e.Seq, createdAt: unixMs(e.CreatedAt), expiresAt: unixMs(e.ExpiresAt), origin: e.Origin}
	if e.Op == OpPut {
		r.live, r.data = true, e.Data
	}
	return r
}

// Put changes the record id of biz's default channel for this device (its
// user's, its device's or the global channel) to data, a JSON object. The
// local record changes at once, and the change goes into the outbox, which
// is sent whenever the client is connected; its result comes back through
// OnConflict or OnWriteError when the server refuses it. The default channel
// is learned from the server's welcome, so Put needs one connection first;
// PutTo works at any time.
func (c *Client) Put(ctx context.Context, biz, id string, data json.RawMessage) error {
	ch, err := c.defaultChannel(biz)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return c.change(ctx, Change{Channel: ch, ID: id, Op: OpPut, Data: data})
}

// PutTo is Put with the channel named, such as "tasks/group:g1": the only
// way to write to a group biz.
func (c *Client) PutTo(ctx context.Context, channel, id string, data json.RawMessage) error {
	return c.change(ctx, Change{Channel: channel, ID: id, Op: OpPut, Data: data})
}

// Delete deletes the record id of biz's default channel, locally at once
// and on the server through the outbox. Deleting a record that is not held
// locally does nothing.
func (c *Client) Delete(ctx context.Context, biz, id string) error {
	ch, err := c.defaultChannel(biz)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	return c.change(ctx, Change{Channel: ch, ID: id, Op: OpDelete})
}

// DeleteFrom is Delete with the channel named.
func (c *Client) DeleteFrom(ctx context.Context, channel, id string) error {
	return c.change(ctx, Change{Channel: channel, ID: id, Op: OpDelete})
}

// GetBiz is Get in biz's default channel.
func (c *Client) GetBiz(ctx context.Context, biz, id string) (json.RawMessage, bool, error) {
	ch, err := c.defaultChannel(biz)
	if err != nil {
		return nil, false, fmt.Errorf("get: %w", err)
	}
	return c.Get(ctx, ch, id)
}

// ListBiz is List of biz's default channel.
func (c *Client) ListBiz(ctx context.Context, biz string) (map[string]json.RawMessage, error) {
	ch, err := c.defaultChannel(biz)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	return c.List(ctx, ch)
}

// Pending returns how many local changes wait in the outbox for their
// result; -1 when it cannot be read (the error is logged).
func (c *Client) Pending() int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := c.db.QueryRowContext(ctx, `SELECT count(*) FROM syncpoint_outbox`).Scan(&n); err != nil {
		c.log.Error("client: count the outbox", "err", err)
		return -1
	}
	return n
}

// defaultChannel is the channel a biz name means for this device.
func (c *Client) defaultChannel(biz string) (string, error) {
	if err := syncpoint.ValidateBizName(biz); err != nil {
		return "", err
	}
	c.mu.Lock()
	ch, ok := c.defaults[biz]
	c.mu.Unlock()
	switch {
	case !ok:
		return "", syncpoint.Errorf(syncpoint.CodeNotFound, "biz %s: its channel is not known until a session subscribed to it; name the channel (PutTo) or connect first", biz)
	case ch == "":
		return "", syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s is a group biz: name the channel, for example %s/group:<id>", biz, biz)
	}
	return ch, nil
}

// defaultsOf derives each biz's default channel from a session's channels;
// a group biz maps to "".
func defaultsOf(channels []string) map[string]string {
	out := make(map[string]string)
	for _, s := range channels {
		ch, err := syncpoint.ParseChannel(s)
		if err != nil {
			continue
		}
		if ch.Target.Kind == syncpoint.TargetGroup {
			out[ch.Biz] = ""
			continue
		}
		out[ch.Biz] = s
	}
	return out
}

func loadDefaults(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, `SELECT channel FROM syncpoint_channels`)
	if err != nil {
		return nil, fmt.Errorf("load channels: %w", err)
	}
	defer rows.Close()
	var chans []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("load channels: %w", err)
		}
		chans = append(chans, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load channels: %w", err)
	}
	return defaultsOf(chans), nil
}

// saveChannels replaces the stored channels with a welcome's.
func saveChannels(ctx context.Context, tx *sql.Tx, channels []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_channels`); err != nil {
		return fmt.Errorf("save channels: %w", err)
	}
	for _, ch := range channels {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO syncpoint_channels (channel) VALUES (?)`, ch); err != nil {
			return fmt.Errorf("save channels: %w", err)
		}
	}
	return nil
}

// checkChange refuses what could not travel in a write frame; the server
// judges the rest (the id's form, data being an object, the biz's limits).
func (c *Client) checkChange(ch *Change) error {
	if _, err := syncpoint.ParseChannel(ch.Channel); err != nil {
		return err
	}
	switch {
	case ch.ID == "":
		return syncpoint.Errorf(syncpoint.CodeInvalid, "record id is empty")
	case len(ch.ID) > maxIDLen:
		return syncpoint.Errorf(syncpoint.CodeInvalid, "record id is %d bytes long; the limit is %d", len(ch.ID), maxIDLen)
	case !utf8.ValidString(ch.ID):
		return syncpoint.Errorf(syncpoint.CodeInvalid, "record id is not UTF-8")
	}
	if ch.Op == OpDelete {
		return nil
	}
	switch {
	case len(ch.Data) == 0:
		return syncpoint.Errorf(syncpoint.CodeInvalid, "data is empty; Delete removes a record")
	case len(ch.ID)+len(ch.Data) > c.cfg.MaxRecordBytes:
		return syncpoint.Errorf(syncpoint.CodeTooLarge, "the record is %d bytes; Config.MaxRecordBytes allows %d", len(ch.ID)+len(ch.Data), c.cfg.MaxRecordBytes)
	}
	// The frame encoder is the judge: a change it refused later would stop
	// the outbox for good.
	probe := &wire.Frame{Write: &wire.Write{WriteID: "probe", Changes: []wire.ChangeSet{{Biz: "probe", Created: []wire.Record{{ID: ch.ID, Data: ch.Data}}}}}}
	if _, err := wire.EncodeJSON(nil, probe); err != nil {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "data is not valid JSON (UTF-8, nested at most 10000 deep)")
	}
	return nil
}

// change applies ch to the local records and appends it to the outbox, in
// one transaction. The first pending change of a record keeps the server's
// version of it aside, to base the upload on and to roll back to.
func (c *Client) change(ctx context.Context, ch Change) error {
	op := "put"
	if ch.Op == OpDelete {
		op = "delete"
	}
	if err := c.checkChange(&ch); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := c.changeTx(ctx, ch); err != nil {
		return fmt.Errorf("%s %s/%s: %w", op, ch.Channel, ch.ID, err)
	}
	c.wakeOutbox()
	return nil
}

func (c *Client) changeTx(ctx context.Context, ch Change) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	nowMs := c.clock.Now().UnixMilli()
	k := recKey{ch.Channel, ch.ID}
	local, hasLocal, err := loadLocal(ctx, tx, k)
	if err != nil {
		return err
	}
	if ch.Op == OpDelete && !local.liveAt(nowMs) {
		return nil
	}
	pending, err := hasPending(ctx, tx, k)
	if err != nil {
		return err
	}
	srv, known, err := loadServerRec(ctx, tx, k)
	if err != nil {
		return err
	}
	if !known {
		// With nothing pending, the local record is the server's version.
		if !pending && hasLocal {
			srv = local
		}
		if err := saveServerRec(ctx, tx, k, srv); err != nil {
			return err
		}
	}
	var data any
	if ch.Op == OpPut {
		data = []byte(ch.Data)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO syncpoint_outbox (channel, key, op, data, created_at) VALUES (?, ?, ?, ?, ?)`,
		ch.Channel, ch.ID, ch.Op, data, nowMs); err != nil {
		return fmt.Errorf("append to outbox: %w", err)
	}
	mine := serverRec{seq: srv.seq, createdAt: nowMs, origin: "device:" + c.cfg.DeviceID}
	if ch.Op == OpPut {
		mine.live, mine.data = true, ch.Data
	}
	if err := setLocal(ctx, tx, k, mine); err != nil {
		return err
	}
	return tx.Commit()
}

// wakeOutbox tells a running session to look at the outbox.
func (c *Client) wakeOutbox() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func loadLocal(ctx context.Context, tx dbTx, k recKey) (serverRec, bool, error) {
	var r serverRec
	var seq int64
	err := tx.QueryRowContext(ctx, `SELECT seq, data, created_at, expires_at, origin FROM syncpoint_records WHERE channel = ? AND key = ?`, k.ch, k.key).
		Scan(&seq, &r.data, &r.createdAt, &r.expiresAt, &r.origin)
	if errors.Is(err, sql.ErrNoRows) {
		return serverRec{}, false, nil
	}
	if err != nil {
		return serverRec{}, false, fmt.Errorf("read record: %w", err)
	}
	r.seq, r.live = uint64(seq), true
	return r, true, nil
}

// setLocal makes the local record r: a row when it is live, none otherwise.
func setLocal(ctx context.Context, tx dbTx, k recKey, r serverRec) error {
	if !r.live {
		if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_records WHERE channel = ? AND key = ?`, k.ch, k.key); err != nil {
			return fmt.Errorf("set record: %w", err)
		}
		return nil
	}
	seq, err := dbSeq(r.seq)
	if err != nil {
		return err
	}
	var data any
	if r.data != nil {
		data = r.data
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO syncpoint_records (channel, key, seq, data, created_at, expires_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (channel, key) DO UPDATE SET seq = excluded.seq, data = excluded.data, created_at = excluded.created_at,
			expires_at = excluded.expires_at, origin = excluded.origin`,
		k.ch, k.key, seq, data, r.createdAt, r.expiresAt, r.origin)
	if err != nil {
		return fmt.Errorf("set record: %w", err)
	}
	return nil
}

func hasPending(ctx context.Context, tx dbTx, k recKey) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM syncpoint_outbox WHERE channel = ? AND key = ? LIMIT 1`, k.ch, k.key).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read outbox: %w", err)
	}
	return true, nil
}

func loadServerRec(ctx context.Context, tx dbTx, k recKey) (serverRec, bool, error) {
	var r serverRec
	var seq int64
	err := tx.QueryRowContext(ctx, `SELECT seq, live, data, created_at, expires_at, origin FROM syncpoint_server_records WHERE channel = ? AND key = ?`, k.ch, k.key).
		Scan(&seq, &r.live, &r.data, &r.createdAt, &r.expiresAt, &r.origin)
	if errors.Is(err, sql.ErrNoRows) {
		return serverRec{}, false, nil
	}
	if err != nil {
		return serverRec{}, false, fmt.Errorf("read server record: %w", err)
	}
	r.seq = uint64(seq)
	return r, true, nil
}

func saveServerRec(ctx context.Context, tx dbTx, k recKey, r serverRec) error {
	seq, err := dbSeq(r.seq)
	if err != nil {
		return err
	}
	var data any
	if r.live && r.data != nil {
		data = r.data
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO syncpoint_server_records (channel, key, seq, live, data, created_at, expires_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (channel, key) DO UPDATE SET seq = excluded.seq, live = excluded.live, data = excluded.data,
			created_at = excluded.created_at, expires_at = excluded.expires_at, origin = excluded.origin`,
		k.ch, k.key, seq, r.live, data, r.createdAt, r.expiresAt, r.origin)
	if err != nil {
		return fmt.Errorf("save server record: %w", err)
	}
	return nil
}

func deleteServerRec(ctx context.Context, tx dbTx, k recKey) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_server_records WHERE channel = ? AND key = ?`, k.ch, k.key); err != nil {
		return fmt.Errorf("delete server record: %w", err)
	}
	return nil
}

// anyServerRecs reports whether any record has a server version aside, so
// that a push without any (the usual case) skips the per-entry lookups.
func anyServerRecs(ctx context.Context, tx dbTx) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM syncpoint_server_records LIMIT 1`).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read server records: %w", err)
	}
	return true, nil
}

// pushServerRec routes a pushed put or delete of a record that has a server
// version aside. It returns true when the entry must not touch the local
// record: it is older than what is known, or local changes are pending (the
// entry then becomes the server version they are judged against).
func pushServerRec(ctx context.Context, tx dbTx, e *Entry) (bool, error) {
	k := recKey{e.Channel, e.Key}
	srv, ok, err := loadServerRec(ctx, tx, k)
	if err != nil || !ok {
		return false, err
	}
	if e.Seq < srv.seq {
		return true, nil
	}
	pending, err := hasPending(ctx, tx, k)
	if err != nil {
		return false, err
	}
	if pending {
		return true, saveServerRec(ctx, tx, k, serverRecOf(e))
	}
	return false, deleteServerRec(ctx, tx, k)
}

// dropGuards forgets the server versions kept only to stop older pushes,
// once the channel's position has passed them.
func dropGuards(ctx context.Context, tx dbTx, ch string, seq uint64) error {
	s, err := dbSeq(seq)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `DELETE FROM syncpoint_server_records AS s WHERE channel = ? AND seq <= ?
		AND NOT EXISTS (SELECT 1 FROM syncpoint_outbox o WHERE o.channel = s.channel AND o.key = s.key)`, ch, s)
	if err != nil {
		return fmt.Errorf("drop guards of %s: %w", ch, err)
	}
	return nil
}

// settle sets a record whose changes have all been answered to the server's
// version. That version stays aside as a guard while the channel's position
// is below its seq, so a push of an older entry cannot undo it.
func (c *Client) settle(ctx context.Context, tx dbTx, k recKey) error {
	pending, err := hasPending(ctx, tx, k)
	if err != nil || pending {
		return err
	}
	srv, ok, err := loadServerRec(ctx, tx, k)
	if err != nil || !ok {
		return err
	}
	if err := setLocal(ctx, tx, k, srv); err != nil {
		return err
	}
	c.mu.Lock()
	pos := c.pos[k.ch].Seq
	c.mu.Unlock()
	if srv.seq > pos {
		return nil
	}
	return deleteServerRec(ctx, tx, k)
}
