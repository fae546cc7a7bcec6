package hub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/wire"
)

// Limits on a hello.
const (
	maxBizzes        = feed.MaxBizzes
	maxPositions     = 4096
	maxControlFrames = 256 // queued pongs, results and errors before the device is a slow consumer
)

var errRevoked = &closeError{code: wire.CloseUnauthorized, msg: "the token was revoked"}

// session is one connected device. Its writer owns the stream, its
// cursors and the fields marked writer-owned; everything else shared is
// under mu.
//
// The session's own goroutine reads; the writer runs only while there is
// something to send. wake starts it when none is running, and it ends once a
// turn finds nothing to do, so an idle session holds one goroutine and no
// writer's stack. One writer runs at a time: mu hands the writer-owned state
// from one to the next.
type session struct {
	version   uint32
	hub       *Hub
	conn      Conn
	peer      Peer
	started   time.Time
	id        syncpoint.Identity
	expires   time.Time
	sessionID string
	stream    *feed.Stream
	order     []*chanState // in the stream's cursor order, fixed after the handshake
	parker    Parker       // conn, when it can park; nil otherwise

	// base is the connection's own context: reads, writes and the store's
	// reads use it, so a kill never cuts a frame in half and the close code
	// still gets out. A kill marks the session dead and wakes the writer.
	base     context.Context
	lastRecv atomic.Int64  // unix nanoseconds of the last frame from the device
	unlisted atomic.Bool   // the cluster was told the session ended
	beatDue  atomic.Bool   // the heartbeat timer fired: the next turn pings
	ended    chan struct{} // closed once the writer has sent the close

	// writer-owned
	ahead    chan filled // the next push, being built
	stopWake []func() bool

	mu          sync.Mutex
	queue       []*liveEntry
	control     []*wire.Frame
	dead        bool
	closeCode   wire.CloseCode
	closeReason string
	writing     bool // a writer goroutine is running, or start has yet to run
	wanted      bool // woken since the running writer last looked
	over        bool // the writer sent the close: no more turns
	beat        *time.Timer
}

// chanOf is the session's state for ch, or nil.
func (s *session) chanOf(ch syncpoint.Channel) *chanState {
	if c := s.stream.Cursor(ch); c != nil {
		return s.order[c.Index]
	}
	return nil
}

// named is the session's state for the channel a device calls name, or nil.
func (s *session) named(name string) *chanState {
	if c := s.stream.CursorNamed(name); c != nil {
		return s.order[c.Index]
	}
	return nil
}

type chanState struct {
	// cur is writer-owned: Seq is the highest seq sent or skipped, Behind
	// means entries after it must be read from the store, and Off is the
	// activation under mu as of this push.
	cur *feed.Cursor

	// under session.mu
	gone         bool // its biz was deleted: nothing more is sent or acked
	active       bool
	needActivate bool
	activateFrom syncpoint.Position
	pushed       syncpoint.Position // what the device has been sent
	acked        uint64
	headSeq      uint64 // the channel's log reaches this far (Nudge): read from the store up to it
	// handover: a multi_device: false channel that a session on another
	// node holds; this one takes it once that node stored its position.
	handover bool
}

// Peer says where a connection comes from, for the session's log lines.
type Peer struct {
	Transport  string // "ws", "wss", "tcp" or "tls"
	RemoteAddr string
}

// Serve runs one device session on conn until the device leaves, the
// session fails, ctx is done or the hub closes. It always closes conn.
//
// When conn is a Parker, Serve may return while the session goes on: its
// reader has parked (see Parker), and the session ends on its own, or when
// the hub closes, which waits for it.
func (h *Hub) Serve(ctx context.Context, conn Conn, peer Peer) error {
	s, err := h.open(ctx, conn, peer)
	if err != nil {
		return err
	}
	h.wg.Add(1)
	h.log.Info("session opened", s.logAttrs(
		slog.String("platform", s.id.Platform), slog.String("app_version", s.id.AppVersion), slog.Int("channels", len(s.order)))...)

	s.start()
	s.read(true)
	return nil
}

