package ws

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/gobwas/ws"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// clientFrame is a masked client frame with a zero mask key.
func clientFrame(first byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = []byte{first, 0x80 | byte(n)}
	case n < 1<<16:
		b = []byte{first, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		b = []byte{first, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return append(append(b, 0, 0, 0, 0), payload...)
}

// streamConn is a socket that reads a fixed stream and keeps what is
// written to it.
type streamConn struct {
	r      io.Reader
	out    bytes.Buffer
	closed bool
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *streamConn) Close() error                     { c.closed = true; return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(time.Time) error      { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }

func newStreamConn(r io.Reader, limit int64) (*conn, *streamConn) {
	sc := &streamConn{r: r}
	return newConn(sc, wire.NewSocketReader(sc, nil), wire.JSON, limit), sc
}

// readAll reads frames until the first error.
func readAll(c *conn) ([]*wire.Frame, error) {
	var out []*wire.Frame
	for {
		f, err := c.Read(context.Background())
		if err != nil {
			return out, err
		}
		out = append(out, f)
	}
}

// serverFrames parses what the server wrote: each frame's opcode and
// payload.
func serverFrames(t *testing.T, b []byte) []ws.Frame {
	t.Helper()
	var out []ws.Frame
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatalf("the server wrote a frame that does not parse: %v", err)
		}
		if f.Header.Masked {
			t.Fatal("the server masked a frame")
		}
		out = append(out, f)
	}
	return out
}

func encodeJSON(t *testing.T, f *wire.Frame) []byte {
	t.Helper()
	b, err := wire.EncodeJSON(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages within the limit come through whole, fragmented or not, with
// control frames between the fragments; a ping is answered; the header
// that takes a message over the limit fails the read before its payload is
// read. The result is the same however the stream is cut.
func TestReadFollowsFrames(t *testing.T) {
	ping := encodeJSON(t, &wire.Frame{Ping: &wire.Ping{Nonce: 7}})
	pong := encodeJSON(t, &wire.Frame{Pong: &wire.Pong{Nonce: 8}})
	var in bytes.Buffer
	in.Write(clientFrame(0x81, ping))
	in.Write(clientFrame(0x89, []byte("hi")))     // a WebSocket ping
	in.Write(clientFrame(0x01, pong[:5]))         // text, not final
	in.Write(clientFrame(0x8a, nil))              // a pong between fragments
	in.Write(clientFrame(0x80, pong[5:]))         // the final continuation
	big := clientFrame(0x82, make([]byte, 70000)) // 64-bit length, over the limit
	in.Write(big)
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	} {
		t.Run(name, func(t *testing.T) {
			src := bytes.NewReader(in.Bytes())
			c, sc := newStreamConn(wrap(src), 1000)
			frames, err := readAll(c)
			if syncpoint.Code(err) != syncpoint.CodeTooLarge {
				t.Fatalf("err = %v, want too_large", err)
			}
			if len(frames) != 2 || frames[0].Ping == nil || frames[0].Ping.Nonce != 7 || frames[1].Pong == nil || frames[1].Pong.Nonce != 8 {
				t.Fatalf("frames = %+v, want the ping and the pong", frames)
			}
			if src.Len() < 70000-wire.SocketBufferBytes { // the buffer may hold its start
				t.Fatalf("%d bytes left unread, want the payload over the limit", src.Len())
			}
			out := serverFrames(t, sc.out.Bytes())
			if len(out) != 1 || out[0].Header.OpCode != ws.OpPong || string(out[0].Payload) != "hi" {
				t.Fatalf("the server wrote %+v, want one pong with the ping's payload", out)
			}
		})
	}
}

// A close from the peer is answered with its code and ends the reads; an
// unmasked frame fails the connection with 1002.
func TestReadCloseAndProtocolErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []byte
		answer ws.StatusCode
	}{
		{"close", clientFrame(0x88, ws.NewCloseFrameBody(4001, "bye")), 4001},
		{"close without a code", clientFrame(0x88, nil), ws.StatusNormalClosure},
		{"unmasked", []byte{0x81, 0x02, 'h', 'i'}, ws.StatusProtocolError},
		{"reserved bits", clientFrame(0xc1, []byte("{}")), ws.StatusProtocolError},
		{"continuation first", clientFrame(0x80, []byte("{}")), ws.StatusProtocolError},
		{"long ping", clientFrame(0x89, make([]byte, 126)), ws.StatusProtocolError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sc := newStreamConn(bytes.NewReader(tc.in), 1000)
			if _, err := c.Read(context.Background()); err == nil {
				t.Fatal("read succeeded")
			}
			out := serverFrames(t, sc.out.Bytes())
			if len(out) != 1 || out[0].Header.OpCode != ws.OpClose {
				t.Fatalf("the server wrote %+v, want one close", out)
			}
			if code, _ := ws.ParseCloseFrameData(out[0].Payload); code != tc.answer {
				t.Fatalf("close code %d, want %d", code, tc.answer)
			}
			if !sc.closed {
				t.Fatal("the socket was left open")
			}
			if err := c.WriteFrames(time.Now().Add(time.Second), &wire.Frame{Ping: &wire.Ping{}}); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("a write after the close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// Frames written together come out as separate messages with headers of
// every length class, and a close reason is cut to what a close frame holds.
func TestWriteFramesAndClose(t *testing.T) {
	c, sc := newStreamConn(bytes.NewReader(nil), 1000)
	var frames []*wire.Frame
	for _, n := range []int{0, 100, 200, 70000} {
		frames = append(frames, &wire.Frame{Error: wire.NewError(wire.CloseBadRequest, strings.Repeat("x", n), false)})
	}
	if err := c.WriteFrames(time.Now().Add(time.Second), frames...); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(wire.CloseBadRequest, strings.Repeat("é", 100)); err != nil {
		t.Fatal(err)
	}
	out := serverFrames(t, sc.out.Bytes())
	if len(out) != len(frames)+1 {
		t.Fatalf("%d frames written, want %d", len(out), len(frames)+1)
	}
	for i, f := range frames {
		want := encodeJSON(t, f)
		if out[i].Header.OpCode != ws.OpText || !out[i].Header.Fin || !bytes.Equal(out[i].Payload, want) {
			t.Fatalf("frame %d: %v %d bytes, want a final text frame of %d", i, out[i].Header.OpCode, len(out[i].Payload), len(want))
		}
	}
	last := out[len(out)-1]
	code, reason := ws.ParseCloseFrameData(last.Payload)
	if last.Header.OpCode != ws.OpClose || code != ws.StatusCode(wire.CloseBadRequest) || len(last.Payload) > ws.MaxControlFramePayloadSize || !strings.HasPrefix(strings.Repeat("é", 100), reason) {
		t.Fatalf("close %d %q (%d bytes)", code, reason, len(last.Payload))
	}
	c.drop()
}

// FuzzReadFrames feeds any byte stream to the server's reader, whole and
// one byte at a time: it never panics, and decides the same way however the
// stream is cut: the same frames, then the same kind of error.
func FuzzReadFrames(f *testing.F) {
	ping, _ := wire.EncodeJSON(nil, &wire.Frame{Ping: &wire.Ping{Nonce: 1}})
	f.Add(clientFrame(0x81, ping), int64(64))
	f.Add(append(clientFrame(0x01, ping[:4]), clientFrame(0x80, ping[4:])...), int64(64))
	f.Add(append(clientFrame(0x89, []byte("p")), clientFrame(0x88, ws.NewCloseFrameBody(1000, ""))...), int64(64))
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, int64(4096))
	f.Add([]byte{0x82, 0xfe}, int64(1))
	f.Add([]byte{0x81, 0x02, 'h', 'i'}, int64(64))
	f.Fuzz(func(t *testing.T, stream []byte, limit int64) {
		if limit < 0 {
			limit = -limit
		}
		var got [2]string
		for i, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream))} {
			c, _ := newStreamConn(r, limit)
			frames, err := readAll(c)
			var b strings.Builder
			for _, f := range frames {
				b.WriteString(f.Type() + " ")
			}
			b.WriteString(string(syncpoint.Code(err)))
			got[i] = b.String()
		}
		if got[0] != got[1] {
			t.Fatalf("whole: %s; one byte at a time: %s", got[0], got[1])
		}
	})
}
