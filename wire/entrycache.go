package wire

import (
	"bytes"
	"sync/atomic"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// EntryCache keeps an entry's encodings once made. A live entry goes to
// every session that reads its channel: with a cache, the first session to
// send it encodes and checks it, and the others copy its bytes. A cache
// belongs to one entry as sent on one channel; the entry must not change
// once a cache is set.
type EntryCache struct {
	json, proto atomic.Pointer[[]byte]
}

func (c *EntryCache) load(p *atomic.Pointer[[]byte]) []byte {
	if b := p.Load(); b != nil {
		return *b
	}
	return nil
}

func (c *EntryCache) store(p *atomic.Pointer[[]byte], b []byte) {
	b = bytes.Clone(b)
	p.Store(&b)
}

// Field numbers of Entry and Position in syncpoint.proto.
const (
	fieldEntryChannel = iota + 1
	fieldEntrySeq
	fieldEntryOp
	fieldEntryKey
	fieldEntryData
	fieldEntryCreatedAt
	fieldEntryExpiresAt
	fieldEntryOrigin
)

const (
	fieldPositionChannel = iota + 1
	fieldPositionEpoch
	fieldPositionSeq
)

// appendPushProto encodes a frame holding only p straight into the wire
// format, as the generated code would (fields in number order, zero values
// left out), with each entry taken from its cache when it has one. The
// generic path builds a message per entry and checks every entry's data
// again for every session; TestPushProtoMatchesGenerated holds the two to
// the same bytes.
func appendPushProto(dst []byte, p *Push) ([]byte, error) {
	// The first pass checks the entries, fills their caches and sizes the
	// push, which protobuf writes before its body; the second writes.
	size := 0
	for i := range p.Entries {
		e := &p.Entries[i]
		n := 0
		if b := e.cached(); b != nil {
			n = len(b)
		} else if err := checkEntry(e); err != nil {
			return dst, err
		} else if e.Cache != nil {
			b := appendEntryProto(nil, e)
			e.Cache.store(&e.Cache.proto, b)
			n = len(b)
		} else {
			n = entryProtoSize(e)
		}
		size += protowire.SizeTag(fieldPushEntries) + protowire.SizeBytes(n)
	}
	for i := range p.Positions {
		q := &p.Positions[i]
		if !utf8.ValidString(q.Channel) || !utf8.ValidString(q.Epoch) {
			return dst, encodeErr("a string is not valid UTF-8")
		}
		size += protowire.SizeTag(fieldPushPositions) + protowire.SizeBytes(positionProtoSize(q))
	}
	dst = protowire.AppendTag(dst, fieldFramePush, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(size))
	for i := range p.Entries {
		e := &p.Entries[i]
		dst = protowire.AppendTag(dst, fieldPushEntries, protowire.BytesType)
		if b := e.cached(); b != nil {
			dst = protowire.AppendBytes(dst, b)
			continue
		}
		dst = protowire.AppendVarint(dst, uint64(entryProtoSize(e)))
		dst = appendEntryProto(dst, e)
	}
	for i := range p.Positions {
		q := &p.Positions[i]
		dst = protowire.AppendTag(dst, fieldPushPositions, protowire.BytesType)
		dst = protowire.AppendVarint(dst, uint64(positionProtoSize(q)))
		dst = appendString(dst, fieldPositionChannel, q.Channel)
		dst = appendString(dst, fieldPositionEpoch, q.Epoch)
		dst = appendUint(dst, fieldPositionSeq, q.Seq)
	}
	return dst, nil
}

// cached is the entry's protobuf encoding from its cache, or nil.
func (e *Entry) cached() []byte {
	if e.Cache == nil {
		return nil
	}
	return e.Cache.load(&e.Cache.proto)
}

func positionProtoSize(q *Position) int {
	return stringSize(fieldPositionChannel, q.Channel) + stringSize(fieldPositionEpoch, q.Epoch) + uintSize(fieldPositionSeq, q.Seq)
}

// checkEntry checks what the generic path checks of an entry: its
// strings are UTF-8 and its data is JSON.
func checkEntry(e *Entry) error {
	if len(e.Data) > 0 && !jsontext.Valid(e.Data) {
		return encodeErr("entry %s seq %d: data is not valid JSON", e.Channel, e.Seq)
	}
	if !utf8.ValidString(e.Channel) || !utf8.ValidString(e.Op) || !utf8.ValidString(e.Key) || !utf8.ValidString(e.Origin) {
		return encodeErr("a string is not valid UTF-8")
	}
	return nil
}

// appendEntryProto appends the body of an Entry message that checkEntry
// passed.
func appendEntryProto(dst []byte, e *Entry) []byte {
	dst = appendString(dst, fieldEntryChannel, e.Channel)
	dst = appendUint(dst, fieldEntrySeq, e.Seq)
	dst = appendString(dst, fieldEntryOp, e.Op)
	dst = appendString(dst, fieldEntryKey, e.Key)
	if len(e.Data) > 0 {
		dst = protowire.AppendTag(dst, fieldEntryData, protowire.BytesType)
		dst = protowire.AppendBytes(dst, e.Data)
	}
	dst = appendUint(dst, fieldEntryCreatedAt, uint64(unixMilli(e.CreatedAt)))
	dst = appendUint(dst, fieldEntryExpiresAt, uint64(unixMilli(e.ExpiresAt)))
	return appendString(dst, fieldEntryOrigin, e.Origin)
}

// entryProtoSize is the length of appendEntryProto's output.
func entryProtoSize(e *Entry) int {
	n := stringSize(fieldEntryChannel, e.Channel) + uintSize(fieldEntrySeq, e.Seq) +
		stringSize(fieldEntryOp, e.Op) + stringSize(fieldEntryKey, e.Key) +
		uintSize(fieldEntryCreatedAt, uint64(unixMilli(e.CreatedAt))) +
		uintSize(fieldEntryExpiresAt, uint64(unixMilli(e.ExpiresAt))) + stringSize(fieldEntryOrigin, e.Origin)
	if len(e.Data) > 0 {
		n += protowire.SizeTag(fieldEntryData) + protowire.SizeBytes(len(e.Data))
	}
	return n
}

func appendString(dst []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

// appendUint writes a uint64 or int64 field; an int64 is its two's
// complement, as protobuf's varint encoding has it.
func appendUint(dst []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, num, protowire.VarintType)
	return protowire.AppendVarint(dst, v)
}

func stringSize(num protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(s))
}

func uintSize(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}
