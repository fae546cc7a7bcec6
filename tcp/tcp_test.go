package tcp_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

const secret = "tcp-test-token-secret-0123"

func startServer(t *testing.T) string {
	t.Helper()
	s, err := server.New(server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", APIKey: "k", TokenSecret: secret,
		Bizzes: []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser)}, MaxFrameBytes: 4096,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.TCPAddr()
}

func helloConn(t *testing.T, addr string) (net.Conn, *wire.TCPConn) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := wire.NewTCPConn(nc, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tok, _ := auth.Mint([]byte(secret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err := c.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{1}, Token: tok, DeviceID: "d1", Bizzes: []string{"chat"}}}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Read(ctx); err != nil || f.Welcome == nil {
		t.Fatalf("want welcome: %+v %v", f, err)
	}
	return nc, c
}

// A declared length over the limit is refused with 4009 without reading
// (or allocating) the body, and the connection is closed.
func TestOversizedFrameIsRefused(t *testing.T) {
	nc, c := helloConn(t, startServer(t))
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], 1<<30)
	nc.Write(hdr[:])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Read(ctx)
	if err != nil || f.Error == nil || f.Error.Code != wire.CloseTooLarge || !f.Error.Fatal {
		t.Fatalf("got %+v, %v; want a fatal too-large error", f, err)
	}
	if _, err := c.Read(ctx); err != io.EOF {
		t.Fatalf("after the error frame: %v, want EOF", err)
	}
}

// A well-framed body that is not protobuf gets a non-fatal error; the
// framing still holds, so the session goes on.
func TestGarbageBodyKeepsSession(t *testing.T) {
	nc, c := helloConn(t, startServer(t))
	if err := wire.WriteFrame(nc, []byte{0xff, 0xfe, 0xfd}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := c.Read(ctx)
	if err != nil || f.Error == nil || f.Error.Fatal {
		t.Fatalf("got %+v, %v; want a non-fatal error", f, err)
	}
	if err := c.Write(ctx, &wire.Frame{Ping: &wire.Ping{Nonce: 9}}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Read(ctx); err != nil || f.Pong == nil || f.Pong.Nonce != 9 {
		t.Fatalf("session unusable after garbage: %+v %v", f, err)
	}
}
