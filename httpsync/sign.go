package httpsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"hash"
	"strings"
	"time"

	"github.com/syncpoint/syncpoint"
)

var zeroTime time.Time

// macLen is how much of an HMAC-SHA256 an ack key or cursor carries: 128
// bits, far beyond guessing, at half the length.
const macLen = 16

// The purposes a signature is made for, so that no ack key passes as a
// cursor or the other way round.
const (
	purposeAck    = "ack"
	purposeCursor = "cursor"
)

// signer makes and checks the signatures of one device's ack keys or
// cursors. It is not safe for concurrent use.
type signer struct {
	mac    hash.Hash
	prefix []byte
	sum    []byte
}

// newSigner binds signatures to purpose and device: a key made for one
// device fails the check of any other.
func newSigner(key []byte, purpose, device string) *signer {
	p := make([]byte, 0, len(purpose)+len(device)+2)
	p = append(append(append(p, purpose...), 0), device...)
	p = append(p, 0)
	return &signer{mac: hmac.New(sha256.New, key), prefix: p}
}

// sign returns the signature of payload.
func (s *signer) sign(payload []byte) []byte {
	s.mac.Reset()
	s.mac.Write(s.prefix)
	s.mac.Write(payload)
	s.sum = s.mac.Sum(s.sum[:0])
	return s.sum[:macLen]
}

// check reports whether sig is payload's signature, in constant time.
func (s *signer) check(payload, sig []byte) bool {
	return len(sig) == macLen && hmac.Equal(s.sign(payload), sig)
}

var b64 = base64.RawURLEncoding.Strict()

// decodeB64 decodes a cursor, ack key or session id. The decoder skips CR
// and LF even when strict, so a text with them in it would pass for the one
// without: refuse it, so that each value this server signs has exactly one
// spelling.
func decodeB64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, base64.CorruptInputError(strings.IndexAny(s, "\r\n"))
	}
	return b64.DecodeString(s)
}

// appendStr appends a length-prefixed string.
func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// reader takes apart what appendStr and binary.AppendUvarint built; the
// first failure sticks.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) uvarint() uint64 {
	if !r.ok {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.ok = false
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) str(max int) string {
	n := r.uvarint()
	if !r.ok || n > uint64(max) || n > uint64(len(r.b)) {
		r.ok = false
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// position is a channel and a place in it, as an ack key or a cursor
// names it.
type position struct {
	Channel syncpoint.Channel
	syncpoint.Position
}

// maxEpochLen bounds an epoch inside a key or cursor; the stores make
// them far shorter.
const maxEpochLen = 64

// maxChannelLen is the longest "biz/target" there is.
const maxChannelLen = syncpoint.MaxBizNameLen + 1 + len("device:") + syncpoint.MaxIDLen

func (r *reader) position() position {
	name := r.str(maxChannelLen)
	epoch := r.str(maxEpochLen)
	seq := r.uvarint()
	if !r.ok {
		return position{}
	}
	ch, err := syncpoint.ParseChannel(name)
	if err != nil {
		r.ok = false
		return position{}
	}
	return position{Channel: ch, Position: syncpoint.Position{Epoch: epoch, Seq: seq}}
}

func appendPosition(b []byte, p position) []byte {
	b = appendStr(b, p.Channel.String())
	b = appendStr(b, p.Epoch)
	return binary.AppendUvarint(b, p.Seq)
}
