package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
)

// conn is one connection to the server, whatever the transport: whole
// frames in and out. Writes may come from two goroutines (acks and pongs).
type conn interface {
	read(ctx context.Context) (*wire.Frame, error)
	write(ctx context.Context, f *wire.Frame) error
	// close ends the session normally, telling the server so.
	close()
	// abort drops the connection without a goodbye.
	abort()
}

// closedError is how a session ended when the server said why: an error
// frame with fatal set, or a WebSocket close status.
type closedError struct{ e *wire.Error }

func (c *closedError) Error() string { return "closed by the server: " + c.e.Error() }
func (c *closedError) Unwrap() error { return c.e }

// upgradeError is a WebSocket dial that the server answered with an HTTP
// status other than 101.
type upgradeError struct {
	status int
	err    error
}

func (e *upgradeError) Error() string { return e.err.Error() }
func (e *upgradeError) Unwrap() error { return e.err }

// wsURL turns the configured http(s) base URL into the ws(s) URL of
// /v1/connect.
func wsURL(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("server %q: %w", server, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("server %q: want an http:// or https:// URL", server)
	}
	if u.Host == "" {
		return "", fmt.Errorf("server %q: no host", server)
	}
	u.Path = strings.TrimRight(u.Path, "/") + "/v1/connect"
	u.RawQuery, u.Fragment = "", ""
	return u.String(), nil
}

func (c *Client) dial(ctx context.Context) (conn, error) {
	var cn conn
	var err error
	if c.cfg.TCP != "" {
		cn, err = c.dialTCP(ctx)
	} else {
		cn, err = c.dialWS(ctx)
	}
	if err != nil {
		c.failover()
	}
	return cn, err
}

// failover moves on to the next address, for the next connection: the
// node this one names is gone or going.
func (c *Client) failover() {
	if n := len(c.addrs); n > 1 {
		next := (int(c.cur.Load()) + 1) % n
		c.cur.Store(int32(next))
		c.log.Info("client: moving to the next server", "addr", c.addrs[next])
	}
}

// server returns the base URL (or TCP address) in use.
func (c *Client) server() string { return c.addrs[c.cur.Load()] }

func (c *Client) dialTCP(ctx context.Context) (conn, error) {
	d := &net.Dialer{KeepAlive: 30 * time.Second}
	var nc net.Conn
	var err error
	if c.cfg.TLS != nil {
		td := &tls.Dialer{NetDialer: d, Config: c.cfg.TLS}
		nc, err = td.DialContext(ctx, "tcp", c.server())
	} else {
		nc, err = d.DialContext(ctx, "tcp", c.server())
	}
	if err != nil {
		return nil, fmt.Errorf("dial tcp %s: %w", c.server(), err)
	}
	return &tcpConn{nc: nc, c: wire.NewTCPConn(nc, c.cfg.MaxFrameBytes)}, nil
}

func (c *Client) dialWS(ctx context.Context) (conn, error) {
	sub, codec := wire.SubprotocolJSON, wire.JSON
	if c.cfg.Encoding == EncodingProto {
		sub, codec = wire.SubprotocolProto, wire.Proto
	}
	opts := &websocket.DialOptions{Subprotocols: []string{sub}, CompressionMode: websocket.CompressionDisabled}
	if c.cfg.TLS != nil {
		opts.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: c.cfg.TLS, Proxy: http.ProxyFromEnvironment}}
	}
	wsURL := c.wsURLs[c.cur.Load()]
	wc, resp, err := websocket.Dial(ctx, wsURL, opts)
	if err != nil {
		if resp != nil {
			return nil, &upgradeError{status: resp.StatusCode, err: fmt.Errorf("dial %s: HTTP %d: %w", wsURL, resp.StatusCode, err)}
		}
		return nil, fmt.Errorf("dial %s: %w", wsURL, err)
	}
	if got := wc.Subprotocol(); got != "" && got != sub {
		wc.CloseNow()
		return nil, fmt.Errorf("dial %s: the server chose subprotocol %q, not %q", wsURL, got, sub)
	}
	return &wsConn{wsconn.New(wc, codec, int64(c.cfg.MaxFrameBytes))}, nil
}

type tcpConn struct {
	nc net.Conn
	c  *wire.TCPConn
}

func (t *tcpConn) read(ctx context.Context) (*wire.Frame, error) {
	f, err := t.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if f.Error != nil && f.Error.Fatal {
		return nil, &closedError{f.Error}
	}
	return f, nil
}

func (t *tcpConn) write(ctx context.Context, f *wire.Frame) error { return t.c.Write(ctx, f) }

// close sends the goodbye that TCP has instead of a close status.
func (t *tcpConn) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	_ = t.c.Write(ctx, &wire.Frame{Error: &wire.Error{Code: wire.CloseNormal, Message: "the device closed the session", Fatal: true}})
	cancel()
	t.nc.Close()
}

func (t *tcpConn) abort() { t.nc.Close() }

type wsConn struct{ c *wsconn.Conn }

func (w *wsConn) read(ctx context.Context) (*wire.Frame, error) {
	f, err := w.c.Read(ctx)
	if err != nil {
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			code := wire.CloseCode(ce.Code)
			return nil, &closedError{wire.NewError(code, ce.Reason, true)}
		}
		return nil, err
	}
	if f.Error != nil && f.Error.Fatal {
		return nil, &closedError{f.Error}
	}
	return f, nil
}

func (w *wsConn) write(ctx context.Context, f *wire.Frame) error { return w.c.Write(ctx, f) }

func (w *wsConn) close() { _ = w.c.Close(wire.CloseNormal, "") }

func (w *wsConn) abort() { _ = w.c.CloseNow() }

// isEOF reports whether err is the connection ending without a word.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}
