package pebble

import (
	"context"
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// Keys implements syncpoint.Store. It scans the channel's key index ('k'),
// whose rows carry each key's op and expiry, so no entry is read; a limit
// of 0 or less means DefaultReadLimit, and limits above MaxReadLimit are
// capped. A key whose newest entry still waits for its fsync ends the page
// before it (More set), or, first in the page, is waited for.
func (s *Store) Keys(ctx context.Context, ch syncpoint.Channel, after string, limit int, now time.Time) (syncpoint.KeyPage, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.KeyPage{}, fmt.Errorf("keys: %w", err)
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	if err := s.start(ctx); err != nil {
		return syncpoint.KeyPage{}, fmt.Errorf("keys: %w", err)
	}
	defer s.leave()
	for {
		p, ok, err := s.keysOnce(ctx, ch, after, limit, now)
		if err != nil {
			return syncpoint.KeyPage{}, fmt.Errorf("keys of %s: %w", ch, err)
		}
		if ok {
			return p, nil
		}
	}
}

func (s *Store) keysOnce(ctx context.Context, ch syncpoint.Channel, after string, limit int, now time.Time) (syncpoint.KeyPage, bool, error) {
	v, err := s.begin(ctx, ch)
	if err != nil {
		return syncpoint.KeyPage{}, false, err
	}
	if v.d.Epoch == "" {
		return syncpoint.KeyPage{Info: syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}}, true, nil
	}
	prefix := chanPrefix(pKey, v.st.name)
	lower := prefix
	if after != "" {
		// after+"\x00" is the least key above after.
		lower = append(append(append([]byte(nil), prefix...), after...), 0)
	}
	it, err := s.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return syncpoint.KeyPage{}, false, err
	}
	defer it.Close()
	first, ok := s.finish(v)
	if !ok {
		return syncpoint.KeyPage{}, false, nil
	}
	p := syncpoint.KeyPage{Info: s.info(v, first)}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		// A long run of tombstones lists nothing; check ctx now and then.
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return syncpoint.KeyPage{}, false, err
			}
		}
		val, err := it.ValueAndErr()
		if err != nil {
			return syncpoint.KeyPage{}, false, err
		}
		row, err := decodeKeyRow(val)
		if err != nil {
			return syncpoint.KeyPage{}, false, err
		}
		if row.seq > v.d.LastSeq {
			// Applied but not synced: its older entry may already be
			// compacted away, so the key is listed once the batch syncs.
			// What is listed so far stands, so keys written all the time
			// do not keep a listing from ending.
			if len(p.Keys) > 0 {
				p.More = true
				return p, true, nil
			}
			return syncpoint.KeyPage{}, false, s.waitChange(ctx, v.wake)
		}
		if row.seq < first {
			continue // trimmed; trimming leaves the index row behind
		}
		if !row.full {
			if row, err = s.keyRowFromEntry(v.st.name, row.seq); err != nil {
				return syncpoint.KeyPage{}, false, err
			}
		}
		if !row.live(now) {
			continue
		}
		if len(p.Keys) == limit {
			p.More = true
			break
		}
		p.Keys = append(p.Keys, syncpoint.KeySeq{Key: string(it.Key()[len(prefix):]), Seq: row.seq})
	}
	if err := it.Error(); err != nil {
		return syncpoint.KeyPage{}, false, err
	}
	return p, true, nil
}

// keyRowFromEntry fills in what an index row of an older format lacks from
// the entry it points to; an entry that is gone makes a row that is not
// live.
func (s *Store) keyRowFromEntry(name string, seq uint64) (keyRow, error) {
	val, found, err := s.get(entryKey(name, seq))
	if err != nil || !found {
		return keyRow{seq: seq, full: true}, err
	}
	var e syncpoint.Entry
	if err := decodeEntry(val, &e); err != nil {
		return keyRow{}, fmt.Errorf("entry %d: %w", seq, err)
	}
	return keyRow{seq: seq, put: e.Op == syncpoint.OpPut, expires: e.ExpiresAt, full: true}, nil
}