// read runs the read loop, from a parked wait when resumed, and then the
// session's end, unless the reader parked again: then its ready does.
func (s *session) read(park bool) {
	if s.readLoop(park) {
		return
	}
	<-s.ended
	h := s.hub
	s.finish()
	s.mu.Lock()
	code, reason := s.closeCode, s.closeReason
	s.mu.Unlock()
	h.log.Info("session closed", s.logAttrs(
		slog.Duration("duration", h.cfg.Clock.Now().Sub(s.started).Round(time.Millisecond)),
		slog.Int("code", int(code)), slog.String("close", code.String()), slog.String("reason", reason))...)
	h.unregister(s)
	h.wg.Done()
}

// resume is a parked reader's ready: the connection has something.
func (s *session) resume() { s.read(false) }

// open reads the hello and makes the session, or refuses it, on a
// goroutine of its own. The handshake runs deep (the token check, the
// store's reads and writes), and a goroutine keeps the stack it grew to
// until collections shrink it; the caller's goroutine lives as long as the
// session, and an idle session should cost little.
func (h *Hub) open(ctx context.Context, conn Conn, peer Peer) (*session, error) {
	type opened struct {
		s   *session
		err error
	}
	done := make(chan opened, 1)
	go func() {
		f, err := h.readHello(ctx, conn)
		var s *session
		if err == nil {
			s, err = h.handshake(ctx, conn, peer, f.Hello)
		}
		if err != nil {
			h.refuse(ctx, conn, peer, f, err)
		}
		done <- opened{s, err}
	}()
	r := <-done
	return r.s, r.err
}

// refuse answers a hello that failed with one fatal error frame and the
// close, and logs it; f is the first frame, if one was read.
func (h *Hub) refuse(ctx context.Context, conn Conn, peer Peer, f *wire.Frame, err error) {
	frame := wire.ErrorFrom(err, true)
	var ce *closeError
	switch {
	case errors.As(err, &ce):
		frame = wire.NewError(ce.code, ce.msg, true)
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		frame = wire.NewError(wire.CloseGoingAway, "the server is shutting down", true)
	}
	code := frame.Code
	attrs := []any{slog.String("transport", peer.Transport), slog.String("remote", peer.RemoteAddr)}
	if f != nil && f.Hello != nil {
		// Not validated yet, so bounded before it goes into a log.
		attrs = append(attrs, slog.String("device", clip(f.Hello.DeviceID)))
	}
	attrs = append(attrs, slog.Int("code", int(code)), slog.String("close", code.String()), slog.String("reason", frame.Message))
	switch {
	case code == wire.CloseInternal:
		h.log.Error("hello failed", append(attrs, slog.Any("err", err))...)
	case code == wire.CloseNormal && errors.Is(err, io.EOF):
		// Closed before a byte came: most often a load balancer's probe.
		h.log.Debug("connection ended before the hello", attrs...)
	case code == wire.CloseNormal:
		h.log.Info("connection ended before the hello", append(attrs, slog.Any("err", errors.Unwrap(err)))...)
	case code == wire.CloseUnauthorized:
		// The verifier's message says why; the token itself is never logged.
		h.log.Info("token refused", attrs...)
	default:
		h.log.Info("hello refused", attrs...)
	}
	h.metrics.disconnects.WithLabelValues(code.String()).Inc()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = conn.Write(wctx, &wire.Frame{Error: frame})
	cancel()
	_ = conn.Close(code, frame.Message)
}

// logAttrs are the fields that name a session in every line about it.
func (s *session) logAttrs(more ...any) []any {
	return append([]any{
		slog.String("session", s.sessionID), slog.String("device", s.id.DeviceID), slog.String("user", s.id.UserID),
		slog.String("transport", s.peer.Transport), slog.String("remote", s.peer.RemoteAddr),
	}, more...)
}

