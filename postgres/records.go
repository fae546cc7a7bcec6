package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/positions"
)

// maxBlobKeyLen bounds blob keys, which are made by other packages, not
// by clients.
const maxBlobKeyLen = 1024

// exec runs the statements build queues in one transaction, in one round
// trip, with retries. They may run twice (see retry).
func (s *Store) exec(ctx context.Context, what string, build func(b *pgx.Batch)) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer s.leave()
	err := s.retry(ctx, what, func(ctx context.Context) error {
		conn, err := s.pool.Acquire(ctx)
		if err != nil {
			return err
		}
		defer conn.Release()
		b := &pgx.Batch{}
		b.Queue(`BEGIN`)
		build(b)
		b.Queue(`COMMIT`)
		t := &onceTx{conn: conn.Conn()}
		return t.send(ctx, b)
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, giveUp(err))
	}
	return nil
}

// Position tables and their owner columns; constants, never input.
const (
	syncPointsTable    = "sync_points"
	userPositionsTable = "user_positions"
	cursorsTable       = "cursors"
)

// positionTable and ownerCol say where each kind of position is kept.
var (
	positionTable = [...]string{positions.SyncPoint: syncPointsTable, positions.User: userPositionsTable, positions.Cursor: cursorsTable}
	ownerCol      = [...]string{positions.SyncPoint: "device_id", positions.User: "user_id", positions.Cursor: "reader"}
)

// savePositions writes rows in order, in one transaction. With
// forwardOnly a row never moves a stored position backwards within its
// epoch: the upsert's WHERE decides against the row as it is once locked,
// so concurrent saves from any node end at the highest.
func (s *Store) savePositions(ctx context.Context, k positions.Kind, rows []positions.Row) error {
	if err := positions.Validate(k, rows); err != nil {
		return err
	}
	for _, r := range rows {
		if !textOK(r.Position.Epoch) || r.Position.Seq > math.MaxInt64 {
			return syncpoint.Errorf(syncpoint.CodeInvalid, "position %+v: want an epoch of UTF-8 text and a seq below 2^63", r.Position)
		}
	}
	table, forwardOnly := positionTable[k], k.ForwardOnly()
	if len(rows) == 0 {
		// Nothing to write, but the errors every method returns.
		if err := s.start(ctx); err != nil {
			return err
		}
		s.leave()
		return nil
	}
	col := ownerCol[k]
	q := `INSERT INTO ` + table + ` (` + col + `, channel, epoch, seq, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (` + col + `, channel) DO UPDATE SET epoch = excluded.epoch, seq = excluded.seq, updated_at = excluded.updated_at`
	if forwardOnly {
		q += ` WHERE NOT (` + table + `.epoch = excluded.epoch AND ` + table + `.seq > excluded.seq)`
	}
	now := s.clock.Now()
	return s.exec(ctx, "save", func(b *pgx.Batch) {
		for _, r := range rows {
			at := r.At
			if at.IsZero() {
				at = now
			}
			b.Queue(q, r.Owner, r.Channel.String(), r.Position.Epoch, int64(r.Position.Seq), at)
		}
	})
}

