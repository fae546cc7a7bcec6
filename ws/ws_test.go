package ws_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

const secret = "ws-test-token-secret-0123"

func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.New(server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", APIKey: "k", TokenSecret: secret,
		Bizzes: []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser)}, MaxFrameBytes: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return "ws://" + s.Addr() + "/v1/connect"
}

func dialHello(t *testing.T, url, sub string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{sub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	tok, _ := auth.Mint([]byte(secret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	codec := wire.CodecFor(sub)
	b, _ := codec.Encode(nil, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{1}, Token: tok, DeviceID: "d1", Bizzes: []string{"chat"}}})
	typ := websocket.MessageText
	if sub == wire.SubprotocolProto {
		typ = websocket.MessageBinary
	}
	if err := c.Write(ctx, typ, b); err != nil {
		t.Fatal(err)
	}
	if f := read(t, c); f.Welcome == nil {
		t.Fatalf("want welcome, got %s", f.Type())
	}
	return c
}

func read(t *testing.T, c *websocket.Conn) *wire.Frame {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var f *wire.Frame
	if typ == websocket.MessageText {
		f, err = wire.DecodeJSON(b)
	} else {
		f, err = wire.DecodeProto(b)
	}
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Garbage in a frame gets a non-fatal error naming the problem; the session
// goes on, in either encoding.
func TestMalformedFrameIsAnsweredAndSurvived(t *testing.T) {
	url := startServer(t)
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolProto} {
		c := dialHello(t, url, sub)
		ctx := context.Background()
		c.Write(ctx, websocket.MessageText, []byte(`{"ack": {"positions": [`))
		f := read(t, c)
		if f.Error == nil || f.Error.Fatal || f.Error.Reason != string(syncpoint.CodeMalformed) {
			t.Fatalf("%s: got %+v, want a non-fatal malformed error", sub, f.Error)
		}
		c.Write(ctx, websocket.MessageBinary, []byte{0xff, 0xff, 0xff})
		if f := read(t, c); f.Error == nil || f.Error.Fatal {
			t.Fatalf("%s: bad protobuf: got %+v", sub, f)
		}
		ping, _ := wire.EncodeJSON(nil, &wire.Frame{Ping: &wire.Ping{Nonce: 7}})
		c.Write(ctx, websocket.MessageText, ping)
		if f := read(t, c); f.Pong == nil || f.Pong.Nonce != 7 {
			t.Fatalf("%s: session not usable after bad frames: %+v", sub, f)
		}
	}
}

// A frame over the limit ends the connection with the WebSocket "too big"
// status before the server holds it in memory.
func TestOversizedFrameCloses(t *testing.T) {
	url := startServer(t)
	c := dialHello(t, url, wire.SubprotocolJSON)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Write(ctx, websocket.MessageText, []byte(`{"ping":{"nonce":1},"x":"`+strings.Repeat("a", 10000)+`"}`))
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusMessageTooBig {
		t.Fatalf("read after an oversized frame: %v, want close 1009", err)
	}
}