// clip bounds text from a peer before it is logged.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func (h *Hub) handshake(ctx context.Context, conn Conn, peer Peer, hello *wire.Hello) (*session, error) {
	if hello == nil {
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "the first frame must be hello")
	}
	version, ok := wire.Negotiate(hello.Versions)
	if !ok {
		return nil, &closeError{code: wire.CloseUnsupportedVersion, msg: fmt.Sprintf("this server speaks protocol version %d; the client offered %v", wire.ProtocolVersion, hello.Versions)}
	}
	claims, err := h.cfg.Verifier.Verify(hello.Token)
	if err != nil {
		return nil, err
	}
	if len(hello.Bizzes) > maxBizzes || len(hello.Positions) > maxPositions {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "a hello may name at most %d bizzes and %d positions", maxBizzes, maxPositions)
	}
	positions := make(map[syncpoint.Channel]syncpoint.Position, len(hello.Positions))
	for _, p := range hello.Positions {
		ch, err := syncpoint.ParseChannel(p.Channel)
		if err != nil {
			return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "position for %q: %s", p.Channel, syncpoint.Message(err))
		}
		positions[ch] = syncpoint.Position{Epoch: p.Epoch, Seq: p.Seq}
	}
	stream, err := h.feed.Resolve(ctx, feed.Request{
		Claims: claims, DeviceID: hello.DeviceID, Platform: hello.Platform, AppVersion: hello.AppVersion,
		Bizzes: hello.Bizzes, Positions: positions,
	})
	if err != nil {
		return nil, err
	}
	cursors := stream.Cursors()
	parker, _ := conn.(Parker)
	s := &session{
		parker:    parker,
		version:   version,
		hub:       h,
		conn:      conn,
		peer:      peer,
		id:        stream.Identity(),
		expires:   stream.Expires(),
		sessionID: newSessionID(),
		stream:    stream,
		order:     make([]*chanState, len(cursors)),
		ended:     make(chan struct{}),
		// Until start runs the first writer, wakes only mark it wanted.
		writing: true,
	}
	for i, c := range cursors {
		// A multi_device: false channel waits until the hub picks this
		// session as the user's newest.
		s.order[i] = &chanState{cur: c, active: !c.Single}
	}

	now := h.cfg.Clock.Now()
	s.base = ctx
	s.started = now
	s.lastRecv.Store(now.UnixNano())
	h.awaitHandover(ctx, s)
	// Index before reading channel info, so an entry stored in between is
	// queued rather than missed.
	if err := h.register(s); err != nil {
		stream.Close()
		return nil, err
	}
	welcome, err := h.welcome(ctx, s)
	if err != nil {
		h.unregister(s)
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, h.cfg.WriteTimeout)
	err = conn.Write(wctx, &wire.Frame{Welcome: welcome})
	cancel()
	if err != nil {
		h.unregister(s)
		return nil, fmt.Errorf("write welcome: %w", err)
	}
	h.joined(s)
	return s, nil
}

