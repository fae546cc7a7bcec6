package pebble

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// chanView is what a read starts from: the channel's durable state, taken
// before any data is read, so every entry up to LastSeq is visible.
type chanView struct {
	st  *chanState
	d   meta
	gen uint64
	// wake is closed on the next sync, for reads that must wait.
	wake <-chan struct{}
}

// begin returns the durable view of ch, waiting out a reset in flight
// (which reuses seqs, so nothing may be read across it).
func (s *Store) begin(ctx context.Context, ch syncpoint.Channel) (chanView, error) {
	for {
		st, err := s.chans.lookup(ch)
		if err != nil {
			return chanView{}, err
		}
		st.mu.Lock()
		synced, wake := s.syncState()
		if st.evicted {
			st.mu.Unlock()
			continue
		}
		if st.resetTxn > synced {
			st.mu.Unlock()
			if err := s.waitChange(ctx, wake); err != nil {
				return chanView{}, err
			}
			continue
		}
		v := chanView{st: st, d: st.durable, gen: st.resetGen, wake: wake}
		st.mu.Unlock()
		return v, nil
	}
}

// finish is called after the data was read. It returns the FirstSeq to
// report: deletions applied but not yet synced already show in the data,
// so it takes them into account. ok is false if a reset or an eviction
// raced the read, which must then start again.
func (s *Store) finish(v chanView) (first uint64, ok bool) {
	st := v.st
	st.mu.Lock()
	first, gen, evicted := st.pendingFirst, st.resetGen, st.evicted
	st.mu.Unlock()
	if gen != v.gen || evicted {
		return 0, false
	}
	first = max(first, v.d.FirstSeq)
	return min(first, v.d.LastSeq+1), true
}

func (s *Store) info(v chanView, first uint64) syncpoint.ChannelInfo {
	return syncpoint.ChannelInfo{Channel: v.st.ch, Epoch: s.epoch(v.d.Epoch), FirstSeq: first, LastSeq: v.d.LastSeq}
}

// Read implements syncpoint.Store. A limit of 0 or less means
// DefaultReadLimit; limits above MaxReadLimit are capped.
func (s *Store) Read(ctx context.Context, ch syncpoint.Channel, after uint64, limit int, now time.Time) (syncpoint.Page, error) {
	return s.ReadInto(ctx, ch, after, limit, now, nil)
}

// ReadInto implements syncpoint.PageReader: Read, into buf when it has room.
func (s *Store) ReadInto(ctx context.Context, ch syncpoint.Channel, after uint64, limit int, now time.Time, buf []syncpoint.Entry) (syncpoint.Page, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Page{}, fmt.Errorf("read: %w", err)
	}
	if limit <= 0 {
		limit = DefaultReadLimit
	}
	limit = min(limit, MaxReadLimit)
	if err := s.start(ctx); err != nil {
		return syncpoint.Page{}, fmt.Errorf("read: %w", err)
	}
	defer s.leave()
	for {
		p, ok, err := s.readOnce(ctx, ch, after, limit, now, buf)
		if err != nil {
			return syncpoint.Page{}, fmt.Errorf("read %s: %w", ch, err)
		}
		if ok {
			return p, nil
		}
	}
}

// maxPagePrealloc bounds the room a read makes for its page ahead: a
// caller's limit can be far above what the channel holds unexpired.
const maxPagePrealloc = 1024

func (s *Store) readOnce(ctx context.Context, ch syncpoint.Channel, after uint64, limit int, now time.Time, buf []syncpoint.Entry) (syncpoint.Page, bool, error) {
	v, err := s.begin(ctx, ch)
	if err != nil {
		return syncpoint.Page{}, false, err
	}
	if v.d.Epoch == "" {
		return syncpoint.Page{Info: syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}}, true, nil
	}
	if after >= v.d.LastSeq {
		first, ok := s.finish(v)
		return syncpoint.Page{Info: s.info(v, first)}, ok, nil
	}
	it, err := s.db.NewIterWithContext(ctx, &pebbledb.IterOptions{
		LowerBound: entryKey(v.st.name, after+1),
		UpperBound: entryKey(v.st.name, v.d.LastSeq+1),
	})
	if err != nil {
		return syncpoint.Page{}, false, err
	}
	defer it.Close()
	first, ok := s.finish(v)
	if !ok {
		return syncpoint.Page{}, false, nil
	}
	p := syncpoint.Page{Info: s.info(v, first)}
	epoch := p.Info.Epoch
	seekTo := max(after+1, first)
	if seekTo > v.d.LastSeq {
		return p, true, nil
	}
	// Sized once: an Entry is a few hundred bytes, and a catch-up reads page
	// after page, which growing from empty would copy twice over.
	if want := int(min(uint64(limit), v.d.LastSeq-seekTo+1, maxPagePrealloc)); cap(buf) >= want {
		p.Entries = buf[:0]
	} else {
		p.Entries = make([]syncpoint.Entry, 0, want)
	}
	var data arena
	n := 0
	for valid := it.SeekGE(entryKey(v.st.name, seekTo)); valid; valid = it.Next() {
		// Check ctx now and then: a page of expired entries can be long.
		if n++; n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return syncpoint.Page{}, false, err
			}
		}
		k := it.Key()
		e := syncpoint.Entry{Channel: ch, Epoch: epoch, Seq: binary.BigEndian.Uint64(k[len(k)-seqLen:])}
		val, err := it.ValueAndErr()
		if err != nil {
			return syncpoint.Page{}, false, err
		}
		if err := decodeEntryIn(val, &e, &data); err != nil {
			return syncpoint.Page{}, false, fmt.Errorf("entry %d: %w", e.Seq, err)
		}
		if e.Expired(now) {
			continue
		}
		p.Entries = append(p.Entries, e)
		if len(p.Entries) >= limit {
			break
		}
	}
	if err := it.Error(); err != nil {
		return syncpoint.Page{}, false, err
	}
	return p, true, nil
}

