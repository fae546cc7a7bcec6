package sse

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"strings"

	"github.com/syncpoint/syncpoint"
)

// An event id holds the position of every channel of the stream that has
// one, so that Last-Event-ID resumes all of them at once. It is opaque to
// clients; its form, base64url without padding, is:
//
//	version      1 byte, idVersion
//	count        uvarint
//	count times:
//	  channel    8 bytes: the first bytes of SHA-256 of the channel's name
//	  epoch      uvarint len<<1 | packed, then len bytes: the epoch, or,
//	             when packed, the bytes its lowercase hex spells
//	  seq        uvarint
//	tag          16 bytes of HMAC-SHA256 over the user, the device and all
//	             of the above, under the server's id key
//
// The tag binds an id to the user and device it was issued to, so an id
// cannot be edited, or replayed by another device, to move a position;
// and a position only ever applies to a channel the stream reads, which
// the token decides, so no id can open another channel.
const (
	idVersion = 1
	hashLen   = 8
	tagLen    = 16
	// MaxIDLen bounds a Last-Event-ID, in characters.
	MaxIDLen = 128 << 10
	// MaxIDPositions bounds the positions one id holds, and so the
	// persistent channels of one stream.
	MaxIDPositions = 4096
	tagLabel       = "syncpoint sse event id v1"
)

type chanHash [hashLen]byte

func hashChannel(name string) chanHash {
	sum := sha256.Sum256([]byte(name))
	return chanHash(sum[:hashLen])
}

// idPos is one position decoded from an id.
type idPos struct {
	channel chanHash
	pos     syncpoint.Position
}

// idCodec writes and checks the ids of one stream; it is not for
// concurrent use.
type idCodec struct {
	mac  hash.Hash
	head []byte // what the tag covers before the body: label, user, device
	body []byte
}

func newIDCodec(key []byte, user, device string) *idCodec {
	c := &idCodec{mac: hmac.New(sha256.New, key)}
	c.head = append(c.head, tagLabel...)
	c.head = append(c.head, 0)
	c.head = append(c.head, user...)
	c.head = append(c.head, 0)
	c.head = append(c.head, device...)
	c.head = append(c.head, 0)
	return c
}

func (c *idCodec) tag(body []byte) []byte {
	c.mac.Reset()
	c.mac.Write(c.head)
	c.mac.Write(body)
	var sum [sha256.Size]byte
	return c.mac.Sum(sum[:0])[:tagLen]
}

// appendID appends the id of positions (those with seq 0 are left out,
// as seq 0 is where a channel starts anyway).
func (c *idCodec) appendID(dst []byte, hashes []chanHash, positions []syncpoint.Position) []byte {
	b := append(c.body[:0], idVersion)
	n := 0
	for _, p := range positions {
		if p.Seq > 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i, p := range positions {
		if p.Seq == 0 {
			continue
		}
		b = append(b, hashes[i][:]...)
		b = appendEpoch(b, p.Epoch)
		b = binary.AppendUvarint(b, p.Seq)
	}
	b = append(b, c.tag(b)...)
	c.body = b
	return base64.RawURLEncoding.AppendEncode(dst, b)
}

func appendEpoch(b []byte, epoch string) []byte {
	if packable(epoch) {
		b = binary.AppendUvarint(b, uint64(len(epoch)/2)<<1|1)
		for i := 0; i < len(epoch); i += 2 {
			b = append(b, nibble(epoch[i])<<4|nibble(epoch[i+1]))
		}
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(epoch))<<1)
	return append(b, epoch...)
}

func nibble(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// packable reports whether epoch is lowercase hex of whole bytes, as the
// embedded store's epochs are, so it packs into half its length.
func packable(epoch string) bool {
	if len(epoch) == 0 || len(epoch)%2 != 0 {
		return false
	}
	for i := 0; i < len(epoch); i++ {
		if c := epoch[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

var (
	errMalformedID = syncpoint.Errorf(syncpoint.CodeMalformed, "Last-Event-ID is not an event id of this server")
	errForeignID   = syncpoint.Errorf(syncpoint.CodeForbidden, "Last-Event-ID was not issued to this device, or was altered")
)

// decodeID checks an id and returns its positions. Errors: CodeMalformed
// when it is not an id at all, CodeTooLarge past MaxIDLen, CodeForbidden
// when its tag does not hold for this user and device under this key.
func (c *idCodec) decodeID(id string) ([]idPos, error) {
	if len(id) > MaxIDLen {
		return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "Last-Event-ID is over %d characters", MaxIDLen)
	}
	if strings.ContainsAny(id, "\r\n") {
		// The decoder would skip them, and the id would pass for the one
		// without: each id has one spelling.
		return nil, errMalformedID
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(id)
	if err != nil || len(b) < 1+1+tagLen || b[0] != idVersion {
		return nil, errMalformedID
	}
	body, tag := b[:len(b)-tagLen], b[len(b)-tagLen:]
	// The tag first: what it does not cover is not parsed at all.
	if !hmac.Equal(tag, c.tag(body)) {
		return nil, errForeignID
	}
	rest := body[1:]
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > MaxIDPositions {
		return nil, errMalformedID
	}
	rest = rest[k:]
	out := make([]idPos, 0, n)
	seen := make(map[chanHash]bool, n)
	for range n {
		if len(rest) < hashLen {
			return nil, errMalformedID
		}
		var p idPos
		copy(p.channel[:], rest)
		rest = rest[hashLen:]
		l, k := binary.Uvarint(rest)
		if k <= 0 || l>>1 > uint64(len(rest)-k) {
			return nil, errMalformedID
		}
		rest = rest[k:]
		raw := rest[:l>>1]
		rest = rest[l>>1:]
		if l&1 == 1 {
			if len(raw) == 0 {
				return nil, errMalformedID
			}
			p.pos.Epoch = hex.EncodeToString(raw)
		} else {
			p.pos.Epoch = string(raw)
		}
		if p.pos.Seq, k = binary.Uvarint(rest); k <= 0 || p.pos.Seq == 0 || seen[p.channel] {
			return nil, errMalformedID
		}
		rest = rest[k:]
		seen[p.channel] = true
		out = append(out, p)
	}
	if len(rest) != 0 {
		return nil, errMalformedID
	}
	return out, nil
}
