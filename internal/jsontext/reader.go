package jsontext

import (
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// Reader reads one JSON text in place, a token at a time, so that the caller
// can walk its own schema. A failed method returns a *SyntaxError and leaves
// Pos unspecified: a caller that reports its own position saves Pos first.
type Reader struct {
	Data []byte
	Pos  int
	// StrictUTF8 makes invalid UTF-8 inside a string a syntax error. Without
	// it the string is accepted and Unquote turns the bad bytes into U+FFFD,
	// as encoding/json does.
	StrictUTF8 bool
}

// Space moves past white space.
func (r *Reader) Space() {
	i := r.Pos
	for i < len(r.Data) && isSpace(r.Data[i]) {
		i++
	}
	r.Pos = i
}

// Peek moves past white space and returns the next byte, or 0 at the end.
func (r *Reader) Peek() byte {
	r.Space()
	if r.Pos >= len(r.Data) {
		return 0
	}
	return r.Data[r.Pos]
}

// Consume moves past lit if the text continues with it, and reports whether
// it did; it never fails. It suits literals that are only one choice of
// several, such as null where a string may stand.
func (r *Reader) Consume(lit string) bool {
	if len(r.Data)-r.Pos >= len(lit) && string(r.Data[r.Pos:r.Pos+len(lit)]) == lit {
		r.Pos += len(lit)
		return true
	}
	return false
}

// Literal moves past lit (true, false or null), failing at the first byte
// that differs.
func (r *Reader) Literal(lit string) error {
	end, err := scanLiteral(r.Data, r.Pos, lit)
	r.Pos = end
	return err
}

// Unexpected is the error for the byte at Pos, or for the end of the text;
// what says where in the grammar it was, in encoding/json's words ("after
// object key").
func (r *Reader) Unexpected(what string) error {
	_, err := errAt(r.Data, r.Pos, what)
	return err
}

// Kind names the JSON type of the value that starts at Pos, for messages
// about a value of the wrong type: object, array, string, bool, null or
// number ("value" at the end of the text).
func (r *Reader) Kind() string {
	if r.Pos >= len(r.Data) {
		return "value"
	}
	switch r.Data[r.Pos] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// RawString reads the string whose opening quote is at Pos. It returns the
// bytes between the quotes as they stand in the text (aliasing Data), and
// whether they can be used as they are: plain is false when the string holds
// escapes or invalid UTF-8, and then Unquote gives its value.
func (r *Reader) RawString() (raw []byte, plain bool, err error) {
	end, plain, err := scanString(r.Data, r.Pos, r.StrictUTF8)
	if err != nil {
		r.Pos = end
		return nil, false, err
	}
	raw = r.Data[r.Pos+1 : end-1]
	r.Pos = end
	return raw, plain, nil
}

// Number moves past the number at Pos, checking it against JSON's grammar.
// It does not convert it: callers differ on what numbers they take.
func (r *Reader) Number() error {
	end, err := scanNumber(r.Data, r.Pos)
	r.Pos = end
	return err
}

// Skip moves past the value at Pos, checking that it is JSON; depth is the
// number of arrays and objects already open around it, against MaxDepth.
func (r *Reader) Skip(depth int) error {
	end, err := skipValue(r.Data, r.Pos, depth, r.StrictUTF8)
	r.Pos = end
	return err
}

// skipValue checks the value at b[i] and returns the index after it. It
// keeps an explicit stack, so nesting costs a byte each, not a call frame.
func skipValue(b []byte, i, depth int, strict bool) (int, error) {
	var buf [64]byte
	stack := buf[:0] // the closing bracket of each open container
	var err error
	for {
		// A value starts at i.
		if i >= len(b) {
			return errAt(b, i, "")
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth+len(stack)+1 > MaxDepth {
				return i, &SyntaxError{Offset: i, Msg: "exceeded max depth"}
			}
			closer := c + 2 // '{'+2 is '}', '['+2 is ']'
			for i++; i < len(b) && isSpace(b[i]); i++ {
			}
			if i < len(b) && b[i] == closer {
				i++
				break
			}
			stack = append(stack, closer)
			if c == '{' {
				if i, err = scanKey(b, i, strict); err != nil {
					return i, err
				}
			}
			continue
		case '"':
			i, _, err = scanString(b, i, strict)
		case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			i, err = scanNumber(b, i)
		case 't':
			i, err = scanLiteral(b, i, "true")
		case 'f':
			i, err = scanLiteral(b, i, "false")
		case 'n':
			i, err = scanLiteral(b, i, "null")
		default:
			i, err = errAt(b, i, "looking for beginning of value")
		}
		if err != nil {
			return i, err
		}
		// A value ended at i: close containers until one goes on.
		for {
			if len(stack) == 0 {
				return i, nil
			}
			for ; i < len(b) && isSpace(b[i]); i++ {
			}
			closer := stack[len(stack)-1]
			if i < len(b) && b[i] == ',' {
				for i++; i < len(b) && isSpace(b[i]); i++ {
				}
				if closer == '}' {
					if i, err = scanKey(b, i, strict); err != nil {
						return i, err
					}
				}
				break
			}
			if i >= len(b) || b[i] != closer {
				return errAt(b, i, "after a value in an object or array")
			}
			i++
			stack = stack[:len(stack)-1]
		}
	}
}

// scanKey reads `"name" :` at b[i] and returns the index of the value after
// it, white space skipped.
func scanKey(b []byte, i int, strict bool) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return errAt(b, i, "looking for beginning of object key string")
	}
	i, _, err := scanString(b, i, strict)
	if err != nil {
		return i, err
	}
	for ; i < len(b) && isSpace(b[i]); i++ {
	}
	if i >= len(b) || b[i] != ':' {
		return errAt(b, i, "after object key")
	}
	for i++; i < len(b) && isSpace(b[i]); i++ {
	}
	return i, nil
}

