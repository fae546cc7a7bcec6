package pebble

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/syncpoint/syncpoint"
)

// maxPointDeletes is how many entries a trim deletes one by one before it
// writes a range deletion instead.
const maxPointDeletes = 256

// Append implements syncpoint.Store. A request whose Policy.Retention is
// zero keeps its idempotency key (and tombstone) for
// syncpoint.DefaultRetention. A zero CreatedAt is set to the store's clock.
//
// If ctx ends before the committer takes the call, nothing is written and
// ctx's error is returned; after that, Append waits for the outcome.
func (s *Store) Append(ctx context.Context, reqs []syncpoint.AppendRequest) ([]syncpoint.AppendResult, error) {
	for i := range reqs {
		if err := validateRequest(&reqs[i]); err != nil {
			return nil, fmt.Errorf("append: request %d: %w", i, err)
		}
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	defer s.leave()
	o := &op{reqs: reqs, res: make([]syncpoint.AppendResult, len(reqs))}
	// Hashed here rather than in the committer, which every append waits on.
	for i := range reqs {
		r := &reqs[i]
		if r.Entry.IdempotencyKey == "" {
			continue
		}
		if o.hashes == nil {
			o.hashes = make([][]byte, len(reqs))
		}
		if o.hashes[i] = r.ContentHash; len(r.ContentHash) == 0 {
			sum := r.Entry.ContentHash()
			o.hashes[i] = sum[:]
		}
	}
	if err := s.do(ctx, o); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	return o.res, nil
}

// validateRequest checks what the store relies on; the API validates the
// rest (data, conditions, sizes) against the biz.
func validateRequest(r *syncpoint.AppendRequest) error {
	e := &r.Entry
	if err := e.Channel.Validate(); err != nil {
		return err
	}
	if !e.Op.Valid() {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "op %q: want msg, put or delete", e.Op)
	}
	if (e.Op == syncpoint.OpPut || e.Op == syncpoint.OpDelete) && e.Key == "" {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "op %s needs a key", e.Op)
	}
	if r.IfKeySeq != nil && e.Key == "" {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "a conditional append needs a key")
	}
	if len(e.Key) > syncpoint.MaxKeyLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "key: longer than %d bytes", syncpoint.MaxKeyLen)
	}
	if len(e.IdempotencyKey) > syncpoint.MaxIdempotencyKeyLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "idempotency_key: longer than %d bytes", syncpoint.MaxIdempotencyKeyLen)
	}
	if len(r.ContentHash) > syncpoint.MaxContentHashLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "content hash: longer than %d bytes", syncpoint.MaxContentHashLen)
	}
	if r.Policy.MaxBacklog < 0 {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "max_backlog must not be negative")
	}
	return nil
}

// appendTo adds an Append call's requests to the batch, in order.
func (s *Store) appendTo(t *txn, o *op) {
	for i := range o.reqs {
		r := &o.reqs[i]
		st := t.channel(r.Entry.Channel)
		if st == nil {
			return
		}
		var hash []byte
		if o.hashes != nil {
			hash = o.hashes[i]
		}
		o.res[i] = s.appendOne(t, st, r, hash)
		if t.err != nil {
			return
		}
	}
}

func (s *Store) appendOne(t *txn, st *chanState, r *syncpoint.AppendRequest, hash []byte) syncpoint.AppendResult {
	h := &st.head
	e := r.Entry
	if e.CreatedAt.IsZero() {
		e.CreatedAt = t.now
	}
	retention := r.Policy.Retention
	if retention <= 0 {
		retention = syncpoint.DefaultRetention
	}
	if e.IdempotencyKey != "" && h.Epoch != "" {
		if v, ok := t.get(idemKey(st.name, e.IdempotencyKey)); ok {
			seq, deadline, was, err := decodeIdem(v)
			if err == nil && t.now.Before(deadline) {
				if len(was) > 0 && !bytes.Equal(was, hash) {
					s.metrics.Mismatches.Inc()
					return syncpoint.AppendResult{Seq: seq, Epoch: s.epoch(h.Epoch), Err: syncpoint.ErrIdempotencyMismatch}
				}
				s.metrics.Duplicates.Inc()
				return syncpoint.AppendResult{Seq: seq, Epoch: s.epoch(h.Epoch), Duplicate: true}
			}
		}
	}
	if r.IfKeySeq != nil {
		if cur := t.keySeq(st, e.Key); cur != *r.IfKeySeq {
			return syncpoint.AppendResult{Epoch: s.epoch(h.Epoch), Err: syncpoint.ErrKeyChanged, KeySeq: cur}
		}
	}
	t.touch(st)
	if h.Epoch == "" {
		*h = meta{Epoch: newEpoch(), FirstSeq: 1}
		st.dirty = true
		t.setBlind(bizChanKey(st.ch.Biz, st.name), nil)
	}
	h.LastSeq++
	seq := h.LastSeq
	// The batch copies keys and values, so scratch buffers serve them all.
	t.buf = encodeEntry(t.buf[:0], &e)
	t.kbuf = appendEntryKey(t.kbuf[:0], st.name, seq)
	t.setBlind(t.kbuf, t.buf)
	if !e.ExpiresAt.IsZero() {
		t.kbuf = appendEntryExpiryKey(t.kbuf[:0], e.ExpiresAt, xEntry, st.name, seq, "")
		t.setBlind(t.kbuf, nil)
	}
	if ik := e.IdempotencyKey; ik != "" {
		deadline := e.CreatedAt.Add(retention)
		t.set(idemKey(st.name, ik), encodeIdem(seq, deadline, hash))
		t.setBlind(expiryKey(deadline, xIdem, append(appendStr(nil, st.name), ik...)), nil)
	}
	if e.Op == syncpoint.OpPut || e.Op == syncpoint.OpDelete {
		if r.Policy.Compact {
			if prev := t.keySeq(st, e.Key); prev != 0 {
				t.delBlind(entryKey(st.name, prev))
			}
			if e.Op == syncpoint.OpDelete {
				t.kbuf = appendEntryExpiryKey(t.kbuf[:0], e.CreatedAt.Add(retention), xTomb, st.name, seq, h.Epoch)
				t.setBlind(t.kbuf, nil)
			}
		}
		t.set(keyKey(st.name, e.Key), encodeKeyRow(seq, e.Op, e.ExpiresAt))
	}
	if n := uint64(r.Policy.MaxBacklog); n > 0 && h.LastSeq-h.FirstSeq+1 > n {
		first := h.LastSeq - n + 1
		t.deleteEntries(st, h.FirstSeq, first)
		h.FirstSeq = first
		st.dirty = true
	}
	t.entries++
	return syncpoint.AppendResult{Seq: seq, Epoch: s.epoch(h.Epoch)}
}

// keySeq returns the seq of the newest entry for key that is still kept,
// 0 if none. Rows pointing below FirstSeq are stale: trimming leaves them.
func (t *txn) keySeq(st *chanState, key string) uint64 {
	v, ok := t.get(keyKey(st.name, key))
	if !ok {
		return 0
	}
	seq, n := binary.Uvarint(v)
	if n <= 0 || seq < st.head.FirstSeq {
		return 0
	}
	return seq
}

// deleteEntries deletes the entries with from <= seq < to.
func (t *txn) deleteEntries(st *chanState, from, to uint64) {
	if to-from > maxPointDeletes {
		t.batch.DeleteRange(entryKey(st.name, from), entryKey(st.name, to), nil)
		return
	}
	for seq := from; seq < to; seq++ {
		t.delBlind(entryKey(st.name, seq))
	}
}