// loadPositions is positions.Methods.Load.
func (s *Store) loadPositions(ctx context.Context, k positions.Kind, owner string, fn func(positions.Row)) error {
	return s.read(ctx, "read", func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT channel, epoch, seq, updated_at FROM `+positionTable[k]+` WHERE `+ownerCol[k]+` = $1 ORDER BY channel`, owner)
		if err != nil {
			return err
		}
		var out []positions.Row
		var name string
		var r positions.Row
		var seq int64
		_, err = pgx.ForEachRow(rows, []any{&name, &r.Position.Epoch, &seq, &r.At}, func() error {
			ch, err := syncpoint.ParseChannel(name)
			if err != nil {
				return fmt.Errorf("stored channel %q: %w", name, err)
			}
			r.Owner, r.Channel, r.Position.Seq = owner, ch, uint64(seq)
			out = append(out, r)
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range out {
			fn(r)
		}
		return nil
	})
}

// SaveDevice implements syncpoint.Store.
func (s *Store) SaveDevice(ctx context.Context, d syncpoint.Device) error {
	if err := syncpoint.ValidateID("device id", d.ID); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	if err := syncpoint.ValidateID("user id", d.UserID); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	if !textOK(d.Platform) || !textOK(d.AppVersion) {
		return fmt.Errorf("save device: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "platform and app version: want UTF-8 without NUL bytes"))
	}
	return s.exec(ctx, "save device "+d.ID, func(b *pgx.Batch) {
		b.Queue(`INSERT INTO devices (id, user_id, platform, app_version, last_seen) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, platform = excluded.platform,
				app_version = excluded.app_version, last_seen = excluded.last_seen`,
			d.ID, d.UserID, d.Platform, d.AppVersion, d.LastSeen)
	})
}

const deviceCols = `id, user_id, platform, app_version, last_seen`

func deviceDest(d *syncpoint.Device) []any {
	return []any{&d.ID, &d.UserID, &d.Platform, &d.AppVersion, &d.LastSeen}
}

// Device implements syncpoint.Store.
func (s *Store) Device(ctx context.Context, id string) (syncpoint.Device, error) {
	var d syncpoint.Device
	err := s.read(ctx, "device "+id, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `SELECT `+deviceCols+` FROM devices WHERE id = $1`, id).Scan(deviceDest(&d)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncpoint.ErrNotFound
		}
		return err
	})
	if err != nil {
		return syncpoint.Device{}, err
	}
	return d, nil
}

// UserDevices implements syncpoint.Store. Devices seen at the same time
// come in id order.
func (s *Store) UserDevices(ctx context.Context, userID string) ([]syncpoint.Device, error) {
	var out []syncpoint.Device
	err := s.read(ctx, "devices of user "+userID, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT `+deviceCols+` FROM devices WHERE user_id = $1 ORDER BY last_seen DESC, id`, userID)
		if err != nil {
			return err
		}
		var d syncpoint.Device
		_, err = pgx.ForEachRow(rows, deviceDest(&d), func() error {
			out = append(out, d)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SaveBiz implements syncpoint.Store. A biz that is not stored yet is
// created, and the channels an earlier biz of the name left behind are
// dropped in the same transaction.
func (s *Store) SaveBiz(ctx context.Context, b syncpoint.Biz) error {
	if err := syncpoint.ValidateBizName(b.Name); err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	v, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	defer s.leave()
	err = s.once(ctx, "save biz", bulkTx, func(ctx context.Context, t *onceTx) error {
		var created bool
		bt := &pgx.Batch{}
		t.begin(bt)
		// xmax is 0 on a row this statement inserted, not on one it updated.
		bt.Queue(`INSERT INTO bizzes (name, settings) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET settings = excluded.settings
			RETURNING xmax = 0`, b.Name, v).QueryRow(func(row pgx.Row) error { return row.Scan(&created) })
		if err := t.send(ctx, bt); err != nil {
			return err
		}
		bt = &pgx.Batch{}
		if created {
			if err := s.queueDropChannels(ctx, t, bt, b.Name); err != nil {
				return err
			}
		}
		return t.commit(ctx, bt)
	})
	if err != nil {
		return fmt.Errorf("save biz %s: %w", b.Name, giveUp(err))
	}
	return nil
}

// DeleteBiz implements syncpoint.Store. It drops the biz's channels with
// it, in one transaction: their entries, idempotency keys and heads, so a
// biz made again under the name starts with new channels and new epochs.
func (s *Store) DeleteBiz(ctx context.Context, name string) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("delete biz: %w", err)
	}
	defer s.leave()
	err := s.once(ctx, "delete biz", bulkTx, func(ctx context.Context, t *onceTx) error {
		found := false
		bt := &pgx.Batch{}
		t.begin(bt)
		bt.Queue(`DELETE FROM bizzes WHERE name = $1`, name).Exec(func(tag pgconn.CommandTag) error {
			found = tag.RowsAffected() > 0
			return nil
		})
		if err := t.send(ctx, bt); err != nil {
			return err
		}
		if !found {
			t.rollback()
			return syncpoint.ErrNotFound
		}
		bt = &pgx.Batch{}
		if err := s.queueDropChannels(ctx, t, bt, name); err != nil {
			return err
		}
		return t.commit(ctx, bt)
	})
	if err != nil {
		return fmt.Errorf("delete biz %s: %w", name, giveUp(err))
	}
	return nil
}

// queueDropChannels locks the heads of biz's channels, in the order
// appends lock them, and queues their deletion, with their entries, record
// keys and idempotency keys, on b.
func (s *Store) queueDropChannels(ctx context.Context, t *onceTx, b *pgx.Batch, biz string) error {
	var ids []int64
	lock := &pgx.Batch{}
	lock.Queue(`SELECT id FROM channels WHERE biz = $1 ORDER BY name FOR UPDATE`, biz).Query(func(rows pgx.Rows) error {
		var id int64
		_, err := pgx.ForEachRow(rows, []any{&id}, func() error { ids = append(ids, id); return nil })
		return err
	})
	if err := t.send(ctx, lock); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	b.Queue(`DELETE FROM entries WHERE channel_id = ANY($1::bigint[])`, ids)
	b.Queue(`DELETE FROM keys WHERE channel_id = ANY($1::bigint[])`, ids)
	b.Queue(`DELETE FROM idempotency_keys WHERE channel_id = ANY($1::bigint[])`, ids)
	b.Queue(`DELETE FROM channels WHERE id = ANY($1::bigint[])`, ids)
	return nil
}

// Bizzes implements syncpoint.Store.
func (s *Store) Bizzes(ctx context.Context) ([]syncpoint.Biz, error) {
	var out []syncpoint.Biz
	err := s.read(ctx, "bizzes", func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT settings FROM bizzes ORDER BY name`)
		if err != nil {
			return err
		}
		var v []byte
		_, err = pgx.ForEachRow(rows, []any{&v}, func() error {
			var b syncpoint.Biz
			if err := json.Unmarshal(v, &b); err != nil {
				return fmt.Errorf("stored biz: %w", err)
			}
			out = append(out, b)
			return nil
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutBlob implements syncpoint.Store. A zero expires keeps the blob until
// it is replaced.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte, expires time.Time) error {
	if key == "" || len(key) > maxBlobKeyLen || !textOK(key) {
		return fmt.Errorf("put blob: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "blob key: want 1-%d bytes of UTF-8 without NUL bytes", maxBlobKeyLen))
	}
	if value == nil {
		value = []byte{}
	}
	var exp *time.Time
	if !expires.IsZero() {
		exp = &expires
	}
	return s.exec(ctx, fmt.Sprintf("put blob %q", key), func(b *pgx.Batch) {
		b.Queue(`INSERT INTO blobs (key, value, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`, key, value, exp)
	})
}

// Blob implements syncpoint.Store; expiry is judged by the store's clock.
func (s *Store) Blob(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.read(ctx, fmt.Sprintf("blob %q", key), func(ctx context.Context) error {
		if !textOK(key) {
			return syncpoint.ErrNotFound
		}
		var exp *time.Time
		err := s.pool.QueryRow(ctx, `SELECT value, expires_at FROM blobs WHERE key = $1`, key).Scan(&v, &exp)
		if errors.Is(err, pgx.ErrNoRows) || err == nil && exp != nil && !s.clock.Now().Before(*exp) {
			return syncpoint.ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}
