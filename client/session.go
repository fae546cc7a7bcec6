package client

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// outcome is how one session ended.
type outcome struct {
	welcomed  bool            // the server accepted the hello
	err       error           // why it ended, for the log
	fatal     *wire.Error     // the server said stop: Run returns
	permanent *PermanentError // connecting cannot succeed as configured: Run returns
	stopped   bool            // the Handler returned StopAfter
	again     bool            // channels were reconciled: reconnect at once
}

// session is one connection after its welcome.
type session struct {
	c      *Client
	conn   conn
	hb     time.Duration
	epochs map[string]string // each channel's epoch as the server last said

	lastRecv atomic.Int64 // unix nanoseconds, by the client's clock

	pending   map[string]wire.Position // committed, not yet acked
	unacked   int                      // entries applied since the last ack
	ackTimer  *time.Timer
	ackTimerC <-chan time.Time

	ob outboxState
}

// outboxState is what a session knows of the outbox's uploads.
type outboxState struct {
	queued   []*outWrite     // given their rows in an earlier session; sent first
	inflight []*outWrite     // sent, awaiting their results, in send order
	busy     map[recKey]bool // records with a change in a write not answered yet
	paused   bool            // a write failed for now; wait for the timer
	attempt  int             // failures in a row, for the backoff
	timer    *time.Timer
	timerC   <-chan time.Time
}

type readResult struct {
	f   *wire.Frame
	err error
}

