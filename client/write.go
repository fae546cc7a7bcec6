package client

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"

	"github.com/oklog/ulid/v2"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// The kinds of change a row becomes once it is given to a write.
const (
	kindCreate = "create"
	kindUpdate = "update"
	kindDelete = "delete"
)

// kindRank is the order in which the server applies a change set's lists.
func kindRank(kind string) int {
	switch kind {
	case kindCreate:
		return 0
	case kindUpdate:
		return 1
	}
	return 2
}

// outRow is one row of the outbox.
type outRow struct {
	id        int64
	k         recKey
	op        string
	data      []byte
	createdAt int64
	writeID   string
	kind      string
	baseSeq   uint64
}

func (r *outRow) change() Change {
	ch := Change{Channel: r.k.ch, ID: r.k.key, Op: r.op}
	if r.op == OpPut {
		ch.Data = r.data
	}
	return ch
}

// outWrite is one write of the outbox: its rows in order and its frame.
type outWrite struct {
	id    string
	rows  []outRow
	frame *wire.Write
}

// buildWrite turns rows into a write frame. Consecutive rows of one channel
// share a change set as long as the server's order within it (created,
// updated, deleted) keeps theirs, so the server applies them in row order.
func buildWrite(id string, rows []outRow) (*wire.Write, error) {
	w := &wire.Write{WriteID: id}
	cur, lastCh, lastRank := -1, "", 0
	for i := range rows {
		r := &rows[i]
		rank := kindRank(r.kind)
		if cur < 0 || r.k.ch != lastCh || rank < lastRank {
			ch, err := syncpoint.ParseChannel(r.k.ch)
			if err != nil {
				return nil, fmt.Errorf("build write: %w", err)
			}
			w.Changes = append(w.Changes, wire.ChangeSet{Biz: ch.Biz, Target: ch.Target.String()})
			cur, lastCh = len(w.Changes)-1, r.k.ch
		}
		lastRank = rank
		cs := &w.Changes[cur]
		rec := wire.Record{ID: r.k.key, BaseSeq: r.baseSeq}
		switch r.kind {
		case kindCreate:
			rec.Data = r.data
			cs.Created = append(cs.Created, rec)
		case kindUpdate:
			rec.Data = r.data
			cs.Updated = append(cs.Updated, rec)
		default:
			cs.Deleted = append(cs.Deleted, rec)
		}
	}
	return w, nil
}

func (c *Client) newWriteID() string {
	return ulid.MustNew(ulid.Timestamp(c.clock.Now()), rand.Reader).String()
}

const outRowColumns = `id, channel, key, op, data, created_at, coalesce(write_id, ''), coalesce(kind, ''), coalesce(base_seq, 0)`

func scanOutRows(rows *sql.Rows) ([]outRow, error) {
	defer rows.Close()
	var out []outRow
	for rows.Next() {
		var r outRow
		var base int64
		if err := rows.Scan(&r.id, &r.k.ch, &r.k.key, &r.op, &r.data, &r.createdAt, &r.writeID, &r.kind, &base); err != nil {
			return nil, err
		}
		r.baseSeq = uint64(base)
		out = append(out, r)
	}
	return out, rows.Err()
}