// readHello waits up to HelloTimeout for the first frame. The read is not
// cancelled when the wait ends, since cancelling a WebSocket read closes the
// connection and the error frame and close code would be lost; closing conn
// ends it.
func (h *Hub) readHello(ctx context.Context, conn Conn) (*wire.Frame, error) {
	type result struct {
		f   *wire.Frame
		err error
	}
	got := make(chan result, 1)
	go func() {
		f, err := conn.Read(ctx)
		got <- result{f, err}
	}()
	timer := time.NewTimer(h.cfg.HelloTimeout)
	defer timer.Stop()
	select {
	case r := <-got:
		if r.err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if r.err != nil && syncpoint.Code(r.err) == syncpoint.CodeInternal {
			// Only the network fails here: the peer's doing, not the server's.
			return nil, &closeError{code: wire.CloseNormal, msg: "the connection ended before the hello", cause: r.err}
		}
		return r.f, r.err
	case <-timer.C:
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "no hello within %s", h.cfg.HelloTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *Hub) welcome(ctx context.Context, s *session) (*wire.Welcome, error) {
	statuses, err := s.stream.Start(ctx)
	if err != nil {
		return nil, err
	}
	w := &wire.Welcome{
		Version:           s.version,
		SessionID:         s.sessionID,
		HeartbeatInterval: h.cfg.HeartbeatInterval,
		MaxBatch:          h.cfg.MaxBatch,
		Channels:          make([]wire.ChannelStatus, 0, len(statuses)),
	}
	for _, st := range statuses {
		c := st.Cursor
		if c.Ephemeral {
			w.Channels = append(w.Channels, wire.ChannelStatus{Channel: c.Name, Status: string(syncpoint.StatusOK)})
			continue
		}
		cs := s.order[c.Index]
		s.mu.Lock()
		cs.pushed = syncpoint.Position{Epoch: st.Info.Epoch, Seq: st.From}
		cs.acked = st.From
		s.mu.Unlock()
		if st.Status != syncpoint.StatusOK {
			h.log.Info("channel "+string(st.Status)+" at hello", s.logAttrs(
				slog.String("channel", c.Name), slog.String("device_epoch", st.Position.Epoch), slog.Uint64("device_seq", st.Position.Seq),
				slog.String("epoch", st.Info.Epoch), slog.Uint64("first_seq", st.Info.FirstSeq), slog.Uint64("last_seq", st.Info.LastSeq))...)
		}
		w.Channels = append(w.Channels, wire.ChannelStatus{
			Channel: c.Name, Status: string(st.Status), Epoch: st.Info.Epoch,
			FirstSeq: st.Info.FirstSeq, LastSeq: st.Info.LastSeq, From: st.From,
		})
	}
	return w, nil
}

// finish stores what the session leaves behind: its acks and last-seen time.
func (s *session) finish() {
	h := s.hub
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.WriteTimeout)
	defer cancel()
	h.feed.Flush(ctx)
	d := syncpoint.Device{ID: s.id.DeviceID, UserID: s.id.UserID, Platform: s.id.Platform, AppVersion: s.id.AppVersion, LastSeen: h.cfg.Clock.Now()}
	if err := h.cfg.Store.SaveDevice(ctx, d); err != nil && !errors.Is(err, syncpoint.ErrClosed) {
		h.log.Error("save device on disconnect", s.logAttrs(slog.Any("err", err))...)
	}
}

// kill ends the session with code; the writer sends a final error frame.
func (s *session) kill(code wire.CloseCode, reason string) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead, s.closeCode, s.closeReason = true, code, reason
	s.queue = nil
	s.mu.Unlock()
	if code == wire.CloseSlowConsumer {
		s.hub.log.Warn("slow consumer cut", s.logAttrs(slog.String("reason", reason))...)
	}
	s.wake() // the writer sends the close
	// Stop routing entries here now; kill may run under the hub's read lock.
	go s.hub.unregister(s)
}

// reads reports whether s is alive and still reads ch.
func (s *session) reads(ch syncpoint.Channel) bool {
	cs := s.chanOf(ch)
	if cs == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead && !cs.gone
}

func (s *session) isDead() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead
}

// wake makes sure a writer looks at the session soon: it starts one, or
// tells the running one to take another turn.
func (s *session) wake() {
	s.mu.Lock()
	s.wakeUnlock()
}

// wakeUnlock is wake for a caller that holds mu: it unlocks mu.
func (s *session) wakeUnlock() {
	if s.over || s.writing {
		s.wanted = true // the running writer, or the first, sees it
		s.mu.Unlock()
		return
	}
	s.writing, s.wanted = true, false
	s.mu.Unlock()
	go s.writeTurns()
}

// enqueue queues a live entry; it never blocks.
func (s *session) enqueue(e *liveEntry) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= s.hub.cfg.QueueLimit {
		s.mu.Unlock()
		s.kill(wire.CloseSlowConsumer, fmt.Sprintf("more than %d entries waiting; resume from your sync point", s.hub.cfg.QueueLimit))
		return
	}
	s.queue = append(s.queue, e)
	s.wakeUnlock()
}

