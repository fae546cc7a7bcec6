// Package ws is the WebSocket transport: GET /v1/connect upgrades to a
// WebSocket whose subprotocol picks the encoding (syncpoint.v1.json in text
// frames, syncpoint.v1.proto in binary frames), and hands the connection to
// the hub.
package ws

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/gobwas/ws"

	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

var _ hub.Conn = (*conn)(nil)

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
	// server's own. A pattern is matched with path.Match, case-insensitively,
	// against the origin's host, or against scheme://host when it has "://".
	OriginPatterns []string
}

// ServeHTTP upgrades the request and runs the session until it ends.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The request is checked before gobwas/ws hijacks it, so that a refusal
	// is an ordinary HTTP answer (JSON under httpapi.JSONErrors).
	if status, err := checkUpgrade(w, r); err != nil {
		h.refused(r, err)
		http.Error(w, err.Error(), status)
		return
	}
	if h.OriginPatterns != nil {
		if err := checkOrigin(r, h.OriginPatterns); err != nil {
			h.refused(r, err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
	}
	sub := pickSubprotocol(r)
	up := ws.HTTPUpgrader{Protocol: func(p string) bool { return p == sub }}
	nc, rw, hs, err := up.Upgrade(r, w)
	if err != nil {
		h.refused(r, err)
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	codec := wire.CodecFor(hs.Protocol)
	if codec == nil {
		codec = wire.JSON
	}
	limit := h.MaxFrameBytes
	if limit <= 0 {
		limit = wire.DefaultMaxFrameBytes
	}
	peer := hub.Peer{Transport: "ws", RemoteAddr: r.RemoteAddr}
	if r.TLS != nil {
		peer.Transport = "wss"
	}
	// The session goes on without this request: once ServeHTTP returns,
	// net/http lets go of the connection's buffers and the request, which
	// an idle session would otherwise keep for its whole life. Its context
	// goes too (nothing reads its values, and it ends with the request): a
	// context.WithoutCancel of it would keep net/http's chain of contexts,
	// about 0.4 KiB, for every session.
	c := newConn(nc, socketReader(nc, rw.Reader), codec, limit)
	go func() { _ = h.Hub.Serve(context.Background(), c, peer) }()
}

// socketReader reads the socket itself from now on, through a buffer held
// only while bytes wait in it (wire.SocketReader). net/http's reader, which
// the hijack hands over, ends the request's context at its first read error,
// and the session must tell a device's leaving from a shutdown; so only the
// bytes it already holds are taken from it. Its writer is dropped too:
// frames go straight to the socket.
func socketReader(nc net.Conn, hijacked *bufio.Reader) *wire.SocketReader {
	early, _ := hijacked.Peek(hijacked.Buffered())
	return wire.NewSocketReader(nc, early)
}

func (h *Handler) refused(r *http.Request, err error) {
	if h.Logger != nil {
		h.Logger.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "err", err)
	}
}

// checkUpgrade checks what RFC 6455 §4.2.1 asks of an opening handshake
// and gives the status of the first fault.
func checkUpgrade(w http.ResponseWriter, r *http.Request) (int, error) {
	if !r.ProtoAtLeast(1, 1) {
		return http.StatusUpgradeRequired, fmt.Errorf("a WebSocket handshake needs HTTP/1.1 or later, not %s", r.Proto)
	}
	if !hasToken(r.Header, "Connection", "upgrade") || !hasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		return http.StatusUpgradeRequired, fmt.Errorf("this endpoint takes a WebSocket upgrade (Connection: Upgrade, Upgrade: websocket)")
	}
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, fmt.Errorf("a WebSocket handshake is a GET, not %s", r.Method)
	}
	if v := r.Header.Get("Sec-WebSocket-Version"); v != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return http.StatusBadRequest, fmt.Errorf("unsupported WebSocket version %q; this server speaks 13", v)
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return http.StatusBadRequest, fmt.Errorf("a WebSocket handshake has one Sec-WebSocket-Key, not %d", len(keys))
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return http.StatusBadRequest, fmt.Errorf("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return 0, nil
}

// checkOrigin allows a request with no Origin, one from the server's own
// host, and one that a pattern matches.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("the Origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err != nil {
			return fmt.Errorf("the allowed origin pattern %q is malformed: %w", p, err)
		} else if ok {
			return nil
		}
	}
	return fmt.Errorf("the Origin %q is not allowed for host %q", u.Host, r.Host)
}

// pickSubprotocol takes the first of the server's encodings that the
// client offers, so proto wins when a client offers both; "" when none.
func pickSubprotocol(r *http.Request) string {
	offered := tokens(r.Header, "Sec-WebSocket-Protocol")
	for _, s := range wire.Subprotocols() {
		for _, o := range offered {
			if strings.EqualFold(s, o) {
				return o
			}
		}
	}
	return ""
}

func hasToken(h http.Header, name, token string) bool {
	return slices.ContainsFunc(tokens(h, name), func(t string) bool { return strings.EqualFold(t, token) })
}

// tokens lists the comma-separated values of a header, in order.
func tokens(h http.Header, name string) []string {
	var out []string
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			out = append(out, strings.TrimSpace(t))
		}
	}
	return out
}