// loadAssigned returns the writes that were given their rows before and
// still await a result, in outbox order, to be sent again as they were.
func (c *Client) loadAssigned(ctx context.Context) ([]*outWrite, error) {
	rows, err := c.db.QueryContext(ctx, `SELECT `+outRowColumns+` FROM syncpoint_outbox WHERE write_id IS NOT NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load outbox: %w", err)
	}
	all, err := scanOutRows(rows)
	if err != nil {
		return nil, fmt.Errorf("load outbox: %w", err)
	}
	var out []*outWrite
	byID := make(map[string]*outWrite)
	for _, r := range all {
		w := byID[r.writeID]
		if w == nil {
			w = &outWrite{id: r.writeID}
			byID[r.writeID] = w
			out = append(out, w)
		}
		w.rows = append(w.rows, r)
	}
	for _, w := range out {
		if w.frame, err = buildWrite(w.id, w.rows); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// nextWrite gives the oldest changes not yet in a write to a new one and
// stores that, with each change's kind and base_seq, before anything is
// sent. It stops at a record with a change in busy (awaiting its result),
// so a record's changes go one at a time, each based on the last one's
// seq. nil means nothing can be sent now.
func (c *Client) nextWrite(ctx context.Context, busy map[recKey]bool) (*outWrite, error) {
	for {
		w, resolved, err := c.assign(ctx, busy)
		if err != nil {
			return nil, fmt.Errorf("assign write: %w", err)
		}
		if w != nil || resolved == 0 {
			return w, nil
		}
		// Everything read was settled locally; look further.
	}
}

func (c *Client) assign(ctx context.Context, busy map[recKey]bool) (*outWrite, int, error) {
	stx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, err
	}
	defer stx.Rollback()
	tx := newCachedTx(stx)
	q, err := tx.QueryContext(ctx, `SELECT `+outRowColumns+` FROM syncpoint_outbox WHERE write_id IS NULL ORDER BY id LIMIT ?`, c.cfg.WriteRecords)
	if err != nil {
		return nil, 0, err
	}
	rows, err := scanOutRows(q)
	if err != nil {
		return nil, 0, err
	}
	nowMs := c.clock.Now().UnixMilli()
	w := &outWrite{id: c.newWriteID()}
	inWrite := make(map[recKey]bool)
	var resolved []recKey
	size := 0
	for _, r := range rows {
		if busy[r.k] || inWrite[r.k] {
			break
		}
		srv, _, err := loadServerRec(ctx, tx, r.k)
		if err != nil {
			return nil, 0, err
		}
		live := srv.liveAt(nowMs)
		switch {
		case r.op == OpPut && live:
			r.kind, r.baseSeq = kindUpdate, srv.seq
		case r.op == OpPut:
			r.kind, r.baseSeq = kindCreate, 0
		case live:
			r.kind, r.baseSeq = kindDelete, srv.seq
		default:
			// The server holds no such record: the delete is already true.
			if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_outbox WHERE id = ?`, r.id); err != nil {
				return nil, 0, err
			}
			resolved = append(resolved, r.k)
			continue
		}
		n := len(r.data) + len(r.k.key) + len(r.k.ch) + 64
		if len(w.rows) > 0 && size+n > c.cfg.WriteBytes {
			break
		}
		if _, err := syncpoint.ParseChannel(r.k.ch); err != nil {
			return nil, 0, fmt.Errorf("outbox row %d: %w", r.id, err)
		}
		size += n
		base, err := dbSeq(r.baseSeq)
		if err != nil {
			return nil, 0, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE syncpoint_outbox SET write_id = ?, kind = ?, base_seq = ? WHERE id = ?`, w.id, r.kind, base, r.id); err != nil {
			return nil, 0, err
		}
		r.writeID = w.id
		w.rows = append(w.rows, r)
		inWrite[r.k] = true
	}
	for _, k := range resolved {
		if err := c.settle(ctx, tx, k); err != nil {
			return nil, 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, err
	}
	if len(w.rows) == 0 {
		return nil, len(resolved), nil
	}
	if w.frame, err = buildWrite(w.id, w.rows); err != nil {
		return nil, 0, err
	}
	return w, len(resolved), nil
}

// resultOutcome is what applying a write_result did.
type resultOutcome struct {
	known      bool // the write was in the outbox
	retryWrite bool // the whole write failed; send it again as it is
	retried    int  // changes put back to go in a new write
}

// retryable reports whether a change refused with code may succeed if sent
// again later (in a new write: a write_id's result is kept).
func retryable(code string) bool {
	switch syncpoint.ErrorCode(code) {
	case syncpoint.CodeUnavailable, syncpoint.CodeRateLimited, syncpoint.CodeInternal:
		return true
	}
	return false
}

// applyResult applies the server's result for one write in one transaction:
// each change leaves the outbox in the same commit that records its outcome,
// so a crash before it means the write is sent again, never lost.
func (c *Client) applyResult(ctx context.Context, res *wire.WriteResult) (resultOutcome, error) {
	stx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
	}
	defer stx.Rollback()
	tx := newCachedTx(stx)
	q, err := tx.QueryContext(ctx, `SELECT `+outRowColumns+` FROM syncpoint_outbox WHERE write_id = ? ORDER BY id`, res.WriteID)
	if err != nil {
		return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
	}
	rows, err := scanOutRows(q)
	if err != nil {
		return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
	}
	if len(rows) == 0 {
		return resultOutcome{}, nil
	}
	out := resultOutcome{known: true}
	if res.Error != nil && res.Error.Code.Action() != wire.Stop {
		c.log.Info("client: a write failed as a whole; sending it again later", "write_id", res.WriteID, "err", res.Error)
		out.retryWrite = true
		return out, nil
	}

	saved := make(map[recKey]wire.Saved, len(res.Saved))
	for _, s := range res.Saved {
		saved[recKey{s.Channel, s.ID}] = s
	}
	errs := make(map[recKey][]wire.RecordError)
	for _, e := range res.Errors {
		k := recKey{e.Channel, e.ID}
		errs[k] = append(errs[k], e)
	}
	nowMs := c.clock.Now().UnixMilli()
	touched := make(map[recKey]bool)
	var order []recKey
	for i := range rows {
		r := &rows[i]
		var rerrs []wire.RecordError
		if res.Error != nil {
			code := res.Error.Reason
			if code == "" {
				code = string(syncpoint.CodeInvalid)
			}
			rerrs = []wire.RecordError{{Channel: r.k.ch, ID: r.k.key, Code: code, Message: res.Error.Message}}
		} else if rerrs = errs[r.k]; rerrs == nil {
			// A change set the server could not resolve names no channel.
			rerrs = errs[recKey{"", r.k.key}]
		}
		sv, isSaved := saved[r.k]
		if err := c.applyOne(ctx, tx, r, sv, isSaved, rerrs, nowMs, &out); err != nil {
			return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
		}
		if !touched[r.k] {
			touched[r.k] = true
			order = append(order, r.k)
		}
	}
	for _, k := range order {
		if err := c.settle(ctx, tx, k); err != nil {
			return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return resultOutcome{}, fmt.Errorf("apply write result: %w", err)
	}
	return out, nil
}

// applyOne settles one change of a write: it updates the record's server
// version from what the result says, and takes the change out of the
// outbox, or puts it back for a new write when the error is passing.
func (c *Client) applyOne(ctx context.Context, tx dbTx, r *outRow, sv wire.Saved, isSaved bool, rerrs []wire.RecordError, nowMs int64, out *resultOutcome) error {
	srv, _, err := loadServerRec(ctx, tx, r.k)
	if err != nil {
		return err
	}
	// Seqs past what SQLite keeps come only from a broken server; such
	// records are left to the pushes.
	for _, e := range rerrs {
		if e.Current != nil && e.Current.Key == r.k.key && e.Current.Seq >= srv.seq && e.Current.Seq <= math.MaxInt64 {
			cur := entryOf(e.Current)
			srv = serverRecOf(&cur)
		}
	}
	// The push of a saved change can come before its result; an entry
	// already known at that seq is the server's exact record (a merge may
	// differ from the upload), so it is kept.
	if isSaved && sv.Seq > srv.seq && sv.Seq <= math.MaxInt64 {
		srv = serverRec{seq: sv.Seq, createdAt: nowMs, origin: "device:" + c.cfg.DeviceID}
		if r.op == OpPut {
			srv.live, srv.data = true, r.data
		}
	}
	if err := saveServerRec(ctx, tx, r.k, srv); err != nil {
		return err
	}

	var conflicts []wire.RecordError
	for _, e := range rerrs {
		if e.Code == string(syncpoint.CodeConflict) {
			conflicts = append(conflicts, e)
		}
	}
	switch {
	case len(conflicts) > 0:
		dropped, err := c.dropLater(ctx, tx, r)
		if err != nil {
			return err
		}
		for i, e := range conflicts {
			cf := Conflict{Change: r.change(), Saved: isSaved, Field: e.Field, Code: e.Code, Message: e.Message, Current: entryPtr(e.Current)}
			if i == 0 {
				cf.Dropped = dropped
			}
			if err := c.report(ctx, tx, noticeConflict, r.k.ch, cf, c.cfg.OnConflict != nil); err != nil {
				return err
			}
		}
	case isSaved:
	case len(rerrs) > 0 && retryable(rerrs[0].Code):
		c.log.Info("client: the server could not take a change now; sending it again later", "channel", r.k.ch, "id", r.k.key, "code", rerrs[0].Code)
		if _, err := tx.ExecContext(ctx, `UPDATE syncpoint_outbox SET write_id = NULL, kind = NULL, base_seq = NULL WHERE id = ?`, r.id); err != nil {
			return err
		}
		out.retried++
		return nil
	default:
		we := WriteError{Change: r.change(), Code: string(syncpoint.CodeInternal), Message: "the server's result does not mention this change"}
		if len(rerrs) > 0 {
			e := rerrs[0]
			we.Field, we.Code, we.Message, we.Current = e.Field, e.Code, e.Message, entryPtr(e.Current)
		}
		if err := c.report(ctx, tx, noticeWriteError, r.k.ch, we, c.cfg.OnWriteError != nil); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_outbox WHERE id = ?`, r.id); err != nil {
		return err
	}
	return nil
}