// send queues a control frame (pong, write result, error) ahead of pushes.
func (s *session) send(f *wire.Frame) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	if len(s.control) >= maxControlFrames {
		s.mu.Unlock()
		s.kill(wire.CloseSlowConsumer, "too many replies waiting")
		return
	}
	s.control = append(s.control, f)
	s.wakeUnlock()
}

func (s *session) setActive(ch syncpoint.Channel, on bool, from syncpoint.Position) {
	s.mu.Lock()
	if cs := s.chanOf(ch); cs != nil && !cs.gone {
		cs.active = on
		if on {
			cs.needActivate, cs.activateFrom = true, from
		}
	}
	s.wakeUnlock()
}

// readLoop reads frames until the session ends, or the reader parks (it
// reports true): park says whether it may when nothing has come.
func (s *session) readLoop(park bool) bool {
	h := s.hub
	for {
		var f *wire.Frame
		var err error
		if park && s.parker != nil {
			f, err = s.parker.ReadIdle(s.base)
			if errors.Is(err, wire.ErrIdle) {
				if s.park() {
					return true
				}
				park = false
				continue
			}
		} else {
			f, err = s.conn.Read(s.base)
		}
		if err != nil {
			if s.isDead() || s.base.Err() != nil {
				s.kill(wire.CloseGoingAway, "the server is shutting down")
				return false
			}
			if syncpoint.Code(err) == syncpoint.CodeMalformed {
				// The frame boundary held, so answer and carry on.
				s.send(&wire.Frame{Error: wire.ErrorFrom(err, false)})
				continue
			}
			if syncpoint.Code(err) == syncpoint.CodeInternal {
				s.kill(wire.CloseNormal, "connection closed")
			} else {
				s.kill(wire.CloseCodeFor(syncpoint.Code(err)), syncpoint.Message(err))
			}
			return false
		}
		s.lastRecv.Store(h.cfg.Clock.Now().UnixNano())
		// A heartbeat is what a quiet device sends: after one, park.
		park = f.Ping != nil || f.Pong != nil
		switch {
		case f.Ack != nil:
			s.ack(f.Ack)
		case f.Ping != nil:
			s.send(&wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
		case f.Pong != nil:
		case f.Write != nil:
			s.write(f.Write)
		case f.Error != nil:
			if f.Error.Fatal {
				s.kill(wire.CloseNormal, "the device closed the session")
				return false
			}
		default:
			s.send(&wire.Frame{Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeMalformed, "unexpected frame after hello"), false)})
		}
	}
}

// park hands the wait for the next frame to the parker, unless the session
// is ending: the writer's end, which closes the connection, unparks a
// parked reader to see the close, so a reader that parked after it would
// wait for ever. Under mu, as end's Unpark is.
func (s *session) park() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.dead && !s.over && s.parker.Park(s.resume)
}

func (s *session) ack(a *wire.Ack) {
	for _, p := range a.Positions {
		cs := s.named(p.Channel)
		if cs == nil {
			// Not in its usual spelling, if it is a channel at all.
			if ch, err := syncpoint.ParseChannel(p.Channel); err == nil {
				cs = s.chanOf(ch)
			}
		}
		if cs == nil || cs.cur.Ephemeral {
			s.send(&wire.Frame{Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeInvalid, "ack for %q: not a channel of this session", p.Channel), false)})
			continue
		}
		s.mu.Lock()
		pushed := cs.pushed
		if cs.gone || (p.Epoch != "" && p.Epoch != pushed.Epoch) || pushed.Epoch == "" || p.Seq <= cs.acked {
			s.mu.Unlock()
			continue // stale or nothing new
		}
		seq := min(p.Seq, pushed.Seq) // a device cannot ack what it was not sent
		cs.acked = seq
		s.mu.Unlock()
		s.stream.Confirm(cs.cur, syncpoint.Position{Epoch: pushed.Epoch, Seq: seq})
	}
}

