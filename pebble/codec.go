package pebble

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/syncpoint/syncpoint"
)

// entryVersion is the first byte of every stored entry, so the format can
// change without a migration of old rows.
const entryVersion = 1

var errCorrupt = errors.New("corrupt record")

// encodeEntry writes the fields of e that the key does not already hold
// (channel and seq).
func encodeEntry(b []byte, e *syncpoint.Entry) []byte {
	b = append(b, entryVersion)
	b = appendVarStr(b, string(e.Op))
	b = appendVarStr(b, e.Key)
	b = appendVarStr(b, string(e.Data))
	b = appendVarTime(b, e.CreatedAt)
	b = appendVarTime(b, e.ExpiresAt)
	b = binary.AppendUvarint(b, uint64(len(e.Conditions.Platforms)))
	for _, p := range e.Conditions.Platforms {
		b = appendVarStr(b, p)
	}
	b = appendVarStr(b, e.Conditions.MinAppVersion)
	b = appendVarStr(b, e.Conditions.MaxAppVersion)
	b = appendVarStr(b, e.Origin)
	return appendVarStr(b, e.IdempotencyKey)
}

// decodeEntry is the inverse of encodeEntry. It never panics on bad input.
func decodeEntry(b []byte, e *syncpoint.Entry) error { return decodeEntryIn(b, e, nil) }

// decodeEntryIn is decodeEntry copying the data into a (nil: a slice of its
// own).
func decodeEntryIn(b []byte, e *syncpoint.Entry, a *arena) error {
	r := reader{b: b}
	if v := r.byte(); v != entryVersion {
		return errCorrupt
	}
	e.Op = syncpoint.Op(r.common())
	e.Key = r.str()
	if data := r.bytes(); len(data) > 0 {
		e.Data = a.copy(data)
	} else {
		e.Data = nil
	}
	e.CreatedAt = r.time()
	e.ExpiresAt = r.time()
	n := r.uvarint()
	if n > uint64(len(r.b)) { // each platform takes at least one byte
		return errCorrupt
	}
	e.Conditions.Platforms = nil
	if n > 0 {
		e.Conditions.Platforms = make([]string, n)
		for i := range e.Conditions.Platforms {
			e.Conditions.Platforms[i] = r.str()
		}
	}
	e.Conditions.MinAppVersion = r.str()
	e.Conditions.MaxAppVersion = r.str()
	e.Origin = r.common()
	e.IdempotencyKey = r.str()
	if r.bad || len(r.b) != 0 {
		return errCorrupt
	}
	return nil
}

// A key index row holds the seq of the key's newest put or delete, then (in
// rows written from format 4 on) 'p' or 'd' and the entry's expiry. Readers
// of the seq alone (keySeq, the sweep) need only the leading uvarint.
func encodeKeyRow(seq uint64, op syncpoint.Op, expires time.Time) []byte {
	b := binary.AppendUvarint(make([]byte, 0, 16), seq)
	if op == syncpoint.OpPut {
		b = append(b, 'p')
	} else {
		b = append(b, 'd')
	}
	return appendVarTime(b, expires)
}

// keyRow is a decoded key index row; full is false for a row of an older
// format, which holds only the seq.
type keyRow struct {
	seq     uint64
	put     bool
	expires time.Time
	full    bool
}

func decodeKeyRow(b []byte) (keyRow, error) {
	seq, n := binary.Uvarint(b)
	if n <= 0 {
		return keyRow{}, errCorrupt
	}
	if n == len(b) {
		return keyRow{seq: seq}, nil
	}
	r := reader{b: b[n:]}
	op := r.byte()
	row := keyRow{seq: seq, put: op == 'p', expires: r.time(), full: true}
	if r.bad || len(r.b) != 0 || op != 'p' && op != 'd' {
		return keyRow{}, errCorrupt
	}
	return row, nil
}

// live reports whether the row's entry is a put that has not expired at now.
func (k keyRow) live(now time.Time) bool {
	return k.put && (k.expires.IsZero() || now.Before(k.expires))
}

// encodeToken writes a token's fields but its id, which the key holds.
func encodeToken(t *syncpoint.AccessToken) []byte {
	b := []byte{tokenVersion}
	b = appendVarStr(b, string(t.Hash))
	b = appendVarStr(b, t.User)
	b = binary.AppendUvarint(b, uint64(len(t.Groups)))
	for _, g := range t.Groups {
		b = appendVarStr(b, g)
	}
	b = appendVarStr(b, t.Label)
	b = appendVarTime(b, t.CreatedAt)
	return appendVarTime(b, t.ExpiresAt)
}

const tokenVersion = 1

