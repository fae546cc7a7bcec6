package wire

import (
	"sync"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
)

// The WebSocket subprotocols: JSON travels in text frames, protobuf in
// binary frames.
const (
	SubprotocolJSON  = "syncpoint.v1.json"
	SubprotocolProto = "syncpoint.v1.proto"
)

// DefaultMaxFrameBytes is the largest frame a peer accepts unless
// configured otherwise, on every transport.
const DefaultMaxFrameBytes = 4 << 20

// MaxFrameItems bounds the list elements in one frame, all lists together:
// empty elements ("{},{},...") decode to some 50 times their size, and the
// first frame is decoded before anyone is authenticated. Decoding more is a
// *syncpoint.Error with CodeTooLarge.
const MaxFrameItems = 1 << 16

func tooManyItems() error {
	return syncpoint.Errorf(syncpoint.CodeTooLarge, "frame holds more than %d list elements", MaxFrameItems)
}

// Codec turns frames into bytes and back. Encode appends to dst and returns
// the extended slice, so a caller can reuse one buffer. Decode never keeps
// a reference to b, so b may be reused once it returns. Decode errors are
// *syncpoint.Error with CodeMalformed, or CodeTooLarge past MaxFrameItems;
// encode errors are *syncpoint.Error with CodeInvalid and mean the frame was
// built wrong.
type Codec interface {
	Encode(dst []byte, f *Frame) ([]byte, error)
	Decode(b []byte) (*Frame, error)
	// Name is "json" or "proto".
	Name() string
}

// The codecs.
var (
	JSON  Codec = jsonCodec{}
	Proto Codec = protoCodec{}
)

// CodecFor returns the codec of a WebSocket subprotocol, or nil when the
// subprotocol is not one of ours.
func CodecFor(subprotocol string) Codec {
	switch subprotocol {
	case SubprotocolJSON:
		return JSON
	case SubprotocolProto:
		return Proto
	}
	return nil
}

// Subprotocols returns the WebSocket subprotocols a server offers, preferred
// first.
func Subprotocols() []string { return []string{SubprotocolProto, SubprotocolJSON} }

type jsonCodec struct{}

func (jsonCodec) Encode(dst []byte, f *Frame) ([]byte, error) { return EncodeJSON(dst, f) }
func (jsonCodec) Decode(b []byte) (*Frame, error)             { return DecodeJSON(b) }
func (jsonCodec) Name() string                                { return "json" }

type protoCodec struct{}

func (protoCodec) Encode(dst []byte, f *Frame) ([]byte, error) { return EncodeProto(dst, f) }
func (protoCodec) Decode(b []byte) (*Frame, error)             { return DecodeProto(b) }
func (protoCodec) Name() string                                { return "proto" }

// clip shortens text from the peer before it is quoted in an error, which
// goes back to the peer and into logs.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}

// encodeBufs holds encode buffers between frames, so a connection keeps
// none while it is idle.
var encodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuffer is the largest buffer kept for reuse; a rare huge push
// does not pin its memory.
const maxPooledBuffer = 256 << 10

// GetBuffer returns an empty encode buffer; give it back with PutBuffer.
func GetBuffer() *[]byte { return encodeBufs.Get().(*[]byte) }

// PutBuffer returns a buffer, with b as what was appended to it, for reuse.
func PutBuffer(bp *[]byte, b []byte) {
	if cap(b) > maxPooledBuffer {
		return
	}
	*bp = b[:0]
	encodeBufs.Put(bp)
}
