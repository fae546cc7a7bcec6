// Package jsontext holds the JSON reading and writing that the hot paths
// share: the wire codec (JSON frames) and the publish API (request bodies and
// responses) decode and encode JSON by hand for speed, and must agree on
// escaping and validation. It knows the grammar, not any schema: callers walk
// their own objects with a Reader and decide what each key means.
//
// What it reads is I-JSON (RFC 7493), not just JSON: a string with a lone
// surrogate escape or a number beyond float64's range is refused, since many
// languages cannot decode either, and syncpoint hands data on to them.
// Numbers with more precision than a float64 are accepted; underflow to zero
// too.
package jsontext

import (
	"strconv"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects, as encoding/json does,
// so hostile input cannot make a reader's stack grow without limit.
const MaxDepth = 10000

// SyntaxError says where a text stops being I-JSON. Offset is the index of
// the offending byte, or the length of the text when it ends in the middle
// of a value. Msg follows encoding/json's wording.
type SyntaxError struct {
	Offset int
	Msg    string
	// IJSON is set when the text is JSON but not I-JSON (a lone surrogate,
	// a number out of range): the API answers that as invalid content,
	// not as a body that does not parse.
	IJSON bool
}

// Error says where the text went wrong and how.
func (e *SyntaxError) Error() string {
	what := "invalid JSON"
	if e.IJSON {
		what = "not I-JSON (RFC 7493)"
	}
	return what + " at byte " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// endMsg is the Msg of a text that ends in the middle of a value.
const endMsg = "unexpected end of JSON input"

// errAt is the error for the byte at b[i] (or the end of b), which is not
// what the grammar allows there; what says where in the grammar that was.
// It returns the offset too, so that scanners can return its results as
// they are and keep no index alive across the call.
func errAt(b []byte, i int, what string) (int, error) {
	if i >= len(b) {
		return len(b), &SyntaxError{Offset: len(b), Msg: endMsg}
	}
	return i, &SyntaxError{Offset: i, Msg: "invalid character " + strconv.QuoteRune(rune(b[i])) + " " + what}
}

// Valid reports whether b is exactly one I-JSON value, with optional white
// space around it, in valid UTF-8. Unlike json.Valid it refuses invalid
// UTF-8 inside strings, lone surrogates and numbers out of float64's range:
// text that is copied through unread must be fit for a WebSocket text frame
// and for every client's decoder.
func Valid(b []byte) bool {
	r := Reader{Data: b, StrictUTF8: true}
	r.Space()
	if r.Skip(0) != nil {
		return false
	}
	r.Space()
	return r.Pos == len(b)
}

// Trim returns b without the JSON white space around it.
func Trim(b []byte) []byte {
	i, j := 0, len(b)
	for i < j && isSpace(b[i]) {
		i++
	}
	for j > i && isSpace(b[j-1]) {
		j--
	}
	return b[i:j]
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, as
// encoding/json does, so the output is always valid UTF-8 (WebSocket text
// frames require it). HTML characters are left alone.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
