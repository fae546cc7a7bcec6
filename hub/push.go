package hub

import (
	"errors"
	"fmt"

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

// Room implements feed.Sink.
func (p *pushBuilder) Room() int {
	if p.bytes >= p.maxBytes {
		return 0
	}
	return p.max - len(p.push.Entries)
}

// Add implements feed.Sink.
func (p *pushBuilder) Add(c *feed.Cursor, e *syncpoint.Entry) {
	p.push.Entries = append(p.push.Entries, wire.Entry{
		Channel: c.Name, Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, Origin: e.Origin,
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

// fill builds the next push: queued live entries first (those that continue
// a channel exactly), then store reads for channels that are behind. It
// returns nil when there is nothing to send. An entry whose seq is past the
// next expected one marks the channel behind instead of being sent, so the
// store read closes the gap; one at or below what was sent is a duplicate.
func (s *session) fill() (*pushBuilder, error) {
	h := s.hub
	p := &pushBuilder{max: h.cfg.MaxBatch, maxBytes: h.cfg.MaxBatchBytes, order: s.order}
	now := h.cfg.Clock.Now()

	s.mu.Lock()
	n := min(len(s.queue), p.max)
	live := make([]*syncpoint.Entry, n)
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

	for _, e := range live {
		cs := s.chans[e.Channel]
		if cs == nil || cs.cur.Off {
			continue
		}
		c := cs.cur
		if c.Ephemeral {
			if s.stream.Wanted(e, now) {
				p.Add(c, e)
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
				p.Add(c, e)
			}
		}
	}

	if err := s.stream.Read(s.ctx, p); err != nil {
		return nil, resyncError(err)
	}

	if len(p.push.Entries) == 0 && len(p.moved) == 0 {
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
