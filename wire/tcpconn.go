package wire

import (
	"context"
	"net"
	"sync"
	"time"
)

// TCPConn carries whole frames over a stream connection (TCP or TLS), each
// one a length prefix and its protobuf encoding. The server's TCP transport
// and the Go SDK both use it; Write may be called from several goroutines.
type TCPConn struct {
	nc  net.Conn
	sr  *SocketReader
	r   *Reader
	wmu sync.Mutex

	watch DeadlineWatch
	wdl   WriteDeadline // under wmu
}

// NewTCPConn wraps nc; maxFrame bounds an incoming frame (0 means
// DefaultMaxFrameBytes).
func NewTCPConn(nc net.Conn, maxFrame int) *TCPConn {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameBytes
	}
	sr := NewSocketReader(nc, nil)
	return &TCPConn{nc: nc, sr: sr, r: NewReader(sr, maxFrame)}
}

// Read returns the next frame. Cancelling ctx unblocks it. The errors are
// those of Reader.Next and DecodeProto, or ctx's.
func (c *TCPConn) Read(ctx context.Context) (*Frame, error) {
	c.watch.Watch(ctx, c.nc.SetReadDeadline)
	b, err := c.r.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return DecodeProto(b)
}

// ReadIdle is Read, but fails with ErrIdle at once, reading nothing, when
// no byte of a frame has come: the caller may then Park.
func (c *TCPConn) ReadIdle(ctx context.Context) (*Frame, error) {
	c.sr.Idle()
	return c.Read(ctx)
}

// Park waits for the next frame with no goroutine (SocketReader.Park).
func (c *TCPConn) Park(ready func()) bool { return c.sr.Park(ready) }

// Unpark cancels a Park that has not fired (SocketReader.Unpark).
func (c *TCPConn) Unpark() bool { return c.sr.Unpark() }

// Write sends one frame; ctx's deadline and cancellation bound it.
func (c *TCPConn) Write(ctx context.Context, f *Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	bp := GetBuffer()
	b, err := EncodeFrame(*bp, f)
	defer func() { PutBuffer(bp, b) }()
	if err != nil {
		return err
	}
	d, _ := ctx.Deadline()
	c.wdl.Set(d, c.nc.SetWriteDeadline)
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetWriteDeadline(time.Unix(1, 0)) })
	_, err = c.nc.Write(b)
	if !stop() {
		c.wdl = WriteDeadline{} // the cancel moved the deadline: set it next time
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// WriteFrames sends frames in one write that deadline bounds.
func (c *TCPConn) WriteFrames(deadline time.Time, frames ...*Frame) error {
	bp := GetBuffer()
	b := (*bp)[:0]
	var err error
	for _, f := range frames {
		if b, err = EncodeFrame(b, f); err != nil {
			break
		}
	}
	if err == nil {
		c.wmu.Lock()
		c.wdl.Set(deadline, c.nc.SetWriteDeadline)
		_, err = c.nc.Write(b)
		c.wmu.Unlock()
	}
	PutBuffer(bp, b)
	return err
}

// Close closes the connection. TCP has no close status: the code travels in
// the error frame sent before it.
func (c *TCPConn) Close(CloseCode, string) error { return c.nc.Close() }
