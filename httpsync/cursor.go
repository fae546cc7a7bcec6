package httpsync

import (
	"encoding/binary"
	"slices"
	"strings"

	"github.com/syncpoint/syncpoint"
)

// A one-shot cursor ("last_synced") is where a device stands in each of
// its channels: (epoch, seq) per channel, never a clock. It is signed for
// the device, so a cursor of another device, or one altered, is refused
// rather than trusted; and even a good cursor only ever moves the device
// through channels its token reads, checked on every request.
//
// Layout before base64url (unpadded): a version byte (1), the number of
// channels as a uvarint, each channel as a length-prefixed name, a
// length-prefixed epoch and a uvarint seq, in channel order, then the
// first 16 bytes of HMAC-SHA256(key, "cursor" 0 device 0 everything
// before).
const cursorVersion = 1

// MaxCursorChannels bounds the channels one cursor holds.
const MaxCursorChannels = 4096

// maxCursorLen bounds a cursor's text before it is decoded.
const maxCursorLen = 4 * (1 + 3 + MaxCursorChannels*(2+maxChannelLen+1+maxEpochLen+10) + macLen) / 3

// encodeCursor signs the positions for device. They are sorted by channel
// first, so equal cursors are equal text.
func encodeCursor(key []byte, device string, ps []position) string {
	ps = slices.Clone(ps)
	slices.SortFunc(ps, func(a, b position) int { return strings.Compare(a.Channel.String(), b.Channel.String()) })
	b := []byte{cursorVersion}
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = appendPosition(b, p)
	}
	b = append(b, newSigner(key, purposeCursor, device).sign(b)...)
	return b64.EncodeToString(b)
}

// decodeCursor checks a cursor and returns its positions. Anything this
// server did not make for this device is CodeInvalidCursor.
func decodeCursor(key []byte, device, text string) ([]position, error) {
	bad := func(why string) ([]position, error) {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalidCursor, "last_synced: %s; send the cursor of this device's last answer as it came, or none to start over", why)
	}
	if len(text) > maxCursorLen {
		return bad("too long to be a cursor")
	}
	raw, err := decodeB64(text)
	if err != nil || len(raw) < 1+macLen {
		return bad("not a cursor")
	}
	if raw[0] != cursorVersion {
		return bad("not a cursor of this server's version")
	}
	body, sig := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if !newSigner(key, purposeCursor, device).check(body, sig) {
		return bad("not issued to this device by this server")
	}
	r := reader{b: body[1:], ok: true}
	n := r.uvarint()
	if !r.ok || n > MaxCursorChannels {
		return bad("not a cursor")
	}
	ps := make([]position, 0, n)
	seen := make(map[syncpoint.Channel]bool, n)
	for range n {
		p := r.position()
		if !r.ok || seen[p.Channel] {
			return bad("not a cursor")
		}
		seen[p.Channel] = true
		ps = append(ps, p)
	}
	if len(r.b) != 0 {
		return bad("not a cursor")
	}
	return ps, nil
}
