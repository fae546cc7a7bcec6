package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
)

// maxFrameBytes is the largest frame a bench device accepts; the server
// keeps pushes near 1 MiB, so this leaves room for one large entry.
const maxFrameBytes = 16 << 20

// frameConn is a device connection: whole frames in and out. Write may be
// called concurrently with Read and with itself.
type frameConn interface {
	Read(ctx context.Context) (*wire.Frame, error)
	Write(ctx context.Context, f *wire.Frame) error
	Close(code wire.CloseCode, reason string) error
}

// dial opens device i's connection over the configured transport, to the
// server the placement gives it.
func (r *runner) dial(ctx context.Context, i int) (frameConn, error) {
	if r.t.Transport == TransportTCP {
		nc, err := r.dialContext(ctx, "tcp", r.deviceTCP(i))
		if err != nil {
			return nil, err
		}
		return wire.NewTCPConn(nc, maxFrameBytes), nil
	}
	sub, codec := wire.SubprotocolJSON, wire.JSON
	if r.t.Encoding == EncodingProto {
		sub, codec = wire.SubprotocolProto, wire.Proto
	}
	u := "ws" + strings.TrimPrefix(r.deviceServer(i), "http") + "/v1/connect"
	c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient:      r.dialWS,
		Subprotocols:    []string{sub},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	if c.Subprotocol() != sub {
		c.CloseNow()
		return nil, fmt.Errorf("the server chose subprotocol %q, not %q", c.Subprotocol(), sub)
	}
	return wsconn.New(c, codec, maxFrameBytes), nil
}

// device is one raw protocol client: a connection and the goroutine that
// reads it, answering pings and acking every push.
type device struct {
	r    *runner
	idx  int
	id   string
	user string
	conn frameConn

	// onPush, when set, sees every push before it is acked; at is the
	// time since the run's origin when the frame was read.
	onPush func(d *device, p *wire.Push, at time.Duration)
	// results, when set, receives write results.
	results chan *wire.WriteResult

	closing atomic.Bool // we are closing it: a failure now is not an error
	failed  atomic.Bool // the connection failed and was counted
	done    chan struct{}

	acks acker
}

// acker holds a device's acks back when Target.AckInterval is set.
type acker struct {
	mu      sync.Mutex
	pending []wire.Position // the latest position of each channel not acked yet
	last    time.Time       // when the last ack was sent
	timer   *time.Timer     // armed while pending waits for its turn
}

// helloFor builds a device's hello.
func helloFor(token, deviceID string, bizzes []string, positions []wire.Position) *wire.Hello {
	return &wire.Hello{
		Versions:   []uint32{wire.ProtocolVersion},
		Token:      token,
		DeviceID:   deviceID,
		Platform:   "bench",
		AppVersion: "1.0.0",
		Bizzes:     bizzes,
		Positions:  positions,
	}
}

// handshake sends the hello and waits for the welcome, answering pings.
func (d *device) handshake(ctx context.Context, h *wire.Hello) (*wire.Welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, d.r.t.Timeout)
	defer cancel()
	if err := d.conn.Write(ctx, &wire.Frame{Hello: h}); err != nil {
		return nil, fmt.Errorf("send hello: %w", err)
	}
	for {
		f, err := d.conn.Read(ctx)
		if err != nil {
			return nil, fmt.Errorf("wait for welcome: %w", err)
		}
		switch {
		case f.Welcome != nil:
			return f.Welcome, nil
		case f.Error != nil:
			return nil, fmt.Errorf("hello refused: %w", f.Error)
		case f.Ping != nil:
			if err := d.conn.Write(ctx, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}}); err != nil {
				return nil, fmt.Errorf("send pong: %w", err)
			}
		default:
			return nil, fmt.Errorf("got %s before the welcome", f.Type())
		}
	}
}

// start runs the read loop until the connection ends.
func (d *device) start(ctx context.Context) {
	d.done = make(chan struct{})
	go d.readLoop(ctx)
}