// scanString checks the string whose quote is at b[i] and returns the index
// after its closing quote, and whether it holds neither escapes nor invalid
// UTF-8. On error the index is where it went wrong.
func scanString(b []byte, i int, strict bool) (int, bool, error) {
	// Most strings are short printable ASCII. This loop makes no calls, so
	// its index stays in a register; anything else goes to stringRest.
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		if c == '"' {
			return j + 1, true, nil
		}
		if c < 0x20 || c >= utf8.RuneSelf || c == '\\' {
			return stringRest(b, j, strict)
		}
	}
	return stringErr(b, len(b), "")
}

// stringRest goes on from b[i], inside a string, where scanString met an
// escape, a control character or a byte past ASCII.
func stringRest(b []byte, i int, strict bool) (int, bool, error) {
	plain := true
	var lone *SyntaxError // the first unpaired surrogate escape
	for {
		for i < len(b) && b[i] >= 0x20 && b[i] < utf8.RuneSelf && b[i] != '"' && b[i] != '\\' {
			i++
		}
		if i >= len(b) {
			return stringErr(b, i, "")
		}
		switch c := b[i]; {
		case c == '"':
			if lone != nil {
				return lone.Offset, false, lone
			}
			return i + 1, plain, nil
		case c == '\\':
			plain = false
			i++
			if i >= len(b) {
				return stringErr(b, i, "")
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				for k := 0; k < 4; k++ {
					if i++; i >= len(b) || !isHex(b[i]) {
						return stringErr(b, i, `in \u hexadecimal character escape`)
					}
				}
				i++
				if r := hex4(b[i-4:]); utf16.IsSurrogate(r) {
					switch {
					case r < 0xdc00 && lowEscapeAt(b, i):
						i += 6
					case lone == nil:
						// Reported once the string proves well-formed, so
						// that a syntax error in it wins.
						lone = &SyntaxError{Offset: i - 6, Msg: "lone surrogate " + string(b[i-6:i]) + " in string", IJSON: true}
					}
				}
			default:
				return stringErr(b, i, "in string escape code")
			}
		case c < 0x20:
			return stringErr(b, i, "in string literal")
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				if strict {
					return i, false, &SyntaxError{Offset: i, Msg: "invalid UTF-8 in string"}
				}
				plain = false
			}
			i += size
		}
	}
}

