// Package ws is the WebSocket transport: GET /v1/connect upgrades to a
// WebSocket whose subprotocol picks the encoding (syncpoint.v1.json in text
// frames, syncpoint.v1.proto in binary frames), and hands the connection to
// the hub.
package ws

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

// Handler serves device connections over WebSocket.
type Handler struct {
	Hub    *hub.Hub
	Logger *slog.Logger
	// MaxFrameBytes bounds one incoming frame; 0 means wire.DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// OriginPatterns lists the browser origins allowed besides the server's
	// own; nil allows every origin, since devices authenticate with the token
	// in their hello and not with cookies a foreign page could ride on.
	OriginPatterns []string
}

// ServeHTTP upgrades the request and runs the session until it ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	opts := &websocket.AcceptOptions{
		Subprotocols:       wire.Subprotocols(),
		OriginPatterns:     h.OriginPatterns,
		InsecureSkipVerify: h.OriginPatterns == nil,
		CompressionMode:    websocket.CompressionDisabled,
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept has written the HTTP error
	}
	limit := h.MaxFrameBytes
	if limit <= 0 {
		limit = wire.DefaultMaxFrameBytes
	}
	c.SetReadLimit(limit)
	codec := wire.CodecFor(c.Subprotocol())
	if codec == nil {
		codec = wire.JSON
	}
	_ = h.Hub.Serve(r.Context(), &conn{c: c, codec: codec})
}

type conn struct {
	c     *websocket.Conn
	codec wire.Codec
}

func (c *conn) Read(ctx context.Context) (*wire.Frame, error) {
	typ, b, err := c.c.Read(ctx)
	if err != nil {
		if errors.Is(err, websocket.ErrMessageTooBig) {
			return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "frame over the size limit")
		}
		return nil, err
	}
	// Decode by frame type so a client that mixes them still gets a clear answer.
	if typ == websocket.MessageText {
		return wire.DecodeJSON(b)
	}
	return wire.DecodeProto(b)
}

func (c *conn) Write(ctx context.Context, f *wire.Frame) error {
	bp := wire.GetBuffer()
	b, err := c.codec.Encode(*bp, f)
	if err == nil {
		typ := websocket.MessageBinary
		if c.codec == wire.JSON {
			typ = websocket.MessageText
		}
		err = c.c.Write(ctx, typ, b)
	}
	wire.PutBuffer(bp, b)
	return err
}

func (c *conn) Close(code wire.CloseCode, reason string) error {
	if len(reason) > 120 {
		reason = reason[:120] // close frames carry at most 123 bytes of reason
	}
	return c.c.Close(websocket.StatusCode(code), reason)
}
