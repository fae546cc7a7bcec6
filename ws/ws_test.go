package ws_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
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
	c, _ := dialRaw(t, url, sub)
	hello(t, c, sub)
	return c
}

// dialRaw opens a WebSocket and also returns its socket, for writing frames
// no client library would send.
func dialRaw(t *testing.T, url, sub string) (*websocket.Conn, net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw net.Conn
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		raw = nc
		return nc, err
	}}}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: hc, Subprotocols: []string{sub}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c, raw
}

func hello(t *testing.T, c *websocket.Conn, sub string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
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
}

// expectTooLarge reads the fatal 4009 error frame and then the 4009 close.
func expectTooLarge(t *testing.T, c *websocket.Conn) {
	t.Helper()
	if f := read(t, c); f.Error == nil || f.Error.Code != wire.CloseTooLarge || !f.Error.Fatal {
		t.Fatalf("got %+v, want a fatal too_large error", f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusCode(wire.CloseTooLarge) {
		t.Fatalf("after the error frame: %v, want close 4009", err)
	}
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

// A frame over the limit ends the connection with too_large before the
// server holds it in memory.
func TestOversizedFrameCloses(t *testing.T) {
	url := startServer(t)
	c := dialHello(t, url, wire.SubprotocolJSON)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Write(ctx, websocket.MessageText, []byte(`{"ping":{"nonce":1},"x":"`+strings.Repeat("a", 10000)+`"}`))
	expectTooLarge(t, c)
}

// A frame header that declares 2^63-1 bytes is refused at the header, like
// a TCP length prefix, before and after the hello; the connection does not
// wait for bytes that will never come.
func TestHugeDeclaredFrameIsRefusedAtTheHeader(t *testing.T) {
	url := startServer(t)
	huge := []byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4} // FIN text, masked, 64-bit length, mask key
	for _, afterHello := range []bool{false, true} {
		c, raw := dialRaw(t, url, wire.SubprotocolJSON)
		if afterHello {
			hello(t, c, wire.SubprotocolJSON)
		}
		if _, err := raw.Write(huge); err != nil {
			t.Fatal(err)
		}
		expectTooLarge(t, c)
	}
}

// Fragments count together: a message whose frames each fit but whose sum
// does not is refused at the frame that passes the limit.
func TestFragmentedMessageOverTheLimit(t *testing.T) {
	url := startServer(t)
	c, raw := dialRaw(t, url, wire.SubprotocolJSON)
	hello(t, c, wire.SubprotocolJSON)
	frame := func(op byte, n int) []byte {
		b := []byte{op, 0x80 | 126, byte(n >> 8), byte(n), 0, 0, 0, 0} // zero mask key: payload as is
		return append(b, bytes.Repeat([]byte(" "), n)...)
	}
	raw.Write(frame(0x01, 3000)) // text, not final
	raw.Write(frame(0x00, 3000)) // continuation: 6000 > 4096
	expectTooLarge(t, c)
}