// lowEscapeAt reports whether an escaped low surrogate starts at b[i].
func lowEscapeAt(b []byte, i int) bool {
	if len(b)-i < 6 || b[i] != '\\' || b[i+1] != 'u' || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
		return false
	}
	lo := hex4(b[i+2:])
	return 0xdc00 <= lo && lo < 0xe000
}

func stringErr(b []byte, i int, what string) (int, bool, error) {
	i, err := errAt(b, i, what)
	return i, false, err
}

// scanNumber checks the number at b[i], which starts with '-' or a digit,
// and returns the index after it.
func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	digits := 0 // of the integer part, 0 for a lone 0
	switch {
	case i >= len(b):
		return errAt(b, i, "")
	case b[i] == '0':
		i++
	case '1' <= b[i] && b[i] <= '9':
		j := skipDigits(b, i)
		digits, i = j-i, j
	default:
		return errAt(b, i, "in numeric literal")
	}
	frac, fracEnd := i, i
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return errAt(b, j, "after decimal point in numeric literal")
		}
		frac, fracEnd, i = i+1, j, j
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return errAt(b, j, "in exponent of numeric literal")
		}
		for _, c := range b[i:j] {
			if exp < 1e6 { // past that the answer no longer changes
				exp = exp*10 + int(c-'0')
			}
		}
		if neg {
			exp = -exp
		}
		i = j
	} else if digits <= maxDigits {
		return i, nil // the common case: a plain number float64 holds
	}
	if err := checkRange(b, start, i, digits, b[frac:fracEnd], exp); err != nil {
		return start, err
	}
	return i, nil
}

// maxDigits is the most integer digits a number below 1e308 has.
const maxDigits = 308

// checkRange refuses the number b[start:end] when its magnitude is past
// float64's, as I-JSON asks: most languages would read it as infinity or not
// at all. digits counts its integer part, frac is its fraction's digits and
// exp its exponent. The value is below 10^m, and at least 10^(m-1).
func checkRange(b []byte, start, end, digits int, frac []byte, exp int) error {
	m := digits + exp
	if digits == 0 {
		k := 0
		for k < len(frac) && frac[k] == '0' {
			k++
		}
		if k == len(frac) {
			return nil // zero, whatever the exponent
		}
		m = exp - k
	}
	switch {
	case m <= maxDigits:
		return nil
	case m == maxDigits+1: // around math.MaxFloat64: let strconv decide
		if f, err := strconv.ParseFloat(string(b[start:end]), 64); err == nil && !math.IsInf(f, 0) {
			return nil
		}
	}
	num := b[start:end]
	if len(num) > 24 {
		num = append(num[:20:20], "..."...)
	}
	return &SyntaxError{Offset: start, Msg: "number " + string(num) + " is out of the range of a float64", IJSON: true}
}

func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}

// scanLiteral checks lit at b[i] and returns the index after it.
func scanLiteral(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k, i = k+1, i+1 {
		if i >= len(b) || b[i] != lit[k] {
			return errAt(b, i, "in literal "+lit)
		}
	}
	return i, nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hex4 is the value of four hex digits that scanString accepted.
func hex4(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// Unquote returns, in a new slice, the value of a string whose raw bytes
// RawString returned (it relies on their escapes being checked). Lone
// surrogates and invalid UTF-8 become U+FFFD, as in encoding/json.
func Unquote(raw []byte) []byte {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		// Copy the run of bytes that stand for themselves in one go.
		j := i
		for j < len(raw) && raw[j] != '\\' && raw[j] < utf8.RuneSelf {
			j++
		}
		out = append(out, raw[i:j]...)
		if i = j; i >= len(raw) {
			break
		}
		if raw[i] != '\\' {
			r, size := utf8.DecodeRune(raw[i:])
			if r == utf8.RuneError && size == 1 {
				out = append(out, "\ufffd"...)
			} else {
				out = append(out, raw[i:i+size]...)
			}
			i += size
			continue
		}
		switch e := raw[i+1]; e {
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
			r := hex4(raw[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				// A pair makes one rune; a surrogate alone is U+FFFD.
				pair := utf8.RuneError
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					pair = utf16.DecodeRune(r, hex4(raw[i+2:]))
				}
				if pair != utf8.RuneError {
					i += 6
				}
				r = pair
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, e)
		}
		i += 2
	}
	return out
}
