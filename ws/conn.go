package ws

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
)

// maxServerHeader is the longest header of a frame the server sends: it
// never masks, so two bytes and at most eight of length.
const maxServerHeader = 10

// How long a close may take: the close frame's write, and then the wait for
// the peer to answer and hang up before the socket is dropped.
const (
	closeWriteTimeout = time.Second
	closeLinger       = 2 * time.Second
)

// conn is the server's side of one device WebSocket. gobwas/ws does the
// upgrade and checks headers; the frames go straight to the socket, because
// that is where a session's cost is:
//   - a write is one system call for any number of wire frames, bounded by
//     the socket's deadline, with no hand-off to a timeout goroutine;
//   - reads go through the buffer net/http already had for the request,
//     and a message is read into a slice of exactly its size;
//   - a header that takes a message over the limit fails at once, before
//     its payload, like a TCP length prefix.
type conn struct {
	nc    net.Conn
	br    *wire.SocketReader
	codec wire.Codec
	op    ws.OpCode // of the messages the server sends
	limit int64

	hdr   [ws.MaxHeaderSize]byte // the reader's
	watch wire.DeadlineWatch

	wmu       sync.Mutex
	wdl       wire.WriteDeadline
	closeSent bool
	linger    *time.Timer
}

func newConn(nc net.Conn, br *wire.SocketReader, codec wire.Codec, limit int64) *conn {
	op := ws.OpBinary
	if codec == wire.JSON {
		op = ws.OpText
	}
	return &conn{nc: nc, br: br, codec: codec, op: op, limit: limit}
}

// closedError is a close frame from the peer.
type closedError struct {
	code   ws.StatusCode
	reason string
}

func (e *closedError) Error() string {
	return fmt.Sprintf("the peer closed the WebSocket: %d %s", e.code, e.reason)
}

// Read returns the next frame, answering pings and a close on the way.
// Cancelling ctx ends the connection's reads and writes. Errors: a message
// over the limit is a *syncpoint.Error with CodeTooLarge, and the
// connection can still send the error frame and close; a protocol
// violation fails the connection with 1002; decode errors are the codec's.
func (c *conn) Read(ctx context.Context) (*wire.Frame, error) { return c.read(ctx, false) }

// ReadIdle is Read, but fails with wire.ErrIdle at once when no byte of a
// message has come, nor of a control frame between messages: the session
// may then Park.
func (c *conn) ReadIdle(ctx context.Context) (*wire.Frame, error) { return c.read(ctx, true) }

// Park waits for the next frame with no goroutine (wire.SocketReader.Park).
func (c *conn) Park(ready func()) bool { return c.br.Park(ready) }

// Unpark cancels a Park that has not fired (wire.SocketReader.Unpark).
func (c *conn) Unpark() bool { return c.br.Unpark() }

func (c *conn) read(ctx context.Context, idle bool) (*wire.Frame, error) {
	c.watch.Watch(ctx, c.nc.SetDeadline)
	var (
		msg   []byte
		op    ws.OpCode
		state = ws.StateServerSide
	)
	for {
		if idle && op == 0 {
			c.br.Idle()
		}
		h, err := ws.ReadHeaderBuffer(c.br, c.hdr[:2:len(c.hdr)])
		if errors.Is(err, wire.ErrIdle) {
			return nil, err
		}
		if errors.Is(err, ws.ErrHeaderLengthMSB) {
			return nil, c.tooLarge() // a length of 2^63 bytes or more
		}
		if err != nil {
			return nil, c.readErr(ctx, err)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			c.fail(ws.StatusProtocolError, err.Error())
			return nil, syncpoint.Errorf(syncpoint.CodeInternal, "websocket: %s", err)
		}
		if h.OpCode.IsControl() {
			var buf [ws.MaxControlFramePayloadSize]byte
			p := buf[:h.Length]
			if _, err := io.ReadFull(c.br, p); err != nil {
				return nil, c.readErr(ctx, err)
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				if err := c.writeControl(ws.OpPong, p); err != nil {
					return nil, err
				}
			case ws.OpClose:
				code, reason := ws.ParseCloseFrameData(p)
				c.answerClose(code)
				return nil, &closedError{code: code, reason: reason}
			}
			continue
		}
		if h.Length > c.limit-int64(len(msg)) {
			return nil, c.tooLarge()
		}
		if op == 0 {
			op = h.OpCode
		}
		n := len(msg)
		msg = append(msg, make([]byte, h.Length)...)
		if _, err := io.ReadFull(c.br, msg[n:]); err != nil {
			return nil, c.readErr(ctx, err)
		}
		ws.Cipher(msg[n:], h.Mask, 0)
		if h.Fin {
			break
		}
		state = state.Set(ws.StateFragmented)
	}
	if op == ws.OpText {
		return wire.DecodeJSON(msg)
	}
	return wire.DecodeProto(msg)
}