func decodeToken(id string, b []byte) (syncpoint.AccessToken, error) {
	r := reader{b: b}
	if r.byte() != tokenVersion {
		return syncpoint.AccessToken{}, errCorrupt
	}
	t := syncpoint.AccessToken{ID: id, Hash: []byte(r.str()), User: r.str()}
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return syncpoint.AccessToken{}, errCorrupt
	}
	t.Groups = make([]string, n)
	for i := range t.Groups {
		t.Groups[i] = r.str()
	}
	t.Label = r.str()
	t.CreatedAt = r.time()
	t.ExpiresAt = r.time()
	if r.bad || len(r.b) != 0 {
		return syncpoint.AccessToken{}, errCorrupt
	}
	return t, nil
}

// meta is a channel's persisted state. An empty epoch means the channel
// does not exist.
type meta struct {
	Epoch    string
	FirstSeq uint64
	LastSeq  uint64
}

func encodeMeta(m meta) []byte {
	b := appendVarStr(nil, m.Epoch)
	b = binary.AppendUvarint(b, m.FirstSeq)
	return binary.AppendUvarint(b, m.LastSeq)
}

func decodeMeta(b []byte) (meta, error) {
	r := reader{b: b}
	m := meta{Epoch: r.str(), FirstSeq: r.uvarint(), LastSeq: r.uvarint()}
	if r.bad || len(r.b) != 0 || m.Epoch == "" || m.FirstSeq == 0 || m.FirstSeq > m.LastSeq+1 {
		return meta{}, errCorrupt
	}
	return m, nil
}

// An idempotency key row holds the original seq, when the key may be
// forgotten, and the hash of the content it was used for; rows of format 1
// and 2 stores end before the hash.
func encodeIdem(seq uint64, deadline time.Time, hash []byte) []byte {
	b := binary.AppendUvarint(nil, seq)
	return append(appendTime(b, deadline), hash...)
}

func decodeIdem(b []byte) (seq uint64, deadline time.Time, hash []byte, err error) {
	seq, n := binary.Uvarint(b)
	if n <= 0 || len(b)-n < timeLen {
		return 0, time.Time{}, nil, errCorrupt
	}
	return seq, readTime(b[n:]), b[n+timeLen:], nil
}

func encodePosition(p syncpoint.Position, updated time.Time) []byte {
	b := appendVarStr(nil, p.Epoch)
	b = binary.AppendUvarint(b, p.Seq)
	return appendVarTime(b, updated)
}

func decodePosition(b []byte) (syncpoint.Position, time.Time, error) {
	r := reader{b: b}
	p := syncpoint.Position{Epoch: r.str(), Seq: r.uvarint()}
	t := r.time()
	if r.bad || len(r.b) != 0 {
		return syncpoint.Position{}, time.Time{}, errCorrupt
	}
	return p, t, nil
}

// Blob rows: a zero expiry means the blob never expires.
func encodeBlob(value []byte, expires time.Time) []byte {
	return append(appendVarTime(nil, expires), value...)
}

func decodeBlob(b []byte) ([]byte, time.Time, error) {
	r := reader{b: b}
	t := r.time()
	if r.bad {
		return nil, time.Time{}, errCorrupt
	}
	return r.b, t, nil
}

func appendVarStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendVarTime writes 0 for the zero time, else 1, seconds and nanoseconds,
// so that a zero time decodes as zero.
func appendVarTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// reader decodes from b; after the first error it sets bad and returns
// zero values, so a decoder checks once at the end.
type reader struct {
	b   []byte
	bad bool
}

// arena hands out copies of small byte slices from shared chunks: a page
// of entries read together is used and dropped together, and a catch-up
// would otherwise make one allocation for each entry's data. A chunk lives
// while any entry of it does.
type arena struct{ buf []byte }

const (
	arenaChunk = 16 << 10
	arenaMax   = 1 << 10 // bigger data gets a slice of its own
)

func (a *arena) copy(b []byte) []byte {
	if a == nil || len(b) > arenaMax {
		return append([]byte(nil), b...)
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		// Small first, as most reads are a few entries; a catch-up's page
		// soon has full chunks.
		a.buf = make([]byte, 0, max(min(2*cap(a.buf), arenaChunk), 512, len(b)))
	}
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)] // capped: an append cannot reach the next entry's bytes
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) str() string { return string(r.bytes()) }

// common is str for fields that nearly always hold one of a few values (op,
// origin): a catch-up decodes millions of entries, and these need not each
// allocate a copy.
func (r *reader) common() string {
	b := r.bytes()
	switch string(b) {
	case "msg":
		return "msg"
	case "put":
		return "put"
	case "delete":
		return "delete"
	case syncpoint.OriginAPI:
		return syncpoint.OriginAPI
	}
	return string(b)
}

func (r *reader) time() time.Time {
	switch r.byte() {
	case 0:
		return time.Time{}
	case 1:
		sec := r.varint()
		nsec := r.uvarint()
		if nsec >= 1e9 {
			r.bad = true
			return time.Time{}
		}
		return time.Unix(sec, int64(nsec)).UTC()
	}
	r.bad = true
	return time.Time{}
}
