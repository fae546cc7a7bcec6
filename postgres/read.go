package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/syncpoint/syncpoint"
)

// entryCols are the columns an entry is read from, in scanEntry's order.
// They come through a LEFT JOIN in Read, hence coalesce.
const entryCols = `coalesce(e.seq, 0), coalesce(e.op, ''), coalesce(e.key, ''), e.data, coalesce(e.created_at, 'epoch'),
	e.expires_at, coalesce(e.conditions, ''), coalesce(e.origin, ''), coalesce(e.idempotency_key, '')`

// entryRow is the scan target of entryCols.
type entryRow struct {
	seq        int64
	op         string
	e          syncpoint.Entry
	expires    pgtype.Timestamptz
	conditions string
}

func (r *entryRow) dest() []any {
	return []any{&r.seq, &r.op, &r.e.Key, &r.e.Data, &r.e.CreatedAt, &r.expires, &r.conditions, &r.e.Origin, &r.e.IdempotencyKey}
}

// entry finishes the scanned row as an entry of ch.
func (r *entryRow) entry(ch syncpoint.Channel, epoch string) (syncpoint.Entry, error) {
	e := r.e
	e.Channel, e.Epoch, e.Seq, e.Op = ch, epoch, uint64(r.seq), syncpoint.Op(r.op)
	if r.expires.Valid {
		e.ExpiresAt = r.expires.Time
	}
	if len(e.Data) == 0 {
		e.Data = nil
	}
	if err := decodeConditions(r.conditions, &e.Conditions); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("entry %d: %w", e.Seq, err)
	}
	return e, nil
}

// seqArg passes a seq to a bigint parameter: seqs past the range of
// bigint cannot be stored, so the largest one stands for them all.
func seqArg(seq uint64) int64 { return int64(min(seq, math.MaxInt64)) }

// Read implements syncpoint.Store. A limit of 0 or less means
// DefaultReadLimit; limits above MaxReadLimit are capped.
//
// The head and the entries come from one statement, so from one snapshot:
// a page never mixes entries of one epoch with the info of another. The
// page stops at the head's last_seq, and every seq up to it is committed:
// a channel's seqs are handed out only by a transaction that holds its
// head row's lock until it commits (see doc.go), so there is no seq at or
// below last_seq that commits later and a reader could step over.
func (s *Store) Read(ctx context.Context, ch syncpoint.Channel, after uint64, limit int, now time.Time) (syncpoint.Page, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Page{}, fmt.Errorf("read: %w", err)
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	var p syncpoint.Page
	err := s.read(ctx, "read "+ch.String(), func(ctx context.Context) error {
		p = syncpoint.Page{Info: syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}}
		rows, err := s.pool.Query(ctx, `SELECT c.epoch, c.first_seq, c.last_seq, `+entryCols+`
			FROM channels c LEFT JOIN LATERAL (
				SELECT * FROM entries e
				WHERE e.channel_id = c.id AND e.seq > greatest($2, c.first_seq - 1) AND e.seq <= c.last_seq
					AND (e.expires_at IS NULL OR e.expires_at > $3)
				ORDER BY e.seq LIMIT $4
			) e ON true
			WHERE c.name = $1 AND c.epoch IS NOT NULL`, ch.String(), seqArg(after), now, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		raw := rawOK(rows)
		var r pageRow
		for n := 0; rows.Next(); n++ {
			var err error
			if raw {
				err = readRow(rows.RawValues(), &r, n > 0)
			} else {
				err = scanRow(rows, &r) // a connection set to the text protocol
			}
			if err != nil {
				return err
			}
			p.Info.Epoch, p.Info.FirstSeq, p.Info.LastSeq = r.epoch, r.first, r.last
			if !r.hasEntry {
				break // the channel, without entries to return
			}
			e := r.e
			e.Channel, e.Epoch = ch, r.epoch
			if len(r.conditions) > 0 {
				if err := decodeConditions(string(r.conditions), &e.Conditions); err != nil {
					return fmt.Errorf("entry %d: %w", e.Seq, err)
				}
			}
			if p.Entries == nil {
				p.Entries = make([]syncpoint.Entry, 0, pageCap(after, r.first, r.last, limit))
			}
			p.Entries = append(p.Entries, e)
		}
		return rows.Err()
	})
	if err != nil {
		return syncpoint.Page{}, err
	}
	return p, nil
}

