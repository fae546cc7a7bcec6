package hub

import (
	"fmt"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// pushBuilder gathers one merged push across channels.
type pushBuilder struct {
	push     wire.Push
	max      int
	maxBytes int
	bytes    int
	moved    []*chanState // channels whose position this push advances
}

func (p *pushBuilder) room() int {
	if p.bytes >= p.maxBytes {
		return 0
	}
	return p.max - len(p.push.Entries)
}

func (p *pushBuilder) add(cs *chanState, e *syncpoint.Entry) {
	p.push.Entries = append(p.push.Entries, wire.Entry{
		Channel: cs.name, Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data,
		CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, Origin: e.Origin,
	})
	p.bytes += len(e.Data) + len(e.Key) + 64
}

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
	p := &pushBuilder{max: h.cfg.MaxBatch, maxBytes: h.cfg.MaxBatchBytes}
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
		if cs.needActivate {
			cs.needActivate = false
			from := cs.activateFrom
			if cs.epoch == "" && cs.sent == 0 {
				// The channel was empty at the welcome; the user's position names its epoch.
				cs.epoch = from.Epoch
			}
			if from.Epoch == cs.epoch && from.Seq > cs.sent {
				cs.sent = from.Seq
				p.moved1(cs)
			}
			cs.behind = true
		}
		cs.on = cs.active
	}
	s.mu.Unlock()

	for _, e := range live {
		cs := s.chans[e.Channel]
		if cs == nil || !cs.on {
			continue
		}
		if cs.ephemeral {
			if s.wanted(e, now) {
				p.add(cs, e)
			}
			continue
		}
		if err := cs.adopt(e.Epoch); err != nil {
			return nil, err
		}
		switch {
		case e.Seq <= cs.sent:
		case cs.behind || e.Seq > cs.sent+1:
			cs.behind = true
		default:
			cs.sent = e.Seq
			p.moved1(cs)
			if s.wanted(e, now) {
				p.add(cs, e)
			}
		}
	}

	for i := range s.order {
		room := p.room()
		if room <= 0 {
			break
		}
		k := (s.rr + i) % len(s.order)
		cs := s.order[k]
		if !cs.behind || !cs.on {
			continue
		}
		before := cs.sent
		page, err := h.cfg.Store.Read(s.ctx, cs.ch, cs.sent, room, now)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", cs.ch, err)
		}
		if err := cs.adopt(page.Info.Epoch); err != nil {
			return nil, err
		}
		if page.Info.FirstSeq > cs.sent+1 {
			// Trimmed or expired while this device was catching up: reconnect so
			// the welcome reports the gap explicitly.
			return nil, &closeError{code: wire.CloseResync, msg: fmt.Sprintf("entries of %s after seq %d are gone; reconnect", cs.ch, cs.sent)}
		}
		for j := range page.Entries {
			e := &page.Entries[j]
			cs.sent = e.Seq
			if s.wanted(e, now) {
				p.add(cs, e)
			}
		}
		if len(page.Entries) < room {
			// The read reached the channel's durable end, which covers every live
			// entry set aside while behind.
			cs.sent = max(cs.sent, page.Info.LastSeq)
			cs.behind = false
		}
		if cs.sent != before {
			p.moved1(cs)
		}
		s.rr = k + 1
	}

	if len(p.push.Entries) == 0 && len(p.moved) == 0 {
		return nil, nil
	}
	for _, cs := range p.moved {
		p.push.Positions = append(p.push.Positions, wire.Position{Channel: cs.name, Epoch: cs.epoch, Seq: cs.sent})
	}
	return p, nil
}

// wanted applies validity and the entry's conditions to this device.
func (s *session) wanted(e *syncpoint.Entry, now time.Time) bool {
	if e.Expired(now) {
		return false
	}
	return e.Conditions.IsZero() || e.Conditions.Match(s.id.Platform, s.id.AppVersion)
}

// adopt takes the channel's epoch when the session first learns it, and
// fails with the resync code when the history changed under the session.
func (cs *chanState) adopt(epoch string) error {
	switch {
	case epoch == "" || epoch == cs.epoch:
		return nil
	case cs.epoch == "" && cs.sent == 0:
		cs.epoch = epoch
		return nil
	}
	return &closeError{code: wire.CloseResync, msg: fmt.Sprintf("channel %s was reset; reconnect to resync", cs.ch)}
}
