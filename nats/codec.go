package nats

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/syncpoint/syncpoint"
)

// A message is a header and a fragment of one encoded batch (or event):
//
//	version   1 byte, messageVersion
//	kind      1 byte, kindEntries or kindEvent
//	flags     1 byte, flagFirst and/or flagLast
//	node      uvarint length + bytes: the origin node id
//	instance  8 bytes big-endian: random per Open, so a restarted node starts a new sequence
//	seq       uvarint, from 1: counts the origin's messages on both subjects
//	fragment  the rest
//
// A body that fits in one message has both flags; a larger one is cut into
// fragments with consecutive seqs. The body of entries is a uvarint count
// and the entries (see appendEntry); the body of an event is its JSON.
const (
	messageVersion = 1

	kindEntries = 1
	kindEvent   = 2

	flagFirst = 1 << 0
	flagLast  = 1 << 1

	// MaxNodeLen is the longest node id.
	MaxNodeLen = 128

	// maxHeaderLen bounds a header: version, kind, flags, node, instance, seq.
	maxHeaderLen = 3 + binary.MaxVarintLen64 + MaxNodeLen + 8 + binary.MaxVarintLen64

	// minEntryLen is the fewest bytes an encoded entry takes (every field a
	// zero length or a zero byte), so a count can be checked before any
	// allocation.
	minEntryLen = 15
)

// header is a message's header.
type header struct {
	kind     byte
	flags    byte
	node     string
	instance uint64
	seq      uint64
}

// errMalformed wraps every decode failure.
var errMalformed = errors.New("malformed broker message")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

func appendHeader(dst []byte, h header) []byte {
	dst = append(dst, messageVersion, h.kind, h.flags)
	dst = appendString(dst, h.node)
	dst = binary.BigEndian.AppendUint64(dst, h.instance)
	return binary.AppendUvarint(dst, h.seq)
}

// decodeHeader splits a message into its header and fragment. The fragment
// aliases b.
func decodeHeader(b []byte) (header, []byte, error) {
	var h header
	if len(b) < 3 {
		return h, nil, malformed("%d bytes is too short", len(b))
	}
	if b[0] != messageVersion {
		return h, nil, malformed("version %d; this node speaks %d", b[0], messageVersion)
	}
	h.kind, h.flags = b[1], b[2]
	if h.kind != kindEntries && h.kind != kindEvent {
		return h, nil, malformed("unknown kind %d", h.kind)
	}
	if h.flags&^(flagFirst|flagLast) != 0 {
		return h, nil, malformed("unknown flags %#x", h.flags)
	}
	d := decoder{b: b[3:]}
	h.node = d.string()
	h.instance = d.uint64()
	h.seq = d.uvarint()
	if d.err != nil {
		return h, nil, d.err
	}
	if h.node == "" || len(h.node) > MaxNodeLen {
		return h, nil, malformed("node id of %d bytes", len(h.node))
	}
	if h.seq == 0 {
		return h, nil, malformed("seq 0")
	}
	return h, d.b, nil
}

// appendEntries appends the body of a batch.
func appendEntries(dst []byte, entries []syncpoint.Entry) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(entries)))
	for i := range entries {
		dst = appendEntry(dst, &entries[i])
	}
	return dst
}

// appendEntry writes every field, so a remote subscriber sees the entry
// exactly as the publisher had it; times keep their nanoseconds.
func appendEntry(dst []byte, e *syncpoint.Entry) []byte {
	dst = appendString(dst, e.Channel.Biz)
	dst = appendString(dst, string(e.Channel.Target.Kind))
	dst = appendString(dst, e.Channel.Target.ID)
	dst = appendString(dst, e.Epoch)
	dst = binary.AppendUvarint(dst, e.Seq)
	dst = appendString(dst, string(e.Op))
	dst = appendString(dst, e.Key)
	dst = binary.AppendUvarint(dst, uint64(len(e.Data)))
	dst = append(dst, e.Data...)
	dst = appendTime(dst, e.CreatedAt)
	dst = appendTime(dst, e.ExpiresAt)
	dst = binary.AppendUvarint(dst, uint64(len(e.Conditions.Platforms)))
	for _, p := range e.Conditions.Platforms {
		dst = appendString(dst, p)
	}
	dst = appendString(dst, e.Conditions.MinAppVersion)
	dst = appendString(dst, e.Conditions.MaxAppVersion)
	dst = appendString(dst, e.Origin)
	return appendString(dst, e.IdempotencyKey)
}

// decodeEntries parses the body of a batch. Entry data aliases b, so b must
// not be reused.
func decodeEntries(b []byte) ([]syncpoint.Entry, error) {
	d := decoder{b: b}
	n := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if n > uint64(len(d.b)/minEntryLen) {
		return nil, malformed("%d entries cannot fit in %d bytes", n, len(d.b))
	}
	entries := make([]syncpoint.Entry, n)
	for i := range entries {
		e := &entries[i]
		e.Channel.Biz = d.string()
		e.Channel.Target.Kind = syncpoint.TargetKind(d.string())
		e.Channel.Target.ID = d.string()
		e.Epoch = d.string()
		e.Seq = d.uvarint()
		e.Op = syncpoint.Op(d.string())
		e.Key = d.string()
		if data := d.bytes(); len(data) > 0 {
			e.Data = data
		}
		e.CreatedAt = d.time()
		e.ExpiresAt = d.time()
		if np := d.uvarint(); np > 0 {
			if np > uint64(len(d.b)) {
				return nil, malformed("%d platforms cannot fit in %d bytes", np, len(d.b))
			}
			e.Conditions.Platforms = make([]string, np)
			for j := range e.Conditions.Platforms {
				e.Conditions.Platforms[j] = d.string()
			}
		}
		e.Conditions.MinAppVersion = d.string()
		e.Conditions.MaxAppVersion = d.string()
		e.Origin = d.string()
		e.IdempotencyKey = d.string()
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.b) != 0 {
		return nil, malformed("%d bytes after the last entry", len(d.b))
	}
	return entries, nil
}

func appendEvent(dst []byte, ev *syncpoint.Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return dst, fmt.Errorf("encode event: %w", err)
	}
	return append(dst, b...), nil
}

func decodeEvent(b []byte) (syncpoint.Event, error) {
	var ev syncpoint.Event
	if err := json.Unmarshal(b, &ev); err != nil {
		return syncpoint.Event{}, malformed("event: %v", err)
	}
	if ev.Kind == "" {
		return syncpoint.Event{}, malformed("event without a kind")
	}
	return ev, nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendTime writes 0 for the zero time (never expires), otherwise 1, the
// Unix seconds and the nanoseconds; the zone is not kept.
func appendTime(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

// decoder reads fields until the first error, which it keeps, so a parse
// checks once at the end of a record.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = malformed(format, args...)
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint64() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

// bytes returns a length-prefixed field, aliasing the input with its
// capacity cut, so appending to it cannot overwrite the next field.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("a field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return time.Time{}
	}
	set := d.b[0]
	d.b = d.b[1:]
	switch set {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail("bad time marker %d", set)
		return time.Time{}
	}
	sec := d.varint()
	nsec := d.uvarint()
	if d.err != nil {
		return time.Time{}
	}
	if nsec >= uint64(time.Second) {
		d.fail("%d nanoseconds", nsec)
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() {
		// Only the 0 marker means the zero time, so a round trip is exact.
		d.fail("the zero time with the set marker")
		return time.Time{}
	}
	return t
}
