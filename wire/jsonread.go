package wire

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
)

// maxDepth bounds nesting in data, as encoding/json does, so hostile input
// cannot make the scanner's stack grow without limit.
const maxDepth = 10000

// jsonReader is a strict pull parser over one JSON text. The first error
// sticks: every later call returns a zero value, so decoders check r.err
// once at the end.
type jsonReader struct {
	b   []byte
	i   int
	err error
	key []byte // the member being decoded, for error messages

	items int // list elements decoded so far, against MaxFrameItems

	owned []byte // a copy of b that raw values alias, made on first use
	names interner
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
	r.err = syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame at byte %d: %s", r.i, msg)
}

func (r *jsonReader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

// peek returns the next byte after whitespace, 0 at the end.
func (r *jsonReader) peek() byte {
	r.ws()
	if r.err != nil || r.i >= len(r.b) {
		return 0
	}
	return r.b[r.i]
}

// null consumes a null and reports whether there was one.
func (r *jsonReader) null() bool {
	if r.peek() == 'n' && bytes.HasPrefix(r.b[r.i:], []byte("null")) {
		r.i += 4
		return true
	}
	return false
}

// object opens an object. It returns false, without an error, for null,
// which decoders read as an absent value.
func (r *jsonReader) object() bool {
	switch r.peek() {
	case '{':
		r.i++
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
		r.i++
		return false
	}
	if !*first {
		if c != ',' {
			r.fail("want , or } in an object")
			return false
		}
		r.i++
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
	r.i++
	r.key = k
	return true
}

// array opens an array; like object, null gives false and no error.
func (r *jsonReader) array() bool {
	switch r.peek() {
	case '[':
		r.i++
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
		r.i++
		return false
	}
	if !*first {
		if c != ',' {
			r.fail("want , or ] in an array")
			return false
		}
		r.i++
		if r.peek() == ']' {
			r.fail("want a value after ,")
			return false
		}
	}
	*first = false
	if r.i >= len(r.b) {
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
// aliases r.b when there was nothing to unescape.
func (r *jsonReader) stringBytes() ([]byte, bool) {
	start := r.i + 1
	end, esc := scanString(r.b, r.i)
	if end < 0 {
		r.fail("bad string")
		return nil, false
	}
	r.i = end
	if !esc {
		return r.b[start : end-1], true
	}
	return unescape(r.b[start : end-1]), true
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
	start := r.i
	var v uint64
	for r.i < len(r.b) && '0' <= r.b[r.i] && r.b[r.i] <= '9' {
		d := uint64(r.b[r.i] - '0')
		if v > (1<<64-1-d)/10 {
			r.fail("%s overflows", what)
			return 0, false
		}
		v = v*10 + d
		r.i++
	}
	n := r.i - start
	switch {
	case n == 0:
		r.fail("want %s", what)
		return 0, false
	case n > 1 && r.b[start] == '0':
		r.fail("leading zero in a number")
		return 0, false
	}
	if r.i < len(r.b) {
		switch r.b[r.i] {
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
		r.i++
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
		if bytes.HasPrefix(r.b[r.i:], []byte("true")) {
			r.i += 4
			return true
		}
	case 'f':
		if bytes.HasPrefix(r.b[r.i:], []byte("false")) {
			r.i += 5
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
	r.ws()
	start := r.i
	end := scanValue(r.b, r.i)
	if end < 0 {
		r.fail("data is not valid JSON")
		return nil
	}
	r.i = end
	if r.owned == nil {
		r.owned = bytes.Clone(r.b)
	}
	return r.owned[start:end:end]
}

// skip reads past a value of a member this build does not know, checking
// that it is JSON.
func (r *jsonReader) skip() {
	r.ws()
	end := scanValue(r.b, r.i)
	if end < 0 {
		r.fail("not valid JSON")
		return
	}
	r.i = end
}

// validJSON reports whether b is exactly one JSON value, with optional
// white space around it, in valid UTF-8.
func validJSON(b []byte) bool {
	i := skipWS(b, 0)
	end := scanValue(b, i)
	return end >= 0 && skipWS(b, end) == len(b)
}

// trimJSON returns b without surrounding white space, so that data compares
// equal whichever codec carried it.
func trimJSON(b []byte) []byte {
	i := skipWS(b, 0)
	j := len(b)
	for j > i {
		switch b[j-1] {
		case ' ', '\t', '\n', '\r':
			j--
			continue
		}
		break
	}
	return b[i:j]
}

func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanValue checks the JSON value at b[i] and returns the index after it, or
// -1. An explicit stack instead of recursion makes depth cost a byte each.
func scanValue(b []byte, i int) int {
	var buf [64]byte
	stack := buf[:0] // '{' or '[' per open container
	for {
		// A value starts at i.
		if i >= len(b) {
			return -1
		}
		switch c := b[i]; {
		case c == '{' || c == '[':
			if len(stack) >= maxDepth {
				return -1
			}
			i = skipWS(b, i+1)
			if i >= len(b) {
				return -1
			}
			if (c == '{' && b[i] == '}') || (c == '[' && b[i] == ']') {
				i++
				break
			}
			stack = append(stack, c)
			if c == '{' {
				if i = scanKey(b, i); i < 0 {
					return -1
				}
			}
			continue
		case c == '"':
			if i, _ = scanString(b, i); i < 0 {
				return -1
			}
		case c == '-' || ('0' <= c && c <= '9'):
			if i = scanNumber(b, i); i < 0 {
				return -1
			}
		case c == 't':
			if !bytes.HasPrefix(b[i:], []byte("true")) {
				return -1
			}
			i += 4
		case c == 'f':
			if !bytes.HasPrefix(b[i:], []byte("false")) {
				return -1
			}
			i += 5
		case c == 'n':
			if !bytes.HasPrefix(b[i:], []byte("null")) {
				return -1
			}
			i += 4
		default:
			return -1
		}
		// A value ended at i: close containers until one continues.
		for {
			if len(stack) == 0 {
				return i
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return -1
			}
			top := stack[len(stack)-1]
			if b[i] == ',' {
				i = skipWS(b, i+1)
				if top == '{' {
					if i = scanKey(b, i); i < 0 {
						return -1
					}
				}
				break
			}
			if (top == '{' && b[i] != '}') || (top == '[' && b[i] != ']') {
				return -1
			}
			i++
			stack = stack[:len(stack)-1]
		}
	}
}

// scanKey checks `"name" :` at b[i] and returns the index of the value
// after it (white space skipped), or -1.
func scanKey(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	i, _ = scanString(b, i)
	if i < 0 {
		return -1
	}
	i = skipWS(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipWS(b, i+1)
}

// scanString checks the string whose quote is at b[i] and returns the index
// after its closing quote, or -1, and whether it holds escapes. Raw bytes
// must be valid UTF-8 and not control characters.
func scanString(b []byte, i int) (int, bool) {
	esc := false
	i++
	for {
		// Most bytes are printable ASCII: test them with one condition.
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return -1, esc
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				return -1, esc
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return -1, esc
				}
				i += 6
			default:
				return -1, esc
			}
		case c < 0x20:
			return -1, esc
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return -1, esc
			}
			i += size
		}
	}
}

func isHex4(b []byte) bool {
	for _, c := range b[:4] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// scanNumber checks the number at b[i] against JSON's grammar and returns
// the index after it, or -1.
func scanNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return -1
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// unescape decodes the body of a string that scanString accepted. Lone
// surrogates become U+FFFD, as in encoding/json.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(s[i+2:]))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out
}
