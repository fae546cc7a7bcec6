package wire

import (
	"context"
	"sync"
	"time"
)

// DeadlineWatch makes the end of a reader's context unblock its socket,
// registering once per context rather than once per read: a session reads
// with one context from its first frame to its last. The zero value is
// ready.
type DeadlineWatch struct {
	mu   sync.Mutex
	ctx  context.Context
	stop func() bool
}

// Watch hooks ctx to set, the socket's SetReadDeadline or SetDeadline:
// when ctx ends, set is called with a time long past. A context watched
// before stops counting, and the deadline it may have set is cleared.
func (w *DeadlineWatch) Watch(ctx context.Context, set func(time.Time) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if ctx == w.ctx {
		return
	}
	if w.stop != nil {
		w.stop()
		_ = set(time.Time{})
	}
	w.ctx, w.stop = ctx, nil
	if ctx.Done() == nil {
		return // it never ends: nothing to hook, and nothing held
	}
	w.stop = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.ctx == ctx { // a context replaced since is not this one's to end
			_ = set(time.Unix(1, 0))
		}
	})
}

// WriteDeadline sets a socket's write deadline, moving it only when it
// would move by more than an eighth of the time it gave: setting one
// updates a runtime timer, once a write, and a write timeout bounds a
// stalled peer rather than timing each frame. So a write may time out up to
// an eighth of its timeout early. A deadline earlier than the one set, or
// none, is set at once. The caller serializes its calls, as its writes.
type WriteDeadline struct {
	set   time.Time
	slack time.Duration
}

// Set sets d on the socket through set (its SetWriteDeadline) unless the
// deadline in place is at most the slack earlier.
func (w *WriteDeadline) Set(d time.Time, set func(time.Time) error) {
	if !d.IsZero() && !w.set.IsZero() && !d.Before(w.set) && d.Sub(w.set) <= w.slack {
		return
	}
	_ = set(d)
	w.set, w.slack = d, 0
	if !d.IsZero() {
		w.slack = max(time.Until(d)/8, 0)
	}
}
