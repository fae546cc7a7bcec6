package pebble

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// Sweep implements syncpoint.Store. It works in batches of
// Options.SweepChunk expiry rows, so appends interleave with a long sweep,
// and stops between batches when ctx ends.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := s.start(ctx); err != nil {
		return 0, fmt.Errorf("sweep: %w", err)
	}
	defer s.leave()
	sw := &sweep{now: now, removed: make(map[string]*removedSeqs)}
	total := 0
	for {
		var n int
		var more bool
		o := &op{exclusive: true, fn: func(t *txn) error {
			n, more = s.sweepChunk(t, sw)
			return nil
		}}
		if err := s.do(ctx, o); err != nil {
			return total, fmt.Errorf("sweep: %w", err)
		}
		total += n
		s.metrics.SweepRemoved.Add(float64(n))
		if !more {
			return total, nil
		}
		if s.closing.Load() {
			return total, fmt.Errorf("sweep: %w", syncpoint.ErrClosed)
		}
	}
}

// sweep carries what one Sweep call removed from batch to batch: FirstSeq
// advances over a removed seq once nothing older is left, which a later
// batch may be the one to establish.
type sweep struct {
	now     time.Time
	removed map[string]*removedSeqs // by channel name
	// next is where the next batch starts, past the rows already deleted,
	// so that a long sweep does not step over its own tombstones again.
	next []byte
}

// removedSeqs are the seqs a sweep removed at or above FirstSeq, in one
// epoch: a reset between two batches of a sweep starts them afresh.
type removedSeqs struct {
	epoch string
	seqs  []uint64
}

// sweepChunk handles up to SweepChunk expiry rows due at sw.now. It runs in
// a batch of its own, so the database shows every earlier write.
func (s *Store) sweepChunk(t *txn, sw *sweep) (removed int, more bool) {
	upper := prefixEnd(appendTime([]byte{pExpiry}, sw.now))
	lower := sw.next
	if lower == nil {
		lower = []byte{pExpiry}
	}
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		t.err = err
		return 0, false
	}
	defer it.Close()
	var chans []*chanState
	rows := 0
	for valid := it.First(); valid; valid = it.Next() {
		if rows == s.opts.SweepChunk {
			more = true
			break
		}
		rows++
		k := append([]byte(nil), it.Key()...)
		t.delBlind(k)
		sw.next = append(k[:len(k):len(k)], 0)
		kind, payload := k[1+timeLen], k[1+timeLen+1:]
		switch kind {
		case xEntry, xTomb:
			st := s.sweepEntry(t, sw, kind, payload)
			if st != nil {
				removed++
				if !slices.Contains(chans, st) {
					chans = append(chans, st)
				}
			}
		case xIdem:
			name, ikey, ok := cutStr(payload)
			if !ok {
				break
			}
			key := idemKey(name, string(ikey))
			if v, ok := t.get(key); ok {
				if _, deadline, _, err := decodeIdem(v); err != nil || !sw.now.Before(deadline) {
					t.del(key)
				}
			}
		case xToken:
			s.sweepToken(t, sw, string(payload))
		case xBlob:
			key := blobKey(string(payload))
			if v, ok := t.get(key); ok {
				if _, exp, err := decodeBlob(v); err != nil || (!exp.IsZero() && !sw.now.Before(exp)) {
					t.del(key)
				}
			}
		}
		if t.err != nil {
			return 0, false
		}
	}
	if err := it.Error(); err != nil {
		t.err = err
		return 0, false
	}
	for _, st := range chans {
		s.advanceFirst(t, sw, st)
	}
	return removed, more
}

