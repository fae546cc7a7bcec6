package hub_test

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

// tcpFrame is a TCP frame with an arbitrary declared length.
func tcpFrame(declared uint32, body []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, declared)
	return append(b, body...)
}

// A bad first frame is refused with the code that names its fault, on every
// transport, and not reported as a hello timeout (which is a minute away).
func TestBadFirstFrameGetsItsOwnCode(t *testing.T) {
	e := newEnv(t, func(c *hub.Config) { c.HelloTimeout = time.Minute })
	cases := []struct {
		name string
		tr   transport
		raw  []byte
		code wire.CloseCode
		want string // in the message
	}{
		{"ws text not json", wsJSON, []byte("xyz{"), wire.CloseBadRequest, "malformed"},
		{"ws binary garbage", wsProto, []byte{0xff, 0xff, 0xff}, wire.CloseBadRequest, "protobuf"},
		{"tcp zero length", tcpRaw, tcpFrame(0, nil), wire.CloseBadRequest, "zero length"},
		{"tcp garbage body", tcpRaw, tcpFrame(3, []byte{0xff, 0xff, 0xff}), wire.CloseBadRequest, "protobuf"},
		{"tcp length 0xFFFFFFFF", tcpRaw, tcpFrame(0xFFFFFFFF, nil), wire.CloseTooLarge, "limit"},
		{"tcp length 4 MiB + 1", tcpRaw, tcpFrame(wire.DefaultMaxFrameBytes+1, nil), wire.CloseTooLarge, "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(tc.tr)
			c.raw(tc.raw)
			frame, status := c.end(10 * time.Second)
			if frame == nil || frame.Code != tc.code || !strings.Contains(frame.Message, tc.want) || strings.Contains(frame.Message, "no hello") {
				t.Fatalf("error frame %+v, want fatal %d naming %q", frame, tc.code, tc.want)
			}
			if tc.tr != tcpRaw && status != int(tc.code) {
				t.Fatalf("close status %d, want %d", status, tc.code)
			}
		})
	}
}

// A device that sends nothing gets the error frame and then the close code,
// on WebSocket as on TCP (not a bare 1006).
func TestHelloTimeoutSendsErrorThenClose(t *testing.T) {
	e := newEnv(t, func(c *hub.Config) { c.HelloTimeout = 100 * time.Millisecond })
	for _, tr := range []transport{wsJSON, wsProto, tcpRaw, tcpTLS} {
		t.Run(string(tr), func(t *testing.T) {
			c := e.dial(tr)
			frame, status := c.end(10 * time.Second)
			if frame == nil || frame.Code != wire.CloseBadRequest || !strings.Contains(frame.Message, "no hello within") {
				t.Fatalf("error frame %+v, want fatal 4000 \"no hello within ...\"", frame)
			}
			if (tr == wsJSON || tr == wsProto) && status != int(wire.CloseBadRequest) {
				t.Fatalf("close status %d, want 4000", status)
			}
		})
	}
}
