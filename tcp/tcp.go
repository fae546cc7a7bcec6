// Package tcp is the raw TCP transport (TLS when configured): each frame is
// a 4-byte big-endian length and a protobuf-encoded wire.Frame.
package tcp

import (
	"context"
	"crypto/tls"
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
// the goroutines it started. A session may outlive its goroutine (a parked
// one: hub.Parker); the hub closes its sessions, and waits for them.
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
		peer := hub.Peer{Transport: "tcp", RemoteAddr: nc.RemoteAddr().String()}
		if s.TLS != nil {
			nc = tls.Server(nc, s.TLS)
			peer.Transport = "tls"
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			// The hub ends its sessions when it closes, as it ends
			// WebSocket ones; a context that can end would cost every
			// idle session its hooks (see wire.DeadlineWatch).
			_ = s.Hub.Serve(context.WithoutCancel(ctx), wire.NewTCPConn(nc, s.MaxFrameBytes), peer)
		}()
	}
}

var _ hub.Conn = (*wire.TCPConn)(nil)
