// Package wsconn carries wire frames over a WebSocket: one message per
// frame, JSON in text messages and protobuf in binary ones. The server's
// WebSocket transport, the Go SDK and the load generator all use it, and it
// imports nothing of the server.
package wsconn

import (
	"context"
	"errors"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// maxCloseReason is what fits a close frame: 123 bytes, less a margin.
const maxCloseReason = 120

// Conn is one WebSocket connection as whole frames. Write may be called
// concurrently with Read and with itself.
type Conn struct {
	c     *websocket.Conn
	codec wire.Codec
	typ   websocket.MessageType
	limit int64
}

// New wraps c, which sends in codec (the one its subprotocol names), and
// bounds an incoming message to limit bytes (0 means
// wire.DefaultMaxFrameBytes).
func New(c *websocket.Conn, codec wire.Codec, limit int64) *Conn {
	if limit <= 0 {
		limit = wire.DefaultMaxFrameBytes
	}
	c.SetReadLimit(limit)
	typ := websocket.MessageBinary
	if codec == wire.JSON {
		typ = websocket.MessageText
	}
	return &Conn{c: c, codec: codec, typ: typ, limit: limit}
}

// Read returns the next frame. It decodes by the message's type, text as
// JSON and binary as protobuf, so a peer that mixes them still gets a clear
// answer. Errors: a message over the limit is a *syncpoint.Error with
// CodeTooLarge; a close from the peer is a websocket.CloseError; decode
// errors are those of the codec. Cancelling ctx closes the connection (that
// is how coder/websocket works), so bound a wait by other means when the
// connection must stay usable.
func (c *Conn) Read(ctx context.Context) (*wire.Frame, error) {
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		if errors.Is(err, websocket.ErrMessageTooBig) {
			return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "a frame is over the %d byte limit", c.limit)
		}
		return nil, err
	}
	if typ == websocket.MessageText {
		return wire.DecodeJSON(b)
	}
	return wire.DecodeProto(b)
}

// Write sends one frame; ctx bounds it.
func (c *Conn) Write(ctx context.Context, f *wire.Frame) error {
	bp := wire.GetBuffer()
	b, err := c.codec.Encode(*bp, f)
	if err == nil {
		err = c.c.Write(ctx, c.typ, b)
	}
	wire.PutBuffer(bp, b)
	return err
}

// Close ends the connection with code as the close status and reason, cut
// to what a close frame holds.
func (c *Conn) Close(code wire.CloseCode, reason string) error {
	return c.c.Close(websocket.StatusCode(code), ClipReason(reason))
}

// ClipReason cuts reason to what a close frame holds, keeping it valid
// UTF-8.
func ClipReason(reason string) string {
	if len(reason) <= maxCloseReason {
		return reason
	}
	i := maxCloseReason
	for i > 0 && !utf8.RuneStart(reason[i]) {
		i--
	}
	return reason[:i]
}

// CloseNow drops the connection without a close frame.
func (c *Conn) CloseNow() error { return c.c.CloseNow() }