func (c *conn) tooLarge() error {
	return syncpoint.Errorf(syncpoint.CodeTooLarge, "a frame is over the %d byte limit", c.limit)
}

func (c *conn) readErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	c.wmu.Lock()
	closing := c.closeSent
	c.wmu.Unlock()
	if closing {
		// The peer hung up, or stopped answering, after our close.
		c.drop()
	}
	return syncpoint.Errorf(syncpoint.CodeInternal, "websocket read: %s", err)
}

// WriteFrames sends frames, each its own message, in one write that
// deadline bounds.
func (c *conn) WriteFrames(deadline time.Time, frames ...*wire.Frame) error {
	bp := wire.GetBuffer()
	b := (*bp)[:0]
	var err error
	for _, f := range frames {
		if b, err = c.appendMessage(b, f); err != nil {
			break
		}
	}
	if err == nil {
		err = c.send(deadline, b)
	}
	wire.PutBuffer(bp, b)
	return err
}

// Write sends one frame; ctx bounds it.
func (c *conn) Write(ctx context.Context, f *wire.Frame) error {
	deadline, _ := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetWriteDeadline(time.Unix(1, 0)) })
	err := c.WriteFrames(deadline, f)
	if !stop() {
		c.wmu.Lock()
		c.wdl = wire.WriteDeadline{} // the cancel moved the deadline: set it next time
		c.wmu.Unlock()
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// appendMessage appends f as one unfragmented message: the payload is
// encoded after room for the longest header, and moved back over the room
// the real header does not take.
func (c *conn) appendMessage(b []byte, f *wire.Frame) ([]byte, error) {
	start := len(b)
	b = append(b, make([]byte, maxServerHeader)...)
	b, err := c.codec.Encode(b, f)
	if err != nil {
		return b[:start], err
	}
	n := len(b) - start - maxServerHeader
	hs := putHeader(b[start:], c.op, n)
	copy(b[start+hs:], b[start+maxServerHeader:])
	return b[:len(b)-(maxServerHeader-hs)], nil
}

// putHeader writes a final, unmasked frame header for n payload bytes into
// b and returns its length.
func putHeader(b []byte, op ws.OpCode, n int) int {
	b[0] = 0x80 | byte(op)
	switch {
	case n < 126:
		b[1] = byte(n)
		return 2
	case n <= 0xffff:
		b[1] = 126
		b[2], b[3] = byte(n>>8), byte(n)
		return 4
	default:
		b[1] = 127
		for i := range 8 {
			b[2+i] = byte(uint64(n) >> (56 - 8*i))
		}
		return 10
	}
}

func (c *conn) send(deadline time.Time, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return net.ErrClosed
	}
	c.wdl.Set(deadline, c.nc.SetWriteDeadline)
	_, err := c.nc.Write(b)
	return err
}

func (c *conn) writeControl(op ws.OpCode, p []byte) error {
	var b [maxServerHeader + ws.MaxControlFramePayloadSize]byte
	n := putHeader(b[:], op, len(p))
	n += copy(b[n:], p)
	return c.send(time.Now().Add(closeWriteTimeout), b[:n])
}

// Close sends the close frame with code and reason, cut to what a close
// frame holds. The socket stays open for reading a moment: the peer answers
// and hangs up, and none of its last frames meets a reset, which could
// destroy the close frame before the peer reads it.
func (c *conn) Close(code wire.CloseCode, reason string) error {
	return c.closeWith(ws.StatusCode(code), wsconn.ClipReason(reason))
}

func (c *conn) closeWith(code ws.StatusCode, reason string) error {
	var b [maxServerHeader + ws.MaxControlFramePayloadSize]byte
	body := ws.NewCloseFrameBody(code, reason)
	n := putHeader(b[:], ws.OpClose, len(body))
	n += copy(b[n:], body)
	c.wmu.Lock()
	if c.closeSent {
		c.wmu.Unlock()
		return nil
	}
	c.closeSent = true
	_ = c.nc.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
	_, err := c.nc.Write(b[:n])
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(closeLinger))
	c.linger = time.AfterFunc(closeLinger, func() { _ = c.nc.Close() })
	c.wmu.Unlock()
	if err != nil {
		c.drop()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
	}
	return err
}

// answerClose echoes the peer's close (RFC 6455 §5.5.1), or ends the
// handshake that our close began.
func (c *conn) answerClose(code ws.StatusCode) {
	if code == ws.StatusNoStatusRcvd || code == 0 {
		code = ws.StatusNormalClosure
	}
	_ = c.closeWith(code, "")
	c.drop()
}

// fail closes the connection over a protocol violation.
func (c *conn) fail(code ws.StatusCode, reason string) {
	_ = c.closeWith(code, wsconn.ClipReason(reason))
	c.drop()
}

// drop closes the socket now.
func (c *conn) drop() {
	c.wmu.Lock()
	if c.linger != nil {
		c.linger.Stop()
	}
	c.wmu.Unlock()
	_ = c.nc.Close()
}
