package httpsync

import (
	"github.com/syncpoint/syncpoint"
)

// An ack key names one delivered item: its channel, the channel's epoch
// and the entry's seq, signed for the device it was delivered to. It is
// deterministic, so an item delivered again in a later session has the same
// key, and an ack of either counts.
//
// Layout before base64url (unpadded): a version byte (1), the channel and
// the epoch as uvarint-length-prefixed strings, the seq as a uvarint, then
// the first 16 bytes of HMAC-SHA256(key, "ack" 0 device 0 everything
// before).
const ackKeyVersion = 1

// maxAckKeyLen bounds an ack key's text before it is decoded.
const maxAckKeyLen = 4 * (1 + 2 + maxChannelLen + 1 + maxEpochLen + 10 + macLen) / 3

// ackKeys makes the ack keys of one device.
type ackKeys struct {
	s   *signer
	buf []byte
}

func newAckKeys(key []byte, device string) *ackKeys {
	return &ackKeys{s: newSigner(key, purposeAck, device)}
}

// make returns the ack key of p.
func (a *ackKeys) make(p position) string {
	a.buf = appendPosition(append(a.buf[:0], ackKeyVersion), p)
	a.buf = append(a.buf, a.s.sign(a.buf)...)
	return b64.EncodeToString(a.buf)
}

// parse checks an ack key and returns what it names. Anything this server
// did not make for this device is CodeInvalidAckKey.
func (a *ackKeys) parse(key string) (position, error) {
	bad := func() (position, error) {
		return position{}, syncpoint.Errorf(syncpoint.CodeInvalidAckKey, "ack key %q was not issued to this device by this server", clip(key))
	}
	if len(key) == 0 || len(key) > maxAckKeyLen {
		return bad()
	}
	raw, err := decodeB64(key)
	if err != nil || len(raw) < 1+macLen || raw[0] != ackKeyVersion {
		return bad()
	}
	body, sig := raw[:len(raw)-macLen], raw[len(raw)-macLen:]
	if !a.s.check(body, sig) {
		return bad()
	}
	r := reader{b: body[1:], ok: true}
	p := r.position()
	if !r.ok || len(r.b) != 0 || p.Seq == 0 {
		return bad()
	}
	return p, nil
}