// session connects, says hello, applies the welcome and streams until the
// connection ends or ctx is done.
func (c *Client) session(ctx context.Context) outcome {
	token := c.cfg.Token
	if c.cfg.TokenFunc != nil {
		t, err := c.cfg.TokenFunc(ctx)
		if err != nil {
			return outcome{err: fmt.Errorf("get token: %w", err)}
		}
		token = t
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	cn, err := c.dial(dctx)
	if err != nil {
		out := outcome{err: err}
		if reason, ok := permanent(err); ok {
			out.permanent = &PermanentError{Reason: reason, Err: err}
		}
		return out
	}
	hello := &wire.Hello{
		Versions:   []uint32{wire.ProtocolVersion},
		Token:      token,
		DeviceID:   c.cfg.DeviceID,
		Platform:   c.cfg.Platform,
		AppVersion: c.cfg.AppVersion,
		Bizzes:     c.cfg.Bizzes,
	}
	positions, err := loadPositions(dctx, c.db)
	if err != nil {
		cn.abort()
		return outcome{err: err}
	}
	for ch, p := range positions {
		// Positions of bizzes no longer subscribed stay local; the server
		// would ignore them.
		biz, _, _ := strings.Cut(ch, "/")
		if p.Seq > 0 && slices.Contains(c.cfg.Bizzes, biz) {
			hello.Positions = append(hello.Positions, wire.Position{Channel: ch, Epoch: p.Epoch, Seq: p.Seq})
		}
	}
	slices.SortFunc(hello.Positions, func(a, b wire.Position) int { return cmp.Compare(a.Channel, b.Channel) })
	if err := cn.write(dctx, &wire.Frame{Hello: hello}); err != nil {
		cn.abort()
		return outcome{err: fmt.Errorf("send hello: %w", err)}
	}
	var w *wire.Welcome
	for w == nil {
		f, err := cn.read(dctx)
		if err != nil {
			cn.abort()
			if ctx.Err() != nil {
				return outcome{err: ctx.Err()}
			}
			if dctx.Err() != nil {
				return outcome{err: fmt.Errorf("no welcome within %s", c.cfg.DialTimeout)}
			}
			return c.classify(err, false)
		}
		switch {
		case f.Welcome != nil:
			w = f.Welcome
		case f.Ping != nil:
			_ = cn.write(dctx, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
		case f.Error != nil:
			c.log.Warn("client: the server reported an error", "err", f.Error)
		default:
			c.log.Warn("client: unexpected frame before the welcome", "type", f.Type())
		}
	}
	// A reset or gap of a compact biz is reconciled by manifest rather than
	// resynced: the session ends first, and starts over from the new
	// positions.
	again, stopped, err := c.reconcileWelcome(ctx, w, token, cn.close)
	switch {
	case err != nil:
		cn.abort()
		return outcome{welcomed: true, err: err}
	case again || stopped:
		return outcome{welcomed: true, again: again, stopped: stopped}
	}
	s := &session{c: c, conn: cn, hb: w.HeartbeatInterval, epochs: make(map[string]string), pending: make(map[string]wire.Position)}
	if s.hb <= 0 {
		s.hb = DefaultHeartbeatInterval
	}
	if err := c.applyWelcome(ctx, w, s.epochs); err != nil {
		cn.abort()
		return outcome{welcomed: true, err: err}
	}
	c.log.Debug("client: connected", "session", w.SessionID, "channels", len(w.Channels))
	c.setState(Connected)
	if err := c.deliverNotices(ctx); err != nil {
		cn.abort()
		return outcome{welcomed: true, err: err}
	}
	queued, err := c.loadAssigned(ctx)
	if err != nil {
		cn.abort()
		return outcome{welcomed: true, err: err}
	}
	s.ob = outboxState{queued: queued, busy: make(map[recKey]bool)}
	for _, ow := range queued {
		for _, r := range ow.rows {
			s.ob.busy[r.k] = true
		}
	}
	return s.run(ctx)
}

// classify turns the error that ended a connection into what to do next,
// following the close code's action.
func (c *Client) classify(err error, welcomed bool) outcome {
	out := outcome{welcomed: welcomed, err: err}
	var ce *closedError
	if errors.As(err, &ce) {
		code := ce.e.Code
		if code == wire.CloseGoingAway {
			c.failover() // the node is shutting down: try another while it does
		}
		if code.Action() != wire.Stop {
			return out
		}
		// The token expired during a session: a fresh one may be at hand.
		if code == wire.CloseUnauthorized && welcomed && c.cfg.TokenFunc != nil {
			return out
		}
		out.fatal = ce.e
		return out
	}
	if syncpoint.Code(err) == syncpoint.CodeTooLarge {
		// Retrying would get the same frame; the app must raise the limit.
		out.fatal = &wire.Error{Code: wire.CloseTooLarge, Reason: string(syncpoint.CodeTooLarge), Message: syncpoint.Message(err) + "; raise Config.MaxFrameBytes", Fatal: true}
	}
	return out
}

// permanent reports whether a failure to connect would fail the same way on
// every retry, and says why.
func permanent(err error) (string, bool) {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		upgrade   *upgradeError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &authority), errors.As(err, &hostname), errors.As(err, &invalid):
		return "the server's certificate is not trusted", true
	case errors.As(err, &record):
		return "the server does not speak TLS", true
	case errors.As(err, &upgrade) && upgrade.status >= 400 && upgrade.status < 500 &&
		upgrade.status != http.StatusRequestTimeout && upgrade.status != http.StatusTooManyRequests:
		return fmt.Sprintf("the server refused the WebSocket upgrade with HTTP %d", upgrade.status), true
	}
	return "", false
}

func (s *session) touch() { s.lastRecv.Store(s.c.clock.Now().UnixNano()) }

