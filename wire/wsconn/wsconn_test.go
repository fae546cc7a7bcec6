package wsconn_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
)

// pair connects a client and a server Conn over a real socket, both in the
// codec of sub, and bounds what the server reads to limit bytes.
func pair(t *testing.T, sub string, limit int64) (client, server *wsconn.Conn) {
	t.Helper()
	accepted := make(chan *wsconn.Conn, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: wire.Subprotocols()})
		if err != nil {
			return
		}
		sc := wsconn.New(c, wire.CodecFor(c.Subprotocol()), limit)
		accepted <- sc
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), &websocket.DialOptions{Subprotocols: []string{sub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wc.CloseNow() })
	client = wsconn.New(wc, wire.CodecFor(sub), 0)
	select {
	case server = <-accepted:
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { server.CloseNow() })
	return client, server
}

func TestFramesBothWays(t *testing.T) {
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolProto} {
		t.Run(sub, func(t *testing.T) {
			client, server := pair(t, sub, 0)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := client.Write(ctx, &wire.Frame{Ping: &wire.Ping{Nonce: 7}}); err != nil {
				t.Fatal(err)
			}
			f, err := server.Read(ctx)
			if err != nil || f.Ping == nil || f.Ping.Nonce != 7 {
				t.Fatalf("server read %+v, %v; want ping 7", f, err)
			}
			if err := server.Write(ctx, &wire.Frame{Pong: &wire.Pong{Nonce: 7}}); err != nil {
				t.Fatal(err)
			}
			if f, err := client.Read(ctx); err != nil || f.Pong == nil || f.Pong.Nonce != 7 {
				t.Fatalf("client read %+v, %v; want pong 7", f, err)
			}
		})
	}
}

func TestMessageOverTheLimit(t *testing.T) {
	client, server := pair(t, wire.SubprotocolJSON, 64)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	big := &wire.Frame{Error: &wire.Error{Code: wire.CloseBadRequest, Message: strings.Repeat("x", 200)}}
	if err := client.Write(ctx, big); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Read(ctx); syncpoint.Code(err) != syncpoint.CodeTooLarge {
		t.Fatalf("read of a 200-byte frame with a 64-byte limit: %v, want too_large", err)
	}
}

// A long reason is cut to what a close frame holds without splitting a
// character, which would make the close frame invalid.
func TestCloseCutsTheReason(t *testing.T) {
	client, server := pair(t, wire.SubprotocolJSON, 0)
	reason := "a" + strings.Repeat("é", 100) // 201 bytes, so byte 120 is inside a character
	go server.Close(wire.CloseBadRequest, reason)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) {
		t.Fatalf("read after close: %v, want a close error", err)
	}
	if ce.Code != websocket.StatusCode(wire.CloseBadRequest) || len(ce.Reason) > 123 || !utf8.ValidString(ce.Reason) || !strings.HasPrefix(reason, ce.Reason) {
		t.Fatalf("close %d %q, want 4000 and a valid prefix of the reason", ce.Code, ce.Reason)
	}
}
