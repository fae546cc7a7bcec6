package wire

import (
	"unicode/utf8"

	"github.com/syncpoint/syncpoint/internal/jsontext"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of syncpoint.proto that the fast paths read.
const (
	fieldFramePush     = 3
	fieldFrameAck      = 4
	fieldPushEntries   = 1
	fieldPushPositions = 2
	fieldAckPositions  = 1
)

// decodePushFast reads a push straight from the wire format, since the
// generic path allocates several objects per entry. Anything unusual gives
// false and goes to the generic path, the reference; FuzzDecodeProto holds
// the two to the same result.
func decodePushFast(b []byte) (*Frame, bool) {
	body, ok := frameBody(b, fieldFramePush)
	if !ok {
		return nil, false
	}
	d := pushDecoder{src: b}
	p := new(Push)
	count, entries := 0, 0
	for rest := body; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || typ != protowire.BytesType || (num != fieldPushEntries && num != fieldPushPositions) {
			return nil, false
		}
		rest = rest[n:]
		_, m := protowire.ConsumeBytes(rest)
		if m < 0 {
			return nil, false
		}
		rest = rest[m:]
		if count++; count > MaxFrameItems {
			return nil, false // the generic path reports it
		}
		if num == fieldPushEntries {
			entries++
		}
	}
	if entries > 0 {
		p.Entries = make([]Entry, 0, entries)
	}
	for rest := body; len(rest) > 0; {
		num, _, n := protowire.ConsumeTag(rest)
		msg, m := protowire.ConsumeBytes(rest[n:])
		rest = rest[n+m:]
		if num == fieldPushEntries {
			p.Entries = append(p.Entries, Entry{})
			if !d.entry(&p.Entries[len(p.Entries)-1], msg) {
				return nil, false
			}
			continue
		}
		var pos Position
		if !d.position(&pos, msg) {
			return nil, false
		}
		p.Positions = append(p.Positions, pos)
	}
	return &Frame{Push: p}, true
}

// decodeAckFast reads an ack, the frame devices send most, straight from
// the wire format, as decodePushFast reads a push; anything unusual gives
// false and goes to the generic path.
func decodeAckFast(b []byte) (*Frame, bool) {
	body, ok := frameBody(b, fieldFrameAck)
	if !ok {
		return nil, false
	}
	d := pushDecoder{src: b}
	a := new(Ack)
	for rest := body; len(rest) > 0; {
		num, typ, n := protowire.ConsumeTag(rest)
		if n < 0 || typ != protowire.BytesType || num != fieldAckPositions {
			return nil, false
		}
		msg, m := protowire.ConsumeBytes(rest[n:])
		if m < 0 {
			return nil, false
		}
		rest = rest[n+m:]
		if len(a.Positions) == MaxFrameItems {
			return nil, false // the generic path reports it
		}
		var pos Position
		if !d.position(&pos, msg) {
			return nil, false
		}
		a.Positions = append(a.Positions, pos)
	}
	return &Frame{Ack: a}, true
}

// frameBody returns the message of a frame that holds field and nothing
// else.
func frameBody(b []byte, field protowire.Number) ([]byte, bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != field || typ != protowire.BytesType {
		return nil, false
	}
	body, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return nil, false
	}
	return body, true
}

type pushDecoder struct {
	src   []byte // the whole frame
	owned []byte // a copy of src that data aliases, made on first use
	names interner
}

func (d *pushDecoder) entry(e *Entry, b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && (num == 2 || num == 6 || num == 7):
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			switch num {
			case 2:
				e.Seq = v
			case 6:
				e.CreatedAt = fromUnixMilli(int64(v))
			case 7:
				e.ExpiresAt = fromUnixMilli(int64(v))
			}
		case typ == protowire.BytesType && num >= 1 && num <= 8 && num != 2 && num != 6 && num != 7:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			if num == 5 {
				if len(v) == 0 {
					e.Data = nil
					continue
				}
				if !jsontext.Valid(v) {
					return false
				}
				e.Data = d.alias(jsontext.Trim(v))
				continue
			}
			if num == 3 {
				if op, ok := knownOp(v); ok {
					e.Op = op
					continue
				}
			}
			s, ok := d.str(v)
			if !ok {
				return false
			}
			switch num {
			case 1:
				e.Channel = s
			case 3:
				e.Op = s
			case 4:
				e.Key = s
			case 8:
				e.Origin = s
			}
		default:
			return false
		}
	}
	return true
}

func (d *pushDecoder) position(p *Position, b []byte) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case typ == protowire.VarintType && num == 3:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			p.Seq = v
		case typ == protowire.BytesType && (num == 1 || num == 2):
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return false
			}
			b = b[m:]
			s, ok := d.str(v)
			if !ok {
				return false
			}
			if num == 1 {
				p.Channel = s
			} else {
				p.Epoch = s
			}
		default:
			return false
		}
	}
	return true
}

// str returns v as a string; invalid UTF-8 is left to the generic path.
func (d *pushDecoder) str(v []byte) (string, bool) {
	if s, ok := d.names.lookup(v); ok {
		return s, true
	}
	if !utf8.Valid(v) {
		return "", false
	}
	return d.names.add(v), true
}

// alias returns the bytes of v, a sub-slice of src, from a private copy of
// src, so that the caller may reuse its buffer.
func (d *pushDecoder) alias(v []byte) []byte {
	if d.owned == nil {
		d.owned = make([]byte, len(d.src))
		copy(d.owned, d.src)
	}
	off := cap(d.src) - cap(v)
	end := off + len(v)
	return d.owned[off:end:end]
}

// knownOp returns the constant string of a known op without allocating.
func knownOp(b []byte) (string, bool) {
	switch string(b) {
	case "msg":
		return "msg", true
	case "put":
		return "put", true
	case "delete":
		return "delete", true
	}
	return "", false
}
