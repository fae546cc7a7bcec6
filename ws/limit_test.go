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

// FuzzLimitConn feeds any byte stream through the header check, whole and
// one byte at a time: it never panics, passes only a prefix of the stream,
// and decides the same way however the stream is cut.
func FuzzLimitConn(f *testing.F) {
	f.Add(clientFrame(0x81, []byte("hi")), int64(16))
	f.Add(append(clientFrame(0x01, []byte("abc")), clientFrame(0x80, []byte("defg"))...), int64(6))
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4}, int64(4096))
	f.Add([]byte{0x82, 0xfe}, int64(1))
	f.Fuzz(func(t *testing.T, stream []byte, max int64) {
		if max < 0 {
			max = -max
		}
		var results [2][]byte
		var errs [2]error
		for i, r := range []io.Reader{bytes.NewReader(stream), iotest.OneByteReader(bytes.NewReader(stream))} {
			results[i], errs[i] = io.ReadAll(&limitConn{r: r, max: max})
			if !bytes.HasPrefix(stream, results[i]) {
				t.Fatalf("passed %x, not a prefix of %x", results[i], stream)
			}
		}
		if (errs[0] == nil) != (errs[1] == nil) {
			t.Fatalf("whole: %v; one byte at a time: %v", errs[0], errs[1])
		}
		if errs[0] == nil && (len(results[0]) != len(stream) || len(results[1]) != len(stream)) {
			t.Fatalf("no error, but only %d and %d of %d bytes passed", len(results[0]), len(results[1]), len(stream))
		}
	})
}