// scanRow is readRow through pgx's Scan, for rows in formats readRow
// does not decode.
func scanRow(rows pgx.Rows, r *pageRow) error {
	var er entryRow
	var first, last int64
	if err := rows.Scan(append([]any{&r.epoch, &first, &last}, er.dest()...)...); err != nil {
		return err
	}
	r.first, r.last, r.hasEntry = uint64(first), uint64(last), er.seq != 0
	if r.hasEntry {
		e, err := er.entry(syncpoint.Channel{}, "")
		if err != nil {
			return err
		}
		e.Conditions = syncpoint.Conditions{}
		r.e, r.conditions = e, []byte(er.conditions)
	}
	return nil
}

// pageCap is how many entries a page can hold at most.
func pageCap(after, first, last uint64, limit int) int {
	from := max(after, first-1)
	if last <= from {
		return 1
	}
	return int(min(last-from, uint64(limit)))
}

// Channel implements syncpoint.Store.
func (s *Store) Channel(ctx context.Context, ch syncpoint.Channel) (syncpoint.ChannelInfo, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("channel: %w", err)
	}
	info := syncpoint.ChannelInfo{Channel: ch}
	err := s.read(ctx, "channel "+ch.String(), func(ctx context.Context) error {
		var first, last int64
		err := s.pool.QueryRow(ctx, `SELECT epoch, first_seq, last_seq FROM channels WHERE name = $1 AND epoch IS NOT NULL`, ch.String()).
			Scan(&info.Epoch, &first, &last)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncpoint.ErrNotFound
		}
		info.FirstSeq, info.LastSeq = uint64(first), uint64(last)
		return err
	})
	if err != nil {
		return syncpoint.ChannelInfo{}, err
	}
	return info, nil
}

