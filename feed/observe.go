package feed

import (
	"context"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Observation is where an operator's stream of one channel starts.
type Observation struct {
	Channel syncpoint.Channel
	// Position is where the observer stands: the stream starts after it,
	// with the status ChannelInfo.Check gives it (reset for another epoch,
	// gap when entries after it are gone). An empty Epoch means the
	// channel's current one. Ignored with FromHead.
	Position syncpoint.Position
	// FromHead starts at the channel's last seq, so that only entries
	// appended from now on come.
	FromHead bool
}

// Observe opens a watching stream of one channel for an operator rather
// than a device: it stores no device and no sync point, is never revoked,
// and passes every entry that has not expired, whatever its conditions,
// since an operator wants to see what was published, not what one device
// would get. Read, Page, Recheck, Wait and Changed work as on a device's
// stream. The biz must exist (CodeNotFound otherwise).
func (f *Feed) Observe(ctx context.Context, o Observation) (*Stream, Status, error) {
	b, ok := f.registry.Get(o.Channel.Biz)
	if !ok {
		return nil, Status{}, syncpoint.Errorf(syncpoint.CodeNotFound, "unknown biz %q", o.Channel.Biz)
	}
	c := &Cursor{Channel: o.Channel, Name: o.Channel.String(), Ephemeral: !b.Persistent}
	s := &Stream{
		feed:     f,
		cursors:  []*Cursor{c},
		dirty:    make([]bool, 1),
		start:    map[syncpoint.Channel]syncpoint.Position{o.Channel: o.Position},
		watch:    true,
		observer: true,
		head:     o.FromHead,
		notify:   make(chan struct{}, 1),
	}
	// Registered before the head is read, so that nothing appended between
	// the two is missed.
	if err := f.register(s); err != nil {
		return nil, Status{}, err
	}
	st, err := s.Start(ctx)
	if err != nil {
		s.Close()
		return nil, Status{}, err
	}
	return s, st[0], nil
}

// wanted is Wanted for this stream: an observer sees every entry that has
// not expired.
func (s *Stream) wanted(e *syncpoint.Entry, now time.Time) bool {
	if s.observer {
		return !e.Expired(now)
	}
	return Wanted(s.id, e, now)
}
