package ws

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/coder/websocket"
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

// Frames within the limit pass unchanged however the stream is cut; the
// header that passes the limit fails the read before it is complete, so the
// library never starts waiting for its payload.
func TestLimitConnFollowsFrames(t *testing.T) {
	var ok bytes.Buffer
	ok.Write(clientFrame(0x81, []byte("hi")))                     // text
	ok.Write(clientFrame(0x89, []byte("ping")))                   // ping inside no message
	ok.Write(clientFrame(0x02, bytes.Repeat([]byte("a"), 300)))   // binary, not final
	ok.Write(clientFrame(0x8a, nil))                              // pong between fragments
	ok.Write(clientFrame(0x80, bytes.Repeat([]byte("b"), 700)))   // final continuation: 1000 in all
	ok.Write(clientFrame(0x82, bytes.Repeat([]byte("c"), 70000))) // 64-bit length, over 1000
	over := ok.Len() - len(clientFrame(0x82, bytes.Repeat([]byte("c"), 70000)))
	for name, wrap := range map[string]func(io.Reader) io.Reader{
		"whole":    func(r io.Reader) io.Reader { return r },
		"one byte": iotest.OneByteReader,
		"half":     iotest.HalfReader,
	} {
		t.Run(name, func(t *testing.T) {
			lc := &limitConn{r: wrap(bytes.NewReader(ok.Bytes())), max: 1000}
			got, err := io.ReadAll(lc)
			if !errors.Is(err, websocket.ErrMessageTooBig) {
				t.Fatalf("err = %v, want ErrMessageTooBig", err)
			}
			const hdr = 14
			if len(got) < over || len(got) >= over+hdr || !bytes.Equal(got, ok.Bytes()[:len(got)]) {
				t.Fatalf("passed %d bytes, want the %d before the frame over the limit and less than its header", len(got), over)
			}
		})
	}
}
