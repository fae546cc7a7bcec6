package pebble

import (
	"encoding/binary"
	"fmt"
	"strings"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// Store formats: the layout of the rows this code writes. Open upgrades an
// older store in place, once, and refuses a newer one.
//
//	1  no format row. The position of a user as a whole was the sync point
//	   of the pseudo device "user:<id>", and the notice deliverer's cursors
//	   those of the pseudo device "syncpoint-uploads".
//	2  user positions ('q') and cursors ('r') have keyspaces of their own.
//	3  channels are indexed by biz ('c'), and DeleteBiz drops a biz's
//	   channels; SaveBiz of a new biz drops what an earlier one of its
//	   name left behind.
//	4  key index rows ('k') carry the op and expiry of the key's newest
//	   entry besides its seq, for Keys; access tokens ('a', 'h', 'o').
const currentFormat = 4

// migrateBatch bounds the rows one upgrade batch rewrites.
const migrateBatch = 10_000

var formatKey = storeKey("format")

// upgrade brings the store to currentFormat. It runs in Open before the
// committer starts, so it writes to the database directly.
func (s *Store) upgrade() error {
	format := uint64(1)
	v, ok, err := s.get(formatKey)
	if err != nil {
		return fmt.Errorf("read format: %w", err)
	}
	if ok {
		var n int
		if format, n = binary.Uvarint(v); n <= 0 || n != len(v) {
			return fmt.Errorf("read format: %w", errCorrupt)
		}
	}
	if format > currentFormat {
		return fmt.Errorf("the store has format %d, newer than this syncpoint knows (%d): run a newer syncpoint", format, currentFormat)
	}
	if format == currentFormat {
		return nil
	}
	if format < 2 {
		users, cursors, err := s.splitPositions()
		if err != nil {
			return fmt.Errorf("upgrade to format 2: %w", err)
		}
		if users+cursors > 0 {
			s.log.Info("store: upgraded to format 2: user positions and cursors moved out of the device sync points", "user_positions", users, "cursors", cursors)
		}
	}
	if format < 3 {
		n, err := s.indexChannels()
		if err != nil {
			return fmt.Errorf("upgrade to format 3: %w", err)
		}
		if n > 0 {
			s.log.Info("store: upgraded to format 3: channels indexed by biz", "channels", n)
		}
	}
	if format < 4 {
		n, err := s.fillKeyRows()
		if err != nil {
			return fmt.Errorf("upgrade to format 4: %w", err)
		}
		if n > 0 {
			s.log.Info("store: upgraded to format 4: the key index carries each key's op and expiry", "keys", n)
		}
	}
	if err := s.db.Set(formatKey, binary.AppendUvarint(nil, currentFormat), pebbledb.Sync); err != nil {
		return fmt.Errorf("write format: %w", err)
	}
	return nil
}

// splitPositions moves format 1's pseudo-device sync points to their own
// keyspaces. A sync point of "user:<id>" in a channel of that same user is
// a user position; it also stays a sync point when a real device of that
// name exists, since then it may be that device's. A sync point in a
// reserved biz's channel is a cursor: no device may read those bizzes.
func (s *Store) splitPositions() (users, cursors int, err error) {
	prefix := []byte{pSyncPt}
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		dev, rest, ok := cutStr(k[1:])
		name, _, ok2 := cutStr(rest)
		if !ok || !ok2 {
			continue // not this upgrade's business
		}
		ch, err := syncpoint.ParseChannel(name)
		if err != nil {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return users, cursors, err
		}
		switch {
		case strings.HasPrefix(ch.Biz, syncpoint.ReservedBizPrefix):
			b.Set(positionKey(pCursor, dev, name), v, nil)
			b.Delete(k, nil)
			cursors++
		case ch.Target.Kind == syncpoint.TargetUser && dev == "user:"+ch.Target.ID:
			b.Set(positionKey(pUserPos, ch.Target.ID, name), v, nil)
			_, isDevice, err := s.get(deviceKey(dev))
			if err != nil {
				return users, cursors, err
			}
			if !isDevice {
				b.Delete(k, nil)
			}
			users++
		default:
			continue
		}
		if b.Count() >= migrateBatch {
			if err := b.Commit(pebbledb.Sync); err != nil {
				return users, cursors, err
			}
			b.Close()
			b = s.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return users, cursors, err
	}
	if b.Empty() {
		return users, cursors, nil
	}
	return users, cursors, b.Commit(pebbledb.Sync)
}

// indexChannels writes the biz index row of every channel.
func (s *Store) indexChannels() (int, error) {
	prefix := []byte{pMeta}
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		name, _, ok := cutStr(it.Key()[1:])
		if !ok {
			continue
		}
		biz, _, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		b.Set(bizChanKey(biz, name), nil, nil)
		if n++; b.Count() >= migrateBatch {
			if err := b.Commit(pebbledb.Sync); err != nil {
				return n, err
			}
			b.Close()
			b = s.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if b.Empty() {
		return n, nil
	}
	return n, b.Commit(pebbledb.Sync)
}

// fillKeyRows rewrites each key index row that holds only a seq with the op
// and expiry of the entry it points to. A row whose entry is gone (trimmed)
// stays as it is; Keys looks such rows up, and finds them not live.
func (s *Store) fillKeyRows() (int, error) {
	prefix := []byte{pKey}
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	b := s.db.NewBatch()
	defer func() { b.Close() }()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		name, _, ok := cutStr(it.Key()[1:])
		if !ok {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return n, err
		}
		row, err := decodeKeyRow(v)
		if err != nil || row.full {
			continue // not this upgrade's business
		}
		val, found, err := s.get(entryKey(name, row.seq))
		if err != nil {
			return n, err
		}
		if !found {
			continue
		}
		var e syncpoint.Entry
		if decodeEntry(val, &e) != nil {
			continue
		}
		b.Set(it.Key(), encodeKeyRow(row.seq, e.Op, e.ExpiresAt), nil)
		if n++; b.Count() >= migrateBatch {
			if err := b.Commit(pebbledb.Sync); err != nil {
				return n, err
			}
			b.Close()
			b = s.db.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		return n, err
	}
	if b.Empty() {
		return n, nil
	}
	return n, b.Commit(pebbledb.Sync)
}
