package wire

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// jsonReader is a strict pull parser over one JSON text: the frame grammar
// on top of jsontext's tokens. The first error sticks: every later call
// returns a zero value, so decoders check r.err once at the end.
type jsonReader struct {
	jsontext.Reader // StrictUTF8: strings may be copied into text frames
	err             error
	key             []byte // the member being decoded, for error messages

	items int // list elements decoded so far, against MaxFrameItems

	owned []byte // a copy of Data that raw values alias, made on first use
	names interner
}

func newJSONReader(b []byte) jsonReader {
	return jsonReader{Reader: jsontext.Reader{Data: b, StrictUTF8: true}}
}

// interner hands out strings for byte slices, reusing a recent equal one:
// channel and origin repeat across the entries of a push, and a fresh
// string each time would be an allocation per field.
type interner struct {
	slots [8]struct {
		raw []byte
		s   string
	}
	next int
}

// lookup returns a recent string equal to b, if there is one.
func (n *interner) lookup(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", true
	}
	for i := range n.slots {
		if c := &n.slots[i]; c.s != "" && string(c.raw) == string(b) {
			return c.s, true
		}
	}
	return "", false
}

// add returns string(b) and remembers it; b must stay unchanged while the
// interner is in use. Long strings are not kept, being unlikely to repeat.
func (n *interner) add(b []byte) string {
	s := string(b)
	if len(b) <= 128 {
		n.slots[n.next].raw, n.slots[n.next].s = b, s
		n.next = (n.next + 1) % len(n.slots)
	}
	return s
}

