// Package tcp is the raw TCP transport (TLS when configured): each frame is
// a 4-byte big-endian length and a protobuf-encoded wire.Frame.
package tcp

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"

	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

// Server accepts device connections on a listener.
type Server struct {
	Hub    *hub.Hub
	Logger *slog.Logger
	// TLS, when set, wraps every accepted connection.
	TLS *tls.Config
	// MaxFrameBytes bounds one incoming frame; 0 means wire.DefaultMaxFrameBytes.
	MaxFrameBytes int

	wg sync.WaitGroup
}

// Serve accepts connections until ctx is done or ln fails, then waits for
// the sessions it started to end (the hub closes them).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			// Out of file descriptors and the like: back off rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if s.Logger != nil {
				s.Logger.Warn("tcp accept", "err", err, "retry_in", delay)
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetKeepAlive(true)
		}
		if s.TLS != nil {
			nc = tls.Server(nc, s.TLS)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_ = s.Hub.Serve(ctx, NewConn(nc, s.MaxFrameBytes))
		}()
	}
}

// Conn adapts a net.Conn to hub.Conn; the Go SDK uses it too.
type Conn struct {
	nc  net.Conn
	r   *wire.Reader
	wmu sync.Mutex
}

// NewConn wraps nc; maxFrame 0 means wire.DefaultMaxFrameBytes.
func NewConn(nc net.Conn, maxFrame int) *Conn {
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrameBytes
	}
	return &Conn{nc: nc, r: wire.NewReader(nc, maxFrame)}
}

// Read returns the next frame. Cancelling ctx unblocks it.
func (c *Conn) Read(ctx context.Context) (*wire.Frame, error) {
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := c.r.Next()
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return wire.DecodeProto(b)
}

// Write sends one frame; ctx's deadline and cancellation bound it.
func (c *Conn) Write(ctx context.Context, f *wire.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	bp := wire.GetBuffer()
	b, err := wire.EncodeProto(append(*bp, 0, 0, 0, 0), f)
	defer func() { wire.PutBuffer(bp, b) }()
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if d, ok := ctx.Deadline(); ok {
		_ = c.nc.SetWriteDeadline(d)
	} else {
		_ = c.nc.SetWriteDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetWriteDeadline(time.Unix(1, 0)) })
	_, err = c.nc.Write(b)
	stop()
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Close closes the connection; TCP carries the code in the error frame sent
// before it.
func (c *Conn) Close(wire.CloseCode, string) error { return c.nc.Close() }

var _ hub.Conn = (*Conn)(nil)
