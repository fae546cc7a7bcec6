package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncpoint/syncpoint"
)

// Sweep implements syncpoint.Store. It works in transactions of
// Options.SweepChunk rows, each found through an index (entries by
// gone_at, idempotency keys by deadline, blobs and access tokens by
// expires_at), so it never scans a table, holds no channel's head for
// long, and stops between chunks when ctx ends.
//
// Sweeps on any number of handles may run at once, with appends: a chunk
// locks the heads of its entries' channels, in the order appends lock
// them, before it deletes, and deletes only what is still due, so each
// entry is removed and counted by one sweep.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.start(ctx); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	defer s.leave()
	sw := &sweep{now: now, removed: make(map[int64]*removedSeqs)}
	total := 0
	for {
		n, more, err := s.sweepChunk(ctx, sw)
		total += n
		s.metrics.SweepRemoved.Add(float64(n))
		if err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		if !more {
			break
		}
		if err := s.between(ctx); err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
	}
	for _, q := range []string{
		`DELETE FROM idempotency_keys i USING (SELECT channel_id, key FROM idempotency_keys WHERE deadline <= $1 LIMIT $2) d
			WHERE i.channel_id = d.channel_id AND i.key = d.key AND i.deadline <= $1`,
		`DELETE FROM blobs b USING (SELECT key FROM blobs WHERE expires_at <= $1 LIMIT $2) d
			WHERE b.key = d.key AND b.expires_at <= $1`,
		`DELETE FROM access_tokens t USING (SELECT id FROM access_tokens WHERE expires_at <= $1 LIMIT $2) d
			WHERE t.id = d.id AND t.expires_at <= $1`,
	} {
		for {
			var n int64
			err := s.retry(ctx, "sweep", func(ctx context.Context) error {
				tag, err := s.pool.Exec(ctx, q, now, s.opts.SweepChunk)
				n = tag.RowsAffected()
				return err
			})
			if err != nil {
				return total, fmt.Errorf("sweep: %w", giveUp(err))
			}
			if n < int64(s.opts.SweepChunk) {
				break
			}
			if err := s.between(ctx); err != nil {
				return total, fmt.Errorf("sweep: %w", err)
			}
		}
	}
	return total, nil
}

// between lets a long sweep stop when ctx ends or the store closes.
func (s *Store) between(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case <-s.stop:
		return syncpoint.ErrClosed
	default:
		return nil
	}
}

// sweep carries what one Sweep call removed from chunk to chunk: FirstSeq
// advances over a removed seq once nothing older is left, which a later
// chunk may be the one to establish.
type sweep struct {
	now     time.Time
	removed map[int64]*removedSeqs // by channel id
}

// removedSeqs are the seqs a sweep removed at or above FirstSeq, in one
// epoch: a reset between two chunks starts them afresh.
type removedSeqs struct {
	epoch string
	seqs  []uint64
}

