// Package ws is the WebSocket transport: GET /v1/connect upgrades to a
// WebSocket whose subprotocol picks the encoding (syncpoint.v1.json in text
// frames, syncpoint.v1.proto in binary frames), and hands the connection to
// the hub.
package ws

import (
	"log/slog"
	"net/http"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
)

var _ hub.Conn = (*wsconn.Conn)(nil)

// Handler serves device connections over WebSocket.
type Handler struct {
	Hub    *hub.Hub
	Logger *slog.Logger
	// MaxFrameBytes bounds one incoming frame; 0 means wire.DefaultMaxFrameBytes.
	MaxFrameBytes int64
	// OriginPatterns lists the browser origins allowed besides the server's
	// own (server.Config.AllowedOrigins); nil allows every origin, since
	// devices authenticate with the token in their hello and not with
	// cookies a foreign page could ride on; an empty list allows only the
	// server's own.
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
	limit := h.MaxFrameBytes
	if limit <= 0 {
		limit = wire.DefaultMaxFrameBytes
	}
	c, err := websocket.Accept(&limitWriter{ResponseWriter: w, max: limit}, r, opts)
	if err != nil {
		// Accept has written the HTTP error; the client sees why.
		if h.Logger != nil {
			h.Logger.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
		}
		return
	}
	codec := wire.CodecFor(c.Subprotocol())
	if codec == nil {
		codec = wire.JSON
	}
	peer := hub.Peer{Transport: "ws", RemoteAddr: r.RemoteAddr}
	if r.TLS != nil {
		peer.Transport = "wss"
	}
	_ = h.Hub.Serve(r.Context(), wsconn.New(c, codec, limit), peer)
}