// Channel implements syncpoint.Store.
func (s *Store) Channel(ctx context.Context, ch syncpoint.Channel) (syncpoint.ChannelInfo, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("channel: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.ChannelInfo{}, fmt.Errorf("channel: %w", err)
	}
	defer s.leave()
	for {
		v, err := s.begin(ctx, ch)
		if err != nil {
			return syncpoint.ChannelInfo{}, fmt.Errorf("channel %s: %w", ch, err)
		}
		if v.d.Epoch == "" {
			return syncpoint.ChannelInfo{}, fmt.Errorf("channel %s: %w", ch, syncpoint.ErrNotFound)
		}
		if first, ok := s.finish(v); ok {
			return s.info(v, first), nil
		}
	}
}

// Heads implements syncpoint.HeadReader: each channel as Channel reads
// it, from memory where the channel is cached.
func (s *Store) Heads(ctx context.Context, chans []syncpoint.Channel) ([]syncpoint.ChannelInfo, error) {
	for _, ch := range chans {
		if err := ch.Validate(); err != nil {
			return nil, fmt.Errorf("heads: %w", err)
		}
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("heads: %w", err)
	}
	defer s.leave()
	out := make([]syncpoint.ChannelInfo, len(chans))
	for i, ch := range chans {
		for {
			v, err := s.begin(ctx, ch)
			if err != nil {
				return nil, fmt.Errorf("heads: channel %s: %w", ch, err)
			}
			if v.d.Epoch == "" {
				out[i] = syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}
				break
			}
			if first, ok := s.finish(v); ok {
				out[i] = s.info(v, first)
				break
			}
		}
	}
	return out, nil
}

// Entry implements syncpoint.Store. An entry that expired but was not yet
// swept is still returned.
func (s *Store) Entry(ctx context.Context, ch syncpoint.Channel, seq uint64) (syncpoint.Entry, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("entry: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("entry: %w", err)
	}
	defer s.leave()
	for {
		v, err := s.begin(ctx, ch)
		if err != nil {
			return syncpoint.Entry{}, fmt.Errorf("entry %s/%d: %w", ch, seq, err)
		}
		if seq == 0 || seq > v.d.LastSeq {
			return syncpoint.Entry{}, fmt.Errorf("entry %s/%d: %w", ch, seq, syncpoint.ErrNotFound)
		}
		val, found, err := s.get(entryKey(v.st.name, seq))
		if err != nil {
			return syncpoint.Entry{}, fmt.Errorf("entry %s/%d: %w", ch, seq, err)
		}
		first, ok := s.finish(v)
		if !ok {
			continue
		}
		if !found || seq < first {
			return syncpoint.Entry{}, fmt.Errorf("entry %s/%d: %w", ch, seq, syncpoint.ErrNotFound)
		}
		e := syncpoint.Entry{Channel: ch, Epoch: s.epoch(v.d.Epoch), Seq: seq}
		if err := decodeEntry(val, &e); err != nil {
			return syncpoint.Entry{}, fmt.Errorf("entry %s/%d: %w", ch, seq, err)
		}
		return e, nil
	}
}

// KeyEntry implements syncpoint.Store. If the key's newest entry is still
// waiting for its fsync, KeyEntry waits for it.
func (s *Store) KeyEntry(ctx context.Context, ch syncpoint.Channel, key string) (syncpoint.Entry, error) {
	if err := ch.Validate(); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("key entry: %w", err)
	}
	if err := s.start(ctx); err != nil {
		return syncpoint.Entry{}, fmt.Errorf("key entry: %w", err)
	}
	defer s.leave()
	for {
		e, ok, err := s.keyEntryOnce(ctx, ch, key)
		if err != nil {
			return syncpoint.Entry{}, fmt.Errorf("key entry %s %q: %w", ch, key, err)
		}
		if ok {
			return e, nil
		}
	}
}

func (s *Store) keyEntryOnce(ctx context.Context, ch syncpoint.Channel, key string) (syncpoint.Entry, bool, error) {
	v, err := s.begin(ctx, ch)
	if err != nil {
		return syncpoint.Entry{}, false, err
	}
	if v.d.Epoch == "" {
		return syncpoint.Entry{}, false, syncpoint.ErrNotFound
	}
	kv, found, err := s.get(keyKey(v.st.name, key))
	if err != nil {
		return syncpoint.Entry{}, false, err
	}
	var seq uint64
	if found {
		var n int
		if seq, n = binary.Uvarint(kv); n <= 0 {
			return syncpoint.Entry{}, false, errCorrupt
		}
		if seq > v.d.LastSeq {
			// The newest entry for the key is applied but not yet synced.
			return syncpoint.Entry{}, false, s.waitChange(ctx, v.wake)
		}
	}
	var val []byte
	if found {
		if val, found, err = s.get(entryKey(v.st.name, seq)); err != nil {
			return syncpoint.Entry{}, false, err
		}
	}
	first, ok := s.finish(v)
	if !ok {
		return syncpoint.Entry{}, false, nil
	}
	if !found || seq < first {
		return syncpoint.Entry{}, false, syncpoint.ErrNotFound
	}
	e := syncpoint.Entry{Channel: ch, Epoch: s.epoch(v.d.Epoch), Seq: seq}
	if err := decodeEntry(val, &e); err != nil {
		return syncpoint.Entry{}, false, fmt.Errorf("entry %d: %w", seq, err)
	}
	return e, true, nil
}