func (r *jsonReader) fail(format string, args ...any) {
	if r.err != nil {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if r.key != nil {
		msg = strconv.Quote(clip(string(r.key))) + ": " + msg
	}
	r.err = syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame at byte %d: %s", r.Pos, msg)
}

// peek returns the next byte after whitespace, 0 at the end or after an
// error.
func (r *jsonReader) peek() byte {
	if r.err != nil {
		return 0
	}
	return r.Peek()
}

// null consumes a null and reports whether there was one.
func (r *jsonReader) null() bool {
	return r.peek() == 'n' && r.Consume("null")
}

// object opens an object. It returns false, without an error, for null,
// which decoders read as an absent value.
func (r *jsonReader) object() bool {
	switch r.peek() {
	case '{':
		r.Pos++
		return true
	case 'n':
		if r.null() {
			return false
		}
	}
	r.fail("want an object")
	return false
}

// member reads the next member's key and its colon, or the closing brace
// (then it returns false). first is true before the first member.
func (r *jsonReader) member(first *bool) bool {
	c := r.peek()
	if r.err != nil {
		return false
	}
	if c == '}' {
		r.Pos++
		return false
	}
	if !*first {
		if c != ',' {
			r.fail("want , or } in an object")
			return false
		}
		r.Pos++
		c = r.peek()
	}
	*first = false
	if c != '"' {
		r.fail("want a member name")
		return false
	}
	k, ok := r.stringBytes()
	if !ok {
		return false
	}
	if r.peek() != ':' {
		r.fail("want : after a member name")
		return false
	}
	r.Pos++
	r.key = k
	return true
}

// array opens an array; like object, null gives false and no error.
func (r *jsonReader) array() bool {
	switch r.peek() {
	case '[':
		r.Pos++
		return true
	case 'n':
		if r.null() {
			return false
		}
	}
	r.fail("want an array")
	return false
}

// elem moves to the next element, or past the closing bracket (then it
// returns false).
func (r *jsonReader) elem(first *bool) bool {
	c := r.peek()
	if r.err != nil {
		return false
	}
	if c == ']' {
		r.Pos++
		return false
	}
	if !*first {
		if c != ',' {
			r.fail("want , or ] in an array")
			return false
		}
		r.Pos++
		if r.peek() == ']' {
			r.fail("want a value after ,")
			return false
		}
	}
	*first = false
	if r.Pos >= len(r.Data) {
		r.fail("unexpected end of input")
		return false
	}
	if r.items++; r.items > MaxFrameItems {
		if r.err == nil {
			r.err = tooManyItems()
		}
		return false
	}
	return true
}

// stringBytes reads a string and returns its contents unescaped. The result
// aliases Data when there was nothing to unescape.
func (r *jsonReader) stringBytes() ([]byte, bool) {
	start := r.Pos
	raw, plain, err := r.RawString()
	if err != nil {
		r.Pos = start
		r.fail("bad string")
		return nil, false
	}
	if !plain {
		return jsontext.Unquote(raw), true
	}
	return raw, true
}

// str reads a string value; null gives "".
func (r *jsonReader) str() string {
	switch r.peek() {
	case '"':
	case 'n':
		if r.null() {
			return ""
		}
		fallthrough
	default:
		r.fail("want a string")
		return ""
	}
	b, ok := r.stringBytes()
	if !ok {
		return ""
	}
	return r.intern(b)
}

// intern returns string(b), reusing a recent equal string.
func (r *jsonReader) intern(b []byte) string {
	if s, ok := r.names.lookup(b); ok {
		return s
	}
	return r.names.add(b)
}

// digits reads an unsigned JSON integer; fractions and exponents are a type
// error since every number in the protocol is an integer.
func (r *jsonReader) digits(what string) (uint64, bool) {
	b, start := r.Data, r.Pos
	var v uint64
	for r.Pos < len(b) && '0' <= b[r.Pos] && b[r.Pos] <= '9' {
		d := uint64(b[r.Pos] - '0')
		if v > (1<<64-1-d)/10 {
			r.fail("%s overflows", what)
			return 0, false
		}
		v = v*10 + d
		r.Pos++
	}
	n := r.Pos - start
	switch {
	case n == 0:
		r.fail("want %s", what)
		return 0, false
	case n > 1 && b[start] == '0':
		r.fail("leading zero in a number")
		return 0, false
	}
	if r.Pos < len(b) {
		switch b[r.Pos] {
		case '.', 'e', 'E':
			r.fail("want %s", what)
			return 0, false
		}
	}
	return v, true
}

func (r *jsonReader) uint64() uint64 {
	switch c := r.peek(); {
	case '0' <= c && c <= '9':
		v, _ := r.digits("an unsigned integer")
		return v
	case c == 'n' && r.null():
		return 0
	}
	r.fail("want an unsigned integer")
	return 0
}

func (r *jsonReader) uint32() uint32 {
	v := r.uint64()
	if v > maxUint32 {
		r.fail("%d is out of range", v)
		return 0
	}
	return uint32(v)
}

func (r *jsonReader) int64() int64 {
	c := r.peek()
	if c == 'n' && r.null() {
		return 0
	}
	neg := c == '-'
	if neg {
		r.Pos++
		c = r.peek()
		if c == 0 || c < '0' || c > '9' {
			r.fail("want an integer")
			return 0
		}
	} else if c < '0' || c > '9' {
		r.fail("want an integer")
		return 0
	}
	v, ok := r.digits("an integer")
	if !ok {
		return 0
	}
	if neg {
		if v > 1<<63 {
			r.fail("integer overflows")
			return 0
		}
		return -int64(v)
	}
	if v > 1<<63-1 {
		r.fail("integer overflows")
		return 0
	}
	return int64(v)
}

func (r *jsonReader) boolean() bool {
	switch r.peek() {
	case 't':
		if r.Consume("true") {
			return true
		}
	case 'f':
		if r.Consume("false") {
			return false
		}
	case 'n':
		if r.null() {
			return false
		}
	}
	r.fail("want true or false")
	return false
}

// raw reads any JSON value and returns its text, aliasing a private copy of
// the input so that the caller's buffer can be reused.
func (r *jsonReader) raw() []byte {
	r.Space()
	start := r.Pos
	if r.Skip(0) != nil {
		r.Pos = start
		r.fail("data is not valid JSON")
		return nil
	}
	if r.owned == nil {
		r.owned = bytes.Clone(r.Data)
	}
	return r.owned[start:r.Pos:r.Pos]
}

// skip reads past a value of a member this build does not know, checking
// that it is JSON.
func (r *jsonReader) skip() {
	r.Space()
	start := r.Pos
	if r.Skip(0) != nil {
		r.Pos = start
		r.fail("not valid JSON")
	}
}