// dropLater discards the record's changes queued after a conflicting one:
// they were made on top of a version the server did not take.
func (c *Client) dropLater(ctx context.Context, tx dbTx, r *outRow) ([]Change, error) {
	q, err := tx.QueryContext(ctx, `SELECT `+outRowColumns+` FROM syncpoint_outbox WHERE channel = ? AND key = ? AND id > ? AND write_id IS NULL ORDER BY id`, r.k.ch, r.k.key, r.id)
	if err != nil {
		return nil, err
	}
	later, err := scanOutRows(q)
	if err != nil {
		return nil, err
	}
	var out []Change
	for i := range later {
		if _, err := tx.ExecContext(ctx, `DELETE FROM syncpoint_outbox WHERE id = ?`, later[i].id); err != nil {
			return nil, err
		}
		out = append(out, later[i].change())
	}
	return out, nil
}

// report keeps a conflict or write error as a notice, in the transaction
// that settles the change, for deliverNotices to hand to the app; without a
// callback it is only logged.
func (c *Client) report(ctx context.Context, tx dbTx, kind, ch string, v any, deliver bool) error {
	if !deliver {
		switch x := v.(type) {
		case Conflict:
			c.log.Info("client: a local change conflicted", "channel", x.Channel, "id", x.ID, "field", x.Field, "message", x.Message)
		case WriteError:
			c.log.Info("client: the server refused a local change", "channel", x.Channel, "id", x.ID, "code", x.Code, "message", x.Message)
		}
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return addNotice(ctx, tx, notice{channel: ch, kind: kind, payload: b})
}

func entryPtr(we *wire.Entry) *Entry {
	if we == nil {
		return nil
	}
	e := entryOf(we)
	return &e
}

// hooks let this package's tests reach into a session; zero in use.
type hooks struct {
	// sentWrite is called with the write_id of every write sent.
	sentWrite func(writeID string)
	// dropResult, when it returns true for a write_result, makes the
	// session drop the connection instead of applying it, as if the result
	// had been lost on the way.
	dropResult func(writeID string) bool
}