// Heads implements syncpoint.HeadReader in one statement, so from one
// snapshot, through the channels' unique name index.
func (s *Store) Heads(ctx context.Context, chans []syncpoint.Channel) ([]syncpoint.ChannelInfo, error) {
	names := make([]string, len(chans))
	for i, ch := range chans {
		if err := ch.Validate(); err != nil {
			return nil, fmt.Errorf("heads: %w", err)
		}
		names[i] = ch.String()
	}
	out := make([]syncpoint.ChannelInfo, len(chans))
	for i, ch := range chans {
		out[i] = syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}
	}
	if len(chans) == 0 {
		return out, nil
	}
	err := s.read(ctx, fmt.Sprintf("heads of %d channels", len(chans)), func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT name, epoch, first_seq, last_seq FROM channels WHERE name = ANY($1) AND epoch IS NOT NULL`, names)
		if err != nil {
			return err
		}
		heads := make(map[string]syncpoint.ChannelInfo, len(chans))
		var name, epoch string
		var first, last int64
		_, err = pgx.ForEachRow(rows, []any{&name, &epoch, &first, &last}, func() error {
			heads[name] = syncpoint.ChannelInfo{Epoch: epoch, FirstSeq: uint64(first), LastSeq: uint64(last)}
			return nil
		})
		if err != nil {
			return err
		}
		for i, ch := range chans {
			info, ok := heads[names[i]]
			if !ok {
				info = syncpoint.ChannelInfo{FirstSeq: 1}
			}
			info.Channel = ch
			out[i] = info
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Entry implements syncpoint.Store. An entry that expired but was not yet
// swept is still returned.
func (s *Store) Entry(ctx context.Context, ch syncpoint.Channel, seq uint64) (syncpoint.Entry, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("entry: %w", err)
	}
	var e syncpoint.Entry
	err := s.read(ctx, fmt.Sprintf("entry %s/%d", ch, seq), func(ctx context.Context) error {
		var r entryRow
		var epoch string
		err := s.pool.QueryRow(ctx, `SELECT c.epoch, `+entryCols+`
			FROM channels c JOIN entries e ON e.channel_id = c.id AND e.seq = $2
			WHERE c.name = $1 AND c.epoch IS NOT NULL AND e.seq >= c.first_seq AND e.seq <= c.last_seq`,
			ch.String(), seqArg(seq)).Scan(append([]any{&epoch}, r.dest()...)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncpoint.ErrNotFound
		}
		if err != nil {
			return err
		}
		e, err = r.entry(ch, epoch)
		return err
	})
	if err != nil {
		return syncpoint.Entry{}, err
	}
	return e, nil
}

// KeyEntry implements syncpoint.Store.
func (s *Store) KeyEntry(ctx context.Context, ch syncpoint.Channel, key string) (syncpoint.Entry, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("key entry: %w", err)
	}
	var e syncpoint.Entry
	err := s.read(ctx, fmt.Sprintf("key entry %s %q", ch, key), func(ctx context.Context) error {
		if !textOK(key) {
			return syncpoint.ErrNotFound // no such key can have been stored
		}
		var r entryRow
		var epoch string
		err := s.pool.QueryRow(ctx, `SELECT c.epoch, `+entryCols+`
			FROM channels c JOIN keys k ON k.channel_id = c.id AND k.key = $2
			JOIN entries e ON e.channel_id = c.id AND e.seq = k.seq
			WHERE c.name = $1 AND c.epoch IS NOT NULL AND k.seq >= c.first_seq AND k.seq <= c.last_seq`,
			ch.String(), key).Scan(append([]any{&epoch}, r.dest()...)...)
		if errors.Is(err, pgx.ErrNoRows) {
			return syncpoint.ErrNotFound
		}
		if err != nil {
			return err
		}
		e, err = r.entry(ch, epoch)
		return err
	})
	if err != nil {
		return syncpoint.Entry{}, err
	}
	return e, nil
}

// Keys implements syncpoint.Store. It walks the keys table in key order,
// from one snapshot with the head, so it reads no entry; a limit of 0 or
// less means DefaultReadLimit, and limits above MaxReadLimit are capped.
func (s *Store) Keys(ctx context.Context, ch syncpoint.Channel, after string, limit int, now time.Time) (syncpoint.KeyPage, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.KeyPage{}, fmt.Errorf("keys: %w", err)
	}
	if !utf8.ValidString(after) {
		return syncpoint.KeyPage{}, fmt.Errorf("keys: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "after: want UTF-8"))
	}
	// No stored key holds a NUL byte, so the keys above after are those
	// above what precedes its first NUL, which PostgreSQL can take.
	if i := strings.IndexByte(after, 0); i >= 0 {
		after = after[:i]
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	var p syncpoint.KeyPage
	err := s.read(ctx, "keys of "+ch.String(), func(ctx context.Context) error {
		p = syncpoint.KeyPage{Info: syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}}
		rows, err := s.pool.Query(ctx, `SELECT c.epoch, c.first_seq, c.last_seq, coalesce(k.key, ''), coalesce(k.seq, 0)
			FROM channels c LEFT JOIN LATERAL (
				SELECT key, seq FROM keys k
				WHERE k.channel_id = c.id AND k.key > $2 AND k.put AND k.seq >= c.first_seq AND k.seq <= c.last_seq
					AND (k.expires_at IS NULL OR k.expires_at > $3)
				ORDER BY k.key LIMIT $4
			) k ON true
			WHERE c.name = $1 AND c.epoch IS NOT NULL`, ch.String(), after, now, limit+1)
		if err != nil {
			return err
		}
		var first, last, seq int64
		var key string
		_, err = pgx.ForEachRow(rows, []any{&p.Info.Epoch, &first, &last, &key, &seq}, func() error {
			p.Info.FirstSeq, p.Info.LastSeq = uint64(first), uint64(last)
			switch {
			case seq == 0: // the channel, without keys to list
			case len(p.Keys) == limit:
				p.More = true
			default:
				p.Keys = append(p.Keys, syncpoint.KeySeq{Key: key, Seq: uint64(seq)})
			}
			return nil
		})
		return err
	})
	if err != nil {
		return syncpoint.KeyPage{}, err
	}
	return p, nil
}