func (s *session) run(ctx context.Context) outcome {
	c := s.c
	s.touch()
	rctx, rcancel := context.WithCancel(context.Background())
	frames := make(chan readResult, 16)
	var wg sync.WaitGroup
	wg.Go(func() { s.readLoop(rctx, frames) })
	defer func() {
		rcancel()
		wg.Wait()
		if s.ackTimer != nil {
			s.ackTimer.Stop()
		}
		if s.ob.timer != nil {
			s.ob.timer.Stop()
		}
	}()

	watch := time.NewTicker(max(s.hb/4, 10*time.Millisecond))
	defer watch.Stop()
	if err := s.flushOutbox(ctx); err != nil {
		return s.fail(ctx, err)
	}
	for {
		select {
		case <-c.kick:
			if err := s.flushOutbox(ctx); err != nil {
				return s.fail(ctx, err)
			}
		case <-s.ob.timerC:
			s.ob.timer, s.ob.timerC, s.ob.paused = nil, nil, false
			if err := s.flushOutbox(ctx); err != nil {
				return s.fail(ctx, err)
			}
		case <-ctx.Done():
			s.goodbye()
			return outcome{welcomed: true, err: ctx.Err()}
		case r := <-frames:
			s.touch()
			if r.err != nil {
				s.conn.abort()
				return c.classify(r.err, true)
			}
			if out, done := s.handle(ctx, r.f); done {
				return out
			}
		case <-s.ackTimerC:
			s.ackTimer, s.ackTimerC = nil, nil
			if err := s.flushAck(context.Background()); err != nil {
				s.conn.abort()
				return outcome{welcomed: true, err: err}
			}
		case <-watch.C:
			silent := c.clock.Now().Sub(time.Unix(0, s.lastRecv.Load()))
			if silent > missedHeartbeats*s.hb {
				s.conn.abort()
				return outcome{welcomed: true, err: fmt.Errorf("nothing from the server for %s (heartbeat %s)", silent.Round(time.Millisecond), s.hb)}
			}
		}
	}
}

