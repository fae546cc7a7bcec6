package hub

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/wire"
)

// pushBuilder gathers one merged push across channels. It is the feed.Sink
// of the session's store reads.
type pushBuilder struct {
	push     wire.Push
	max      int
	maxBytes int
	bytes    int
	order    []*chanState // the session's, by cursor index
	moved    []*chanState // channels whose position this push advances
}

var builders = sync.Pool{New: func() any { return new(pushBuilder) }}

// newPushBuilder takes a builder from the pool: a catch-up builds one push
// after another of up to max entries, and would otherwise grow fresh
// slices for each.
func newPushBuilder(max, maxBytes int, order []*chanState) *pushBuilder {
	p := builders.Get().(*pushBuilder)
	p.max, p.maxBytes, p.order = max, maxBytes, order
	return p
}

// release returns p to the pool once its push is written. The entries are
// cleared, so the pool holds no entry data.
func (p *pushBuilder) release() {
	if cap(p.push.Entries) > 4096 {
		return
	}
	clear(p.push.Entries[:cap(p.push.Entries)])
	clear(p.push.Positions[:cap(p.push.Positions)])
	clear(p.moved[:cap(p.moved)])
	*p = pushBuilder{push: wire.Push{Entries: p.push.Entries[:0], Positions: p.push.Positions[:0]}, moved: p.moved[:0]}
	builders.Put(p)
}

// full reports whether the push stopped at its size limits: the channels
// have more to read.
func (p *pushBuilder) full() bool { return p.Room() == 0 }

// Room implements feed.Sink.
func (p *pushBuilder) Room() int {
	if p.bytes >= p.maxBytes {
		return 0
	}
	return p.max - len(p.push.Entries)
}

// Add implements feed.Sink.
func (p *pushBuilder) Add(c *feed.Cursor, e *syncpoint.Entry) { p.add(c, e, nil) }

// add appends e as sent on c; cache, when set, is shared with every other
// session that sends e on c.
func (p *pushBuilder) add(c *feed.Cursor, e *syncpoint.Entry, cache *wire.EntryCache) {
	p.push.Entries = append(p.push.Entries, wire.Entry{
		Channel: c.Name, Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, Origin: e.Origin, Cache: cache,
	})
	p.bytes += len(e.Data) + len(e.Key) + 64
}

// Moved implements feed.Sink.
func (p *pushBuilder) Moved(c *feed.Cursor) { p.moved1(p.order[c.Index]) }

func (p *pushBuilder) moved1(cs *chanState) {
	for _, m := range p.moved {
		if m == cs {
			return
		}
	}
	p.moved = append(p.moved, cs)
}

// fill builds the next push as of now: queued live entries first (those that continue
// a channel exactly), then store reads for channels that are behind. It
// returns nil when there is nothing to send. An entry whose seq is past the
// next expected one marks the channel behind instead of being sent, so the
// store read closes the gap; one at or below what was sent is a duplicate.
func (s *session) fill(now time.Time) (*pushBuilder, error) {
	h := s.hub
	p := newPushBuilder(h.cfg.MaxBatch, h.cfg.MaxBatchBytes, s.order)

	s.mu.Lock()
	n := min(len(s.queue), p.max)
	live := make([]*liveEntry, n)
	copy(live, s.queue)
	if n == len(s.queue) {
		s.queue = s.queue[:0]
		if cap(s.queue) > 256 {
			s.queue = nil // an idle session keeps no big buffer
		}
	} else {
		s.queue = s.queue[n:]
	}
	for _, cs := range s.order {
		c := cs.cur
		if cs.needActivate {
			cs.needActivate = false
			from := cs.activateFrom
			if c.Epoch == "" && c.Seq == 0 {
				// The channel was empty at the welcome; the user's position names its epoch.
				c.Epoch = from.Epoch
			}
			if from.Epoch == c.Epoch && from.Seq > c.Seq {
				c.Seq = from.Seq
				p.moved1(cs)
			}
			c.Behind = true
		}
		if cs.headSeq > c.Seq {
			c.Behind = true // another node stored entries this one was not told of
		}
		cs.headSeq = 0
		c.Off = !cs.active
	}
	s.mu.Unlock()

	for _, le := range live {
		e := le.Entry
		cs := s.chanOf(e.Channel)
		if cs == nil || cs.cur.Off {
			continue
		}
		c := cs.cur
		if c.Ephemeral {
			if s.stream.Wanted(e, now) {
				p.add(c, e, &le.cache)
			}
			continue
		}
		if err := c.Adopt(e.Epoch); err != nil {
			return nil, resyncError(err)
		}
		switch {
		case e.Seq <= c.Seq:
		case c.Behind || e.Seq > c.Seq+1:
			c.Behind = true
		default:
			c.Seq = e.Seq
			p.moved1(cs)
			if s.stream.Wanted(e, now) {
				p.add(c, e, &le.cache)
			}
		}
	}

	if err := s.stream.Read(s.base, p); err != nil {
		return nil, resyncError(err)
	}

	if len(p.push.Entries) == 0 && len(p.moved) == 0 {
		p.release()
		return nil, nil
	}
	for _, cs := range p.moved {
		p.push.Positions = append(p.push.Positions, wire.Position{Channel: cs.cur.Name, Epoch: cs.cur.Epoch, Seq: cs.cur.Seq})
	}
	return p, nil
}

// resyncError closes the session with the resync code when a channel's
// history cannot continue (reset, or trimmed while the device caught up),
// so that the welcome on reconnect reports it explicitly.
func resyncError(err error) error {
	var ce *feed.ChannelError
	if !errors.As(err, &ce) {
		return err
	}
	if ce.Status == syncpoint.StatusGap {
		return &closeError{code: wire.CloseResync, msg: fmt.Sprintf("%s; reconnect", ce)}
	}
	return &closeError{code: wire.CloseResync, msg: fmt.Sprintf("%s; reconnect to resync", ce)}
}