func (s *session) write(w *wire.Write) {
	rec := s.hub.cfg.Records
	if rec == nil {
		s.send(&wire.Frame{WriteResult: &wire.WriteResult{WriteID: w.WriteID, Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeForbidden, "this server takes no record uploads"), false)}})
		return
	}
	s.send(&wire.Frame{WriteResult: rec.Write(s.base, s.id, w)})
}

// start arms what wakes the writer besides entries and replies (the
// heartbeat, the token's end, the session's end, a revocation) and runs its
// first turn, which sends what arrived during the handshake.
func (s *session) start() {
	h := s.hub
	interval := h.cfg.HeartbeatInterval
	beat := time.AfterFunc(interval, func() {
		s.beatDue.Store(true)
		s.mu.Lock()
		if !s.over {
			// Under mu, so it is never armed again once end stopped it.
			s.beat.Reset(interval)
		}
		s.wakeUnlock()
	})
	// A kill wakes the writer itself; the connection's context needs a hook
	// only when it can end (a WebSocket's cannot: it outlives its request).
	if s.base.Done() != nil {
		s.stopWake = append(s.stopWake, context.AfterFunc(s.base, s.wake))
	}
	// A session lasts exactly as long as a hello with its token would pass:
	// every turn checks the token's end, and the timer makes sure one runs.
	if !s.expires.IsZero() {
		s.stopWake = append(s.stopWake, time.AfterFunc(s.expires.Sub(h.cfg.Clock.Now()), s.wake).Stop)
	}
	s.stopWake = append(s.stopWake, s.stream.OnRevoke(s.wake))
	s.mu.Lock()
	s.beat = beat
	s.wanted = false // this first turn sees what woke it
	s.mu.Unlock()
	go s.writeTurns()
}

// writeTurns is one writer: it takes turns until one finds nothing to send
// and nothing woke it meanwhile, or the session ends.
func (s *session) writeTurns() {
	for {
		wrote, end := s.turn()
		if end {
			s.end()
			return
		}
		s.mu.Lock()
		if wrote || s.wanted {
			s.wanted = false
			s.mu.Unlock()
			continue
		}
		s.writing = false
		s.mu.Unlock()
		return
	}
}

// turn sends what is ready: replies, the heartbeat, and one push. It says
// whether it wrote, and whether the session is over.
func (s *session) turn() (wrote, end bool) {
	h := s.hub
	if s.isDead() || s.base.Err() != nil {
		return false, true
	}
	now := h.cfg.Clock.Now()
	if !s.expires.IsZero() && !now.Before(s.expires) {
		s.kill(wire.CloseUnauthorized, "the token expired; reconnect with a new one")
		return false, true
	}
	if s.stream.IsRevoked() {
		s.kill(errRevoked.code, errRevoked.msg)
		return false, true
	}
	if s.beatDue.Swap(false) && !s.heartbeat(now) {
		return false, true
	}
	var push *pushBuilder
	var err error
	if s.ahead != nil {
		r := <-s.ahead
		s.ahead = nil
		push, err = r.push, r.err
	} else {
		push, err = s.fill(now)
	}
	if err != nil {
		code := wire.CloseInternal
		var ce *closeError
		if errors.As(err, &ce) {
			code = ce.code
		} else if !s.isDead() && s.base.Err() == nil {
			h.log.Error("read backlog", s.logAttrs(slog.Any("err", err))...)
		}
		msg := syncpoint.Message(err)
		if ce != nil {
			msg = ce.msg
		}
		s.kill(code, msg)
		return false, true
	}
	frames := s.takeControl()
	if push != nil {
		// Record first: a fast device can ack before the write returns.
		s.pushed(push, now)
		frames = append(frames, &wire.Frame{Push: &push.push})
		if push.full() {
			// A backlog: the next push is read and built while this one
			// is written, so a catch-up has two cores.
			ahead := make(chan filled, 1)
			s.ahead = ahead
			go func() {
				p, err := s.fill(h.cfg.Clock.Now())
				ahead <- filled{p, err}
			}()
		}
	}
	if len(frames) == 0 {
		return false, false
	}
	ok := s.writeFrames(frames...)
	if push != nil {
		push.release()
	}
	return true, !ok
}