// readLoop reads frames for run and answers pings itself, so a Handler
// that takes its time does not make the server think the device is gone.
func (s *session) readLoop(ctx context.Context, out chan<- readResult) {
	for {
		f, err := s.conn.read(ctx)
		if err == nil {
			s.touch()
			if f.Ping != nil {
				wctx, cancel := context.WithTimeout(ctx, s.c.cfg.WriteTimeout)
				err = s.conn.write(wctx, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
				cancel()
				if err == nil {
					continue
				}
				f, err = nil, fmt.Errorf("send pong: %w", err)
			}
		}
		select {
		case out <- readResult{f: f, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// handle acts on one frame; done reports that the session is over.
func (s *session) handle(ctx context.Context, f *wire.Frame) (outcome, bool) {
	c := s.c
	switch {
	case f.Push != nil:
		res, err := c.applyPush(ctx, f.Push, s.epochs)
		if err != nil {
			if ctx.Err() != nil {
				s.goodbye()
				return outcome{welcomed: true, err: ctx.Err()}, true
			}
			c.log.Error("client: apply push; reconnecting to get it again", "err", err)
			s.conn.abort()
			return outcome{welcomed: true, err: err}, true
		}
		for _, p := range res.positions {
			s.pending[p.Channel] = p
		}
		s.unacked += res.applied
		if res.stopped {
			s.goodbye()
			return outcome{welcomed: true, stopped: true}, true
		}
		if len(s.pending) == 0 {
			return outcome{}, false
		}
		if s.unacked >= c.cfg.AckEntries {
			if err := s.flushAck(ctx); err != nil {
				s.conn.abort()
				return outcome{welcomed: true, err: err}, true
			}
		} else if s.ackTimer == nil {
			s.ackTimer = time.NewTimer(c.cfg.AckInterval)
			s.ackTimerC = s.ackTimer.C
		}
	case f.WriteResult != nil:
		if err := s.onWriteResult(ctx, f.WriteResult); err != nil {
			return s.fail(ctx, err), true
		}
	case f.Error != nil:
		c.log.Warn("client: the server reported an error", "err", f.Error)
	case f.Pong != nil:
		// No pings are sent.
	default:
		c.log.Warn("client: unexpected frame", "type", f.Type())
	}
	return outcome{}, false
}

// flushAck sends the committed positions not acked yet.
func (s *session) flushAck(ctx context.Context) error {
	if s.ackTimer != nil {
		s.ackTimer.Stop()
		s.ackTimer, s.ackTimerC = nil, nil
	}
	if len(s.pending) == 0 {
		return nil
	}
	a := &wire.Ack{Positions: make([]wire.Position, 0, len(s.pending))}
	for _, p := range s.pending {
		a.Positions = append(a.Positions, p)
	}
	slices.SortFunc(a.Positions, func(x, y wire.Position) int { return cmp.Compare(x.Channel, y.Channel) })
	wctx, cancel := context.WithTimeout(ctx, s.c.cfg.WriteTimeout)
	defer cancel()
	if err := s.conn.write(wctx, &wire.Frame{Ack: a}); err != nil {
		return fmt.Errorf("send ack: %w", err)
	}
	clear(s.pending)
	s.unacked = 0
	return nil
}

// goodbye acks what is committed and ends the session normally.
func (s *session) goodbye() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.flushAck(ctx); err != nil {
		s.c.log.Debug("client: final ack", "err", err)
	}
	s.conn.close()
}

// fail ends the session after an outbox error: quietly when ctx is done,
// otherwise dropping the connection so the next one starts afresh.
func (s *session) fail(ctx context.Context, err error) outcome {
	if ctx.Err() != nil {
		s.goodbye()
		return outcome{welcomed: true, err: ctx.Err()}
	}
	s.c.log.Error("client: outbox; reconnecting", "err", err)
	s.conn.abort()
	return outcome{welcomed: true, err: err}
}

// flushOutbox sends writes while fewer than Config.WritesInFlight await
// their results: first those given their rows before, then new ones.
func (s *session) flushOutbox(ctx context.Context) error {
	c, ob := s.c, &s.ob
	for !ob.paused && len(ob.inflight) < c.cfg.WritesInFlight {
		var w *outWrite
		if len(ob.queued) > 0 {
			w, ob.queued = ob.queued[0], ob.queued[1:]
		} else {
			var err error
			if w, err = c.nextWrite(ctx, ob.busy); err != nil {
				return err
			}
			if w == nil {
				return nil
			}
			for _, r := range w.rows {
				ob.busy[r.k] = true
			}
		}
		wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
		err := s.conn.write(wctx, &wire.Frame{Write: w.frame})
		cancel()
		var se *syncpoint.Error
		if errors.As(err, &se) {
			// The frame did not encode, so nothing was sent; Put checks
			// for this, so only rows of another SDK version can get here.
			c.log.Error("client: a write does not encode; refusing its changes", "write_id", w.id, "err", err)
			res := &wire.WriteResult{WriteID: w.id, Error: &wire.Error{Code: wire.CloseBadRequest, Reason: string(syncpoint.CodeInvalid), Message: se.Message}}
			if _, err := c.applyResult(ctx, res); err != nil {
				return err
			}
			for _, r := range w.rows {
				delete(ob.busy, r.k)
			}
			if err := c.deliverNotices(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("send write: %w", err)
		}
		if c.hooks.sentWrite != nil {
			c.hooks.sentWrite(w.id)
		}
		ob.inflight = append(ob.inflight, w)
	}
	return nil
}

// onWriteResult applies the result of a write in flight, hands its
// conflicts and errors to the app, and sends what may go next.
func (s *session) onWriteResult(ctx context.Context, res *wire.WriteResult) error {
	c, ob := s.c, &s.ob
	i := slices.IndexFunc(ob.inflight, func(w *outWrite) bool { return w.id == res.WriteID })
	if i < 0 {
		c.log.Debug("client: result of a write not in flight", "write_id", res.WriteID)
		return nil
	}
	if c.hooks.dropResult != nil && c.hooks.dropResult(res.WriteID) {
		return errors.New("test hook: write result dropped")
	}
	out, err := c.applyResult(ctx, res)
	if err != nil {
		return err
	}
	w := ob.inflight[i]
	ob.inflight = slices.Delete(ob.inflight, i, i+1)
	if out.retryWrite {
		ob.queued = append([]*outWrite{w}, ob.queued...)
		s.pauseOutbox()
	} else {
		for _, r := range w.rows {
			delete(ob.busy, r.k)
		}
		if out.retried > 0 {
			s.pauseOutbox()
		} else {
			ob.attempt = 0
		}
	}
	if err := c.deliverNotices(ctx); err != nil {
		return err
	}
	return s.flushOutbox(ctx)
}

// pauseOutbox holds new sends for a backoff after a write the server could
// not take for now.
func (s *session) pauseOutbox() {
	ob := &s.ob
	if ob.paused {
		return
	}
	d := s.c.backoff(ob.attempt)
	ob.attempt++
	ob.paused = true
	ob.timer = time.NewTimer(d)
	ob.timerC = ob.timer.C
}
