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
	w.ctx = ctx
	w.stop = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.ctx == ctx { // a context replaced since is not this one's to end
			_ = set(time.Unix(1, 0))
		}
	})
}