func (d *device) readLoop(ctx context.Context) {
	defer close(d.done)
	for {
		f, err := d.conn.Read(ctx)
		if err != nil {
			d.fail(ctx, fmt.Errorf("device %s: connection ended: %w", d.id, err))
			return
		}
		at := d.r.now()
		switch {
		case f.Push != nil:
			if d.onPush != nil {
				d.onPush(d, f.Push, at)
			}
			if len(f.Push.Positions) > 0 {
				d.ack(ctx, f.Push.Positions)
			}
		case f.Ping != nil:
			d.send(ctx, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
		case f.Pong != nil:
		case f.WriteResult != nil && d.results != nil:
			select {
			case d.results <- f.WriteResult:
			default:
				d.r.errs.add(errProtocol, 1, fmt.Errorf("device %s: a write result nobody waits for (%s)", d.id, f.WriteResult.WriteID))
			}
		case f.Error != nil && f.Error.Fatal:
			d.fail(ctx, fmt.Errorf("device %s: closed by the server: %w", d.id, f.Error))
			d.conn.Close(f.Error.Code, "")
			return
		case f.Error != nil:
			d.r.errs.add(errProtocol, 1, fmt.Errorf("device %s: server error: %w", d.id, f.Error))
		default:
			d.r.errs.add(errProtocol, 1, fmt.Errorf("device %s: unexpected %s frame", d.id, f.Type()))
		}
	}
}

// ack acks positions: at once, or with an interval, in the first ack the
// interval allows, which covers every position received until then.
func (d *device) ack(ctx context.Context, ps []wire.Position) {
	every := d.r.t.AckInterval
	if every <= 0 {
		d.send(ctx, &wire.Frame{Ack: &wire.Ack{Positions: ps}})
		return
	}
	a := &d.acks
	a.mu.Lock()
	a.pending = mergePositions(a.pending, ps)
	if a.timer != nil || d.closing.Load() {
		a.mu.Unlock()
		return
	}
	now := d.r.clock.Now()
	if wait := a.last.Add(every).Sub(now); wait > 0 {
		a.timer = time.AfterFunc(wait, func() { d.flushAcks(ctx) })
		a.mu.Unlock()
		return
	}
	ps, a.pending, a.last = a.pending, nil, now
	a.mu.Unlock()
	d.send(ctx, &wire.Frame{Ack: &wire.Ack{Positions: ps}})
}

// flushAcks sends the acks held back, from the timer.
func (d *device) flushAcks(ctx context.Context) {
	a := &d.acks
	a.mu.Lock()
	ps := a.pending
	a.pending, a.timer, a.last = nil, nil, d.r.clock.Now()
	a.mu.Unlock()
	if len(ps) > 0 && !d.closing.Load() {
		d.send(ctx, &wire.Frame{Ack: &wire.Ack{Positions: ps}})
	}
}

// mergePositions adds ps to held, each replacing the position of its
// channel: pushes come in order, so the newest is the highest.
func mergePositions(held, ps []wire.Position) []wire.Position {
next:
	for _, p := range ps {
		for i := range held {
			if held[i].Channel == p.Channel {
				held[i] = p
				continue next
			}
		}
		held = append(held, p)
	}
	return held
}

// send writes a frame from the read loop or a scenario.
func (d *device) send(ctx context.Context, f *wire.Frame) error {
	wctx, cancel := context.WithTimeout(ctx, d.r.t.Timeout)
	err := d.conn.Write(wctx, f)
	cancel()
	if err != nil {
		d.fail(ctx, fmt.Errorf("device %s: send %s: %w", d.id, f.Type(), err))
	}
	return err
}

// fail counts a connection failure once, unless we are the ones closing.
func (d *device) fail(ctx context.Context, err error) {
	if d.closing.Load() || ctx.Err() != nil {
		return
	}
	if d.failed.CompareAndSwap(false, true) {
		d.r.downs.Add(1)
		d.r.errs.add(errClosed, 1, err)
	}
}

// alive reports whether the connection is still up as far as we know.
func (d *device) alive() bool { return !d.failed.Load() }

// close ends the connection normally and waits for the read loop.
func (d *device) close() {
	d.closing.Store(true)
	d.acks.mu.Lock()
	if d.acks.timer != nil {
		d.acks.timer.Stop()
	}
	d.acks.mu.Unlock()
	_ = d.conn.Close(wire.CloseNormal, "bench done")
	if d.done != nil {
		<-d.done
	}
}

// devSpec says who device i is and what it subscribes to.
type devSpec struct {
	user      string
	id        string
	bizzes    []string
	positions []wire.Position
}

// connectAll connects n devices with at most ConnectConcurrency handshakes
// at once, calling setup on each before its read loop starts. Failed
// devices are counted as connect errors and left nil. took records each
// connect's latency (dial to welcome) when set.
func (r *runner) connectAll(ctx context.Context, n int, spec func(i int) devSpec, setup func(d *device, w *wire.Welcome) error, took *recorder, progress *atomic.Int64) []*device {
	devs := make([]*device, n)
	sem := make(chan struct{}, r.t.ConnectConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := r.connect(ctx, i, spec(i), setup, took)
			if err != nil {
				if ctx.Err() == nil {
					r.errs.add(errConnect, 1, err)
				}
				return
			}
			devs[i] = d
			if progress != nil {
				progress.Add(1)
			}
		})
	}
	wg.Wait()
	return devs
}

// connect dials, says hello and starts the read loop of one device.
func (r *runner) connect(ctx context.Context, i int, s devSpec, setup func(*device, *wire.Welcome) error, took *recorder) (*device, error) {
	t0 := r.clock.Now()
	tok, err := r.token(s.user)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, r.t.Timeout)
	conn, err := r.dial(dctx, i)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("device %s: dial: %w", s.id, err)
	}
	d := &device{r: r, idx: i, id: s.id, user: s.user, conn: conn}
	w, err := d.handshake(ctx, helloFor(tok, s.id, s.bizzes, s.positions))
	if err == nil && setup != nil {
		err = setup(d, w)
	}
	if err != nil {
		conn.Close(wire.CloseNormal, "")
		return nil, fmt.Errorf("device %s: %w", s.id, err)
	}
	if took != nil {
		took.record(i, r.clock.Now().Sub(t0))
	}
	d.start(ctx)
	return d, nil
}

// closeAll closes the devices in parallel and waits for their loops.
func closeAll(devs []*device) {
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, d := range devs {
		if d == nil {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d.close()
		})
	}
	wg.Wait()
}

// connected counts the devices that connected.
func connected(devs []*device) int {
	n := 0
	for _, d := range devs {
		if d != nil {
			n++
		}
	}
	return n
}

// errWelcome is a welcome that does not match what the device asked for.
var errWelcome = errors.New("unexpected welcome")

// expectChannel checks that a welcome has exactly channel ch with status ok.
func expectChannel(w *wire.Welcome, ch string) error {
	if len(w.Channels) != 1 || w.Channels[0].Channel != ch || w.Channels[0].Status != wire.StatusOK {
		return fmt.Errorf("%w: %+v; want channel %s ok", errWelcome, w.Channels, ch)
	}
	return nil
}
