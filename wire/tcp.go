package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/syncpoint/syncpoint"
)

// On TCP (and TLS) each frame is a 4-byte big-endian length, then that many
// bytes of protobuf.
const frameHeaderLen = 4

// Reader buffers start here and double as bytes arrive, so declaring a large
// frame and then sending nothing gains a peer little.
const initialReadBytes = 32 << 10

// WriteFrame writes payload as one length-prefixed frame. An empty payload
// is refused, since readers take a zero length as malformed. To send header
// and payload in one write, build the frame with EncodeFrame instead.
func WriteFrame(w io.Writer, payload []byte) error {
	if len(payload) == 0 {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "write frame: empty payload")
	}
	if uint64(len(payload)) > maxUint32 {
		return syncpoint.Errorf(syncpoint.CodeTooLarge, "write frame: %d bytes do not fit a length prefix", len(payload))
	}
	var hdr [frameHeaderLen]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// EncodeFrame appends f to dst as a complete TCP frame: the length prefix
// and the protobuf encoding, ready for a single Write.
func EncodeFrame(dst []byte, f *Frame) ([]byte, error) {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	out, err := EncodeProto(dst, f)
	if err != nil {
		return dst[:start], err
	}
	n := len(out) - start - frameHeaderLen
	if uint64(n) > maxUint32 {
		return dst[:start], syncpoint.Errorf(syncpoint.CodeTooLarge, "encode frame: %d bytes do not fit a length prefix", n)
	}
	binary.BigEndian.PutUint32(out[start:], uint32(n))
	return out, nil
}

// Reader reads length-prefixed frames from a stream.
type Reader struct {
	r      io.Reader
	max    int
	hdr    [frameHeaderLen]byte
	buf    []byte
	pooled *[]byte // buf's, when it came from frameBuffers
}

// pooledFrameBytes is the largest frame read into a pooled buffer; a bigger
// one gets a buffer of its own, grown as its bytes come.
const pooledFrameBytes = 4096

var frameBuffers = sync.Pool{New: func() any { b := make([]byte, 0, pooledFrameBytes); return &b }}

// NewReader returns a Reader of r that refuses frames over maxFrame bytes
// (DefaultMaxFrameBytes when maxFrame <= 0).
func NewReader(r io.Reader, maxFrame int) *Reader {
	if maxFrame <= 0 {
		maxFrame = DefaultMaxFrameBytes
	}
	return &Reader{r: r, max: maxFrame}
}

// Next returns the next frame's payload. The slice is valid only until the
// next call, which may reuse it; decoders copy what they keep. Errors: io.EOF
// at a clean frame boundary, io.ErrUnexpectedEOF when the stream ends inside
// a frame, a *syncpoint.Error with CodeTooLarge for a declared length over
// the limit (nothing beyond the header is read or allocated) or CodeMalformed
// for a zero length, and the underlying reader's errors. After an error the
// stream is out of step: the caller closes the connection.
func (r *Reader) Next() ([]byte, error) {
	// The last frame's buffer goes back before the wait for the next one,
	// which for a device is mostly long: an idle reader holds none.
	if r.pooled != nil {
		frameBuffers.Put(r.pooled)
		r.pooled = nil
	}
	r.buf = nil
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		return nil, err // io.EOF before any byte, io.ErrUnexpectedEOF after
	}
	n := binary.BigEndian.Uint32(r.hdr[:])
	switch {
	case n == 0:
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame: zero length")
	case uint64(n) > uint64(r.max):
		return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "frame of %d bytes is over the %d byte limit", n, r.max)
	}
	size := int(n)
	if size <= pooledFrameBytes {
		r.pooled = frameBuffers.Get().(*[]byte)
		r.buf = (*r.pooled)[:size:size]
		if _, err := io.ReadFull(r.r, r.buf); err != nil {
			return nil, unexpected(err)
		}
		return r.buf, nil
	}
	// Grow as the bytes come instead of trusting the declared length, and
	// allocate exactly, so a buffer never exceeds the limit.
	have := 0
	for have < size {
		next := min(size, max(2*have, initialReadBytes))
		nb := make([]byte, next)
		copy(nb, r.buf[:have])
		r.buf = nb
		if _, err := io.ReadFull(r.r, r.buf[have:]); err != nil {
			return nil, unexpected(err)
		}
		have = next
	}
	return r.buf, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
