package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"

	"github.com/coder/websocket"
)

// The WebSocket library applies its read limit only as payload bytes
// arrive, so a frame header declaring 2^63-1 bytes and then silence would
// hold a connection until the heartbeat gave up. limitWriter hands the
// library a connection that reads frame headers as they pass and fails at
// the first one that takes a message over the limit, like a TCP length
// prefix. The error wraps websocket.ErrMessageTooBig, so it reads as any
// other oversized message.
type limitWriter struct {
	http.ResponseWriter
	max int64
}

func (w *limitWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack gives the library the connection behind a header check. Bytes the
// HTTP server had already buffered are moved behind the check too.
func (w *limitWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	lc := &limitConn{Conn: nc, max: w.max}
	lc.r = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), nc)
	brw.Reader.Reset(lc)
	return lc, brw, nil
}

// limitConn follows the client's frames: a header, then its payload.
type limitConn struct {
	net.Conn
	r   io.Reader
	max int64

	hdr  [14]byte // the header being read: 2 bytes, up to 8 of length, 4 of mask
	nhdr int
	left uint64 // payload bytes of the current frame not yet passed
	msg  uint64 // bytes declared so far by the frames of the current message
	err  error  // once set, every read fails with it
}

func (c *limitConn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	if k, ferr := c.scan(p[:n]); ferr != nil {
		// Pass what came before the header at fault; fail from there on.
		c.err = ferr
		if k == 0 {
			return 0, ferr
		}
		return k, nil
	}
	return n, err
}

// scan follows the frames in b. At a header that takes its message over
// the limit it returns how many bytes of b came before that header.
func (c *limitConn) scan(b []byte) (int, error) {
	for i := 0; i < len(b); {
		if c.left > 0 {
			k := min(uint64(len(b)-i), c.left)
			c.left -= k
			i += int(k)
			continue
		}
		start := i - c.nhdr
		c.hdr[c.nhdr] = b[i]
		c.nhdr++
		i++
		if c.nhdr < 2 {
			continue
		}
		need := 2
		switch c.hdr[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if c.hdr[1]&0x80 != 0 {
			need += 4 // the mask key
		}
		if c.nhdr < need {
			continue
		}
		var length uint64
		switch n := c.hdr[1] & 0x7f; n {
		case 126:
			length = uint64(binary.BigEndian.Uint16(c.hdr[2:]))
		case 127:
			length = binary.BigEndian.Uint64(c.hdr[2:])
		default:
			length = uint64(n)
		}
		op, fin := c.hdr[0]&0x0f, c.hdr[0]&0x80 != 0
		c.nhdr, c.left = 0, length
		if op >= 8 {
			continue // control frames are small, and the library checks them
		}
		if op != 0 {
			c.msg = 0 // a text or binary frame starts a message
		}
		if length > uint64(c.max)-c.msg { // c.msg never passes c.max
			return max(start, 0), fmt.Errorf("a frame declares %d bytes, over the %d byte limit: %w", length, c.max, websocket.ErrMessageTooBig)
		}
		c.msg += length
		if fin {
			c.msg = 0
		}
	}
	return len(b), nil
}