// sweepChunk removes up to SweepChunk due entries in one transaction.
func (s *Store) sweepChunk(ctx context.Context, sw *sweep) (removed int, more bool, err error) {
	var chans, seqs []int64
	// Candidates are read without locks: locking entries before heads
	// would take locks in the other order from appends, which delete
	// entries (compaction, trimming) while holding their heads.
	err = s.retryRead(ctx, func(ctx context.Context) error {
		chans, seqs = chans[:0], seqs[:0]
		rows, err := s.pool.Query(ctx, `SELECT channel_id, seq FROM entries WHERE gone_at <= $1 ORDER BY gone_at LIMIT $2`, sw.now, s.opts.SweepChunk)
		if err != nil {
			return err
		}
		var c, q int64
		_, err = pgx.ForEachRow(rows, []any{&c, &q}, func() error {
			chans, seqs = append(chans, c), append(seqs, q)
			return nil
		})
		return err
	})
	if err != nil || len(chans) == 0 {
		return 0, false, giveUp(err)
	}
	more = len(chans) == s.opts.SweepChunk
	ids := slices.Compact(slices.Sorted(slices.Values(chans)))

	type headRow struct {
		epoch       *string
		first, last int64
		oldest      *int64
	}
	var heads map[int64]*headRow
	var gone map[int64][]uint64
	err = s.once(ctx, "sweep", smallTx, func(ctx context.Context, t *onceTx) error {
		heads, gone = make(map[int64]*headRow), make(map[int64][]uint64)
		b := &pgx.Batch{}
		t.begin(b)
		b.Queue(`SELECT id, epoch, first_seq, last_seq FROM channels WHERE id = ANY($1::bigint[]) ORDER BY name FOR UPDATE`, ids).
			Query(func(rows pgx.Rows) error {
				var id int64
				var h headRow
				_, err := pgx.ForEachRow(rows, []any{&id, &h.epoch, &h.first, &h.last}, func() error {
					hc := h
					heads[id] = &hc
					return nil
				})
				return err
			})
		// The record keys that point at a removed entry go with it.
		b.Queue(`WITH gone AS (
				DELETE FROM entries e USING unnest($1::bigint[], $2::bigint[]) AS d(c, s)
				WHERE e.channel_id = d.c AND e.seq = d.s AND e.gone_at <= $3 RETURNING e.channel_id, e.seq, e.key, e.op
			), keys_gone AS (
				DELETE FROM keys k USING gone g WHERE g.op <> 'msg' AND k.channel_id = g.channel_id AND k.key = g.key AND k.seq = g.seq
			) SELECT channel_id, seq FROM gone`, chans, seqs, sw.now).
			Query(func(rows pgx.Rows) error {
				var id, seq int64
				_, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error {
					gone[id] = append(gone[id], uint64(seq))
					return nil
				})
				return err
			})
		b.Queue(`SELECT c, (SELECT min(seq) FROM entries WHERE channel_id = c) FROM unnest($1::bigint[]) AS c`, ids).
			Query(func(rows pgx.Rows) error {
				var id int64
				var oldest *int64
				_, err := pgx.ForEachRow(rows, []any{&id, &oldest}, func() error {
					if h := heads[id]; h != nil {
						h.oldest = oldest
					}
					return nil
				})
				return err
			})
		if err := t.send(ctx, b); err != nil {
			return err
		}
		b = &pgx.Batch{}
		var upID, upFirst []int64
		for id, seqs := range gone {
			h := heads[id]
			if h == nil || h.epoch == nil {
				continue // a channel whose biz was dropped: its entries are strays
			}
			if first := sw.advance(id, *h.epoch, uint64(h.first), uint64(h.last), h.oldest, seqs); first != uint64(h.first) {
				upID, upFirst = append(upID, id), append(upFirst, int64(first))
			}
		}
		if len(upID) > 0 {
			b.Queue(`UPDATE channels c SET first_seq = u.f FROM unnest($1::bigint[], $2::bigint[]) AS u(id, f) WHERE c.id = u.id`, upID, upFirst)
		}
		return t.commit(ctx, b)
	})
	if err != nil {
		return 0, false, giveUp(err)
	}
	for _, seqs := range gone {
		removed += len(seqs)
	}
	return removed, more, nil
}

// advance returns the channel's FirstSeq once the seqs removed are gone:
// past every seq this sweep removed below the oldest entry still stored.
// Seqs that compaction removed are absent too, so they do not hold the
// advance back, but they do not move it either: only a removal by expiry
// is a gap a device must be told of.
func (sw *sweep) advance(id int64, epoch string, first, last uint64, oldest *int64, removed []uint64) uint64 {
	r := sw.removed[id]
	if r == nil || r.epoch != epoch {
		r = &removedSeqs{epoch: epoch}
		sw.removed[id] = r
	}
	r.seqs = append(r.seqs, removed...)
	low := last + 1
	if oldest != nil {
		low = uint64(*oldest)
	}
	keep := r.seqs[:0]
	for _, seq := range r.seqs {
		if seq < low {
			first = max(first, seq+1)
		} else {
			keep = append(keep, seq)
		}
	}
	r.seqs = keep
	return first
}

// ResetChannel implements syncpoint.Store. The channel's record keys and
// idempotency keys go with its entries.
func (s *Store) ResetChannel(ctx context.Context, ch syncpoint.Channel) (syncpoint.ChannelInfo, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("reset channel: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("reset channel: %w", err)
	}
	defer s.leave()
	var info syncpoint.ChannelInfo
	err := s.once(ctx, "reset channel", bulkTx, func(ctx context.Context, t *onceTx) error {
		var id int64
		found := false
		b := &pgx.Batch{}
		t.begin(b)
		b.Queue(`SELECT id FROM channels WHERE name = $1 AND epoch IS NOT NULL FOR UPDATE`, ch.String()).
			Query(func(rows pgx.Rows) error {
				_, err := pgx.ForEachRow(rows, []any{&id}, func() error { found = true; return nil })
				return err
			})
		if err := t.send(ctx, b); err != nil {
			return err
		}
		if !found {
			t.rollback()
			return syncpoint.ErrNotFound
		}
		info = syncpoint.ChannelInfo{Channel: ch, Epoch: newEpoch(), FirstSeq: 1}
		b = &pgx.Batch{}
		b.Queue(`DELETE FROM entries WHERE channel_id = $1`, id)
		b.Queue(`DELETE FROM keys WHERE channel_id = $1`, id)
		b.Queue(`DELETE FROM idempotency_keys WHERE channel_id = $1`, id)
		b.Queue(`UPDATE channels SET epoch = $2, first_seq = 1, last_seq = 0 WHERE id = $1`, id, info.Epoch)
		return t.commit(ctx, b)
	})
	if err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("reset channel %s: %w", ch, giveUp(err))
	}
	return info, nil
}