// sweepEntry removes the entry an expiry or tombstone row points to, if it
// is still there and still due, and returns its channel.
func (s *Store) sweepEntry(t *txn, sw *sweep, kind byte, payload []byte) *chanState {
	name, rest, ok := cutStr(payload)
	if !ok || len(rest) < seqLen {
		return nil
	}
	seq, epoch := binary.BigEndian.Uint64(rest), string(rest[seqLen:])
	st, err := s.chans.getByName(name)
	if err != nil {
		s.log.Warn("sweep: skipping a bad expiry row", "err", err)
		return nil
	}
	// A stale row (its entry reset, trimmed or swept away) must not remove
	// another entry. An entry row needs no epoch for that: whatever entry
	// now has the seq goes only if it has expired itself. A tombstone's
	// deadline is not in the entry, so its row carries the epoch.
	if kind == xTomb && st.head.Epoch != epoch || seq < st.head.FirstSeq {
		return nil
	}
	key := entryKey(name, seq)
	v, ok := t.get(key)
	if !ok {
		return nil
	}
	var e syncpoint.Entry
	if err := decodeEntry(v, &e); err != nil {
		s.log.Warn("sweep: removing a corrupt entry", "channel", name, "seq", seq, "err", err)
	} else if kind == xEntry && !e.Expired(sw.now) || kind == xTomb && e.Op != syncpoint.OpDelete {
		return nil
	}
	t.touch(st)
	st.dirty = true // the newest entry may go: the meta must keep LastSeq
	t.del(key)
	if e.Op == syncpoint.OpPut || e.Op == syncpoint.OpDelete {
		kk := keyKey(name, e.Key)
		if kv, ok := t.get(kk); ok {
			if ks, n := binary.Uvarint(kv); n > 0 && ks == seq {
				t.del(kk)
			}
		}
	}
	r := sw.removed[name]
	if r == nil || r.epoch != st.head.Epoch {
		r = &removedSeqs{epoch: st.head.Epoch}
		sw.removed[name] = r
	}
	r.seqs = append(r.seqs, seq)
	return st
}

// advanceFirst moves FirstSeq past every removed seq below the oldest entry
// still in the channel. Seqs that compaction removed are absent too, so
// they do not hold the advance back.
func (s *Store) advanceFirst(t *txn, sw *sweep, st *chanState) {
	h := &st.head
	oldest := h.LastSeq + 1
	it, err := s.db.NewIter(&pebbledb.IterOptions{
		LowerBound: entryKey(st.name, h.FirstSeq),
		UpperBound: entryKey(st.name, h.LastSeq+1),
	})
	if err != nil {
		t.err = err
		return
	}
	for valid := it.First(); valid; valid = it.Next() {
		if o, ok := t.over[string(it.Key())]; ok && o.del {
			continue
		}
		k := it.Key()
		oldest = binary.BigEndian.Uint64(k[len(k)-seqLen:])
		break
	}
	if err := it.Close(); err != nil {
		t.err = err
		return
	}
	r := sw.removed[st.name]
	first := h.FirstSeq
	keep := r.seqs[:0]
	for _, seq := range r.seqs {
		if seq < oldest {
			first = max(first, seq+1)
		} else {
			keep = append(keep, seq)
		}
	}
	r.seqs = keep
	h.FirstSeq = first
}

// ResetChannel implements syncpoint.Store. The channel's key index and
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
	o := &op{exclusive: true, fn: func(t *txn) error {
		st := t.channel(ch)
		if st == nil {
			return nil
		}
		if st.head.Epoch == "" {
			return syncpoint.ErrNotFound
		}
		for _, p := range []byte{pEntry, pKey, pIdem} {
			prefix := chanPrefix(p, st.name)
			t.batch.DeleteRange(prefix, prefixEnd(prefix), nil)
		}
		t.touch(st)
		st.dirty = true
		if t.resets == nil {
			t.resets = make(map[*chanState]bool)
		}
		t.resets[st] = true
		st.head = meta{Epoch: newEpoch(), FirstSeq: 1}
		info = syncpoint.ChannelInfo{Channel: ch, Epoch: s.epoch(st.head.Epoch), FirstSeq: 1}
		return nil
	}}
	if err := s.do(ctx, o); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("reset channel %s: %w", ch, err)
	}
	return info, nil
}