// end is the last writer's: it sends the close and closes the connection.
func (s *session) end() {
	h := s.hub
	if s.ahead != nil {
		<-s.ahead // it reads the stream, which closes after the session
		s.ahead = nil
	}
	s.mu.Lock()
	if !s.dead {
		s.dead, s.closeCode, s.closeReason = true, wire.CloseGoingAway, "the server is shutting down"
	}
	code, reason := s.closeCode, s.closeReason
	s.over, s.writing = true, false
	s.beat.Stop()
	// A parked reader reads on, to see the close and end the session;
	// Unpark says whether one was parked with its ready not yet started.
	unparked := s.parker != nil && s.parker.Unpark()
	s.mu.Unlock()
	if unparked {
		go s.read(false)
	}
	for _, stop := range s.stopWake {
		stop()
	}
	h.metrics.disconnects.WithLabelValues(code.String()).Inc()
	if code != wire.CloseNormal && s.base.Err() == nil {
		ctx, cancel := context.WithTimeout(s.base, time.Second)
		_ = s.conn.Write(ctx, &wire.Frame{Error: wire.NewError(code, reason, true)})
		cancel()
	}
	_ = s.conn.Close(code, reason)
	close(s.ended)
}

// filled is a push built ahead, or why it could not be.
type filled struct {
	push *pushBuilder
	err  error
}

// heartbeat pings the device and reports false when it has been silent for
// too long.
func (s *session) heartbeat(now time.Time) bool {
	h := s.hub
	if silent := now.Sub(time.Unix(0, s.lastRecv.Load())); silent > missedHeartbeats*h.cfg.HeartbeatInterval {
		s.kill(wire.CloseHeartbeatTimeout, fmt.Sprintf("nothing received for %s", silent.Round(time.Second)))
		return false
	}
	return s.writeFrames(&wire.Frame{Ping: &wire.Ping{Nonce: uint64(now.UnixNano())}})
}

// writeFrames sends frames in order in one write, and kills the session
// when they cannot all go out in time.
func (s *session) writeFrames(frames ...*wire.Frame) bool {
	timeout := s.hub.cfg.WriteTimeout
	err := s.conn.WriteFrames(time.Now().Add(timeout), frames...)
	if err == nil {
		return true
	}
	if s.base.Err() == nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.kill(wire.CloseSlowConsumer, fmt.Sprintf("a frame waited more than %s to be sent", timeout))
		} else {
			s.kill(wire.CloseNormal, "connection closed")
		}
	}
	return false
}

func (s *session) takeControl() []*wire.Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.control) == 0 {
		return nil
	}
	out := s.control
	s.control = nil
	return out
}

// pushed records what the device has now been sent, which bounds its acks.
func (s *session) pushed(p *pushBuilder, now time.Time) {
	h := s.hub
	h.metrics.pushes.Inc()
	h.metrics.pushedEntries.Add(float64(len(p.push.Entries)))
	for i := range p.push.Entries {
		if at := p.push.Entries[i].CreatedAt; !at.IsZero() {
			h.metrics.pushLag.Observe(max(now.Sub(at).Seconds(), 0))
		}
	}
	s.mu.Lock()
	for _, cs := range p.moved {
		cs.pushed = cs.cur.Position()
	}
	s.mu.Unlock()
}

// closeError ends a session with a specific close code.
type closeError struct {
	code  wire.CloseCode
	msg   string
	cause error // for the log, when there is one
}

func (e *closeError) Error() string { return e.msg }
func (e *closeError) Unwrap() error { return e.cause }

func newSessionID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
