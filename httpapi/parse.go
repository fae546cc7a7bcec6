package httpapi

import (
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
)

// parsePublishBody decodes a publish body into b without reflection: it is
// the hottest decoder of the API. It accepts what encoding/json accepts for
// publishBody with unknown fields refused, except that field names match
// exactly rather than case-insensitively; FuzzParsePublish holds it to
// that. As with encoding/json, a syntax error anywhere wins over a field
// error (unknown field, wrong type), which wins over trailing data.
func parsePublishBody(data []byte, b *publishBody) error {
	p := parser{data: data}
	p.ws()
	if p.pos == len(p.data) {
		return syncpoint.Errorf(syncpoint.CodeMalformed, "the body is empty; want a JSON object")
	}
	switch p.data[p.pos] {
	case '{':
		if err := p.object(b); err != nil {
			return err
		}
	case 'n':
		if err := p.literal("null"); err != nil {
			return err
		}
	default:
		kind := p.kind()
		if err := p.skip(0); err != nil {
			return err
		}
		return syncpoint.Errorf(syncpoint.CodeInvalid, "the body is a JSON %s; want an object", kind)
	}
	if p.soft != nil {
		return p.soft
	}
	p.ws()
	if p.pos != len(p.data) {
		return p.syntax("data after the top-level value")
	}
	return nil
}

// maxDepth bounds nesting, as encoding/json does; the top-level object is
// depth 1, so fields skip their values from depth 1.
const maxDepth = 10000

// parser walks a JSON text; soft holds the first field error, reported
// once the whole value proved well-formed.
type parser struct {
	data []byte
	pos  int
	soft error
}

func (p *parser) ws() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) syntax(msg string) error {
	if p.pos >= len(p.data) {
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: the body ends in the middle of a value")
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: %s", p.pos, msg)
}

func (p *parser) unexpected(what string) error {
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	return p.syntax("invalid character " + strconv.QuoteRune(rune(p.data[p.pos])) + " " + what)
}

// fieldError records the first field error.
func (p *parser) fieldError(err error) {
	if p.soft == nil {
		p.soft = err
	}
}

// kind names the JSON type of the value at pos, for type errors.
func (p *parser) kind() string {
	if p.pos >= len(p.data) {
		return "value"
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	default:
		return "number"
	}
}

func (p *parser) object(b *publishBody) error {
	p.pos++ // '{'
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.unexpected("looking for beginning of object key string")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.unexpected("after object key")
		}
		p.pos++
		p.ws()
		if err := p.field(b, key); err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.unexpected("after object key:value pair")
		}
	}
}

func (p *parser) field(b *publishBody, key string) error {
	switch key {
	case "biz":
		return p.stringField(key, &b.Biz)
	case "users":
		return p.stringsField(key, &b.Users)
	case "devices":
		return p.stringsField(key, &b.Devices)
	case "groups":
		return p.stringsField(key, &b.Groups)
	case "global":
		return p.boolField(key, &b.Global)
	case "op":
		return p.stringField(key, (*string)(&b.Op))
	case "key":
		return p.stringField(key, &b.Key)
	case "data":
		start := p.pos
		if err := p.skip(1); err != nil {
			return err
		}
		b.Data = append(b.Data[:0:0], p.data[start:p.pos]...)
		return nil
	case "ttl":
		return p.stringField(key, &b.TTL)
	case "platforms":
		return p.stringsField(key, &b.Platforms)
	case "min_app_version":
		return p.stringField(key, &b.MinAppVersion)
	case "max_app_version":
		return p.stringField(key, &b.MaxAppVersion)
	case "idempotency_key":
		return p.stringField(key, &b.IdempotencyKey)
	}
	p.fieldError(syncpoint.Errorf(syncpoint.CodeInvalid, "unknown field %q", key))
	return p.skip(1)
}

// typeMismatch records a field of the wrong type and skips its value.
func (p *parser) typeMismatch(field, want string) error {
	p.fieldError(syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want %s, got a JSON %s", field, want, p.kind()))
	return p.skip(1)
}

// stringField decodes a string; null leaves the field as it is.
func (p *parser) stringField(field string, dst *string) error {
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	switch p.data[p.pos] {
	case '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		*dst = s
		return nil
	case 'n':
		return p.literal("null")
	}
	return p.typeMismatch(field, "a string")
}

func (p *parser) boolField(field string, dst *bool) error {
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	switch p.data[p.pos] {
	case 't':
		if err := p.literal("true"); err != nil {
			return err
		}
		*dst = true
		return nil
	case 'f':
		if err := p.literal("false"); err != nil {
			return err
		}
		*dst = false
		return nil
	case 'n':
		return p.literal("null")
	}
	return p.typeMismatch(field, "true or false")
}

// stringsField decodes an array of strings; null empties the field. As in
// encoding/json, a repeated field reuses the earlier array, so a null
// element keeps the string that was at its index ("" if none).
func (p *parser) stringsField(field string, dst *[]string) error {
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	switch p.data[p.pos] {
	case 'n':
		if err := p.literal("null"); err != nil {
			return err
		}
		*dst = nil
		return nil
	case '[':
	default:
		return p.typeMismatch(field, "an array")
	}
	p.pos++
	old := *dst
	out := old[:0]
	if out == nil {
		out = []string{}
	}
	prev := func() string {
		if len(out) < len(old) {
			return old[len(out)]
		}
		return ""
	}
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		*dst = out
		return nil
	}
	for {
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("")
		}
		switch p.data[p.pos] {
		case '"':
			s, err := p.str()
			if err != nil {
				return err
			}
			out = append(out, s)
		case 'n':
			if err := p.literal("null"); err != nil {
				return err
			}
			out = append(out, prev())
		default:
			p.fieldError(syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want an array of strings, got a JSON %s in it", field, p.kind()))
			if err := p.skip(2); err != nil {
				return err
			}
			out = append(out, prev())
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			*dst = out
			return nil
		default:
			return p.unexpected("after array element")
		}
	}
}

func (p *parser) literal(lit string) error {
	for i := 0; i < len(lit); i++ {
		if p.pos >= len(p.data) {
			return p.syntax("")
		}
		if p.data[p.pos] != lit[i] {
			return p.unexpected("in literal " + lit)
		}
		p.pos++
	}
	return nil
}

// skip checks the well-formedness of one value and moves past it.
func (p *parser) skip(depth int) error {
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	switch c := p.data[p.pos]; {
	case c == '"':
		return p.skipString()
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	case c == '[' || c == '{':
		if depth+1 > maxDepth {
			return p.syntax("exceeded max depth")
		}
		return p.skipContainer(depth + 1)
	}
	return p.unexpected("looking for beginning of value")
}

func (p *parser) skipContainer(depth int) error {
	obj := p.data[p.pos] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	p.pos++
	p.ws()
	if p.pos < len(p.data) && p.data[p.pos] == closer {
		p.pos++
		return nil
	}
	for {
		p.ws()
		if obj {
			if p.pos >= len(p.data) || p.data[p.pos] != '"' {
				return p.unexpected("looking for beginning of object key string")
			}
			if err := p.skipString(); err != nil {
				return err
			}
			p.ws()
			if p.pos >= len(p.data) || p.data[p.pos] != ':' {
				return p.unexpected("after object key")
			}
			p.pos++
			p.ws()
		}
		if err := p.skip(depth); err != nil {
			return err
		}
		p.ws()
		if p.pos >= len(p.data) {
			return p.syntax("")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case closer:
			p.pos++
			return nil
		default:
			return p.unexpected("after a value in an object or array")
		}
	}
}

func (p *parser) number() error {
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && '0' <= p.data[p.pos] && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.data[p.pos] == '-' {
		p.pos++
	}
	if p.pos >= len(p.data) {
		return p.syntax("")
	}
	if p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return p.unexpected("in numeric literal")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		if digits() == 0 {
			return p.unexpected("after decimal point in numeric literal")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return p.unexpected("in exponent of numeric literal")
		}
	}
	return nil
}

// skipString moves past a string, checking its escapes.
func (p *parser) skipString() error {
	_, _, err := p.scanString()
	return err
}

// str decodes the string at pos the way encoding/json does: invalid UTF-8
// and lone surrogates become U+FFFD.
func (p *parser) str() (string, error) {
	start := p.pos + 1
	end, plain, err := p.scanString()
	if err != nil {
		return "", err
	}
	raw := p.data[start:end]
	if plain {
		return string(raw), nil
	}
	return unquote(raw), nil
}

// scanString moves past the string at pos and returns the index of its
// closing quote and whether its bytes can be used as they are (no escapes,
// valid UTF-8).
func (p *parser) scanString() (end int, plain bool, err error) {
	p.pos++ // opening quote
	plain = true
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			end = p.pos
			p.pos++
			return end, plain, nil
		case c == '\\':
			plain = false
			p.pos++
			if p.pos >= len(p.data) {
				return 0, false, p.syntax("")
			}
			switch p.data[p.pos] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.pos++
			case 'u':
				p.pos++
				for i := 0; i < 4; i++ {
					if p.pos >= len(p.data) {
						return 0, false, p.syntax("")
					}
					if !isHex(p.data[p.pos]) {
						return 0, false, p.unexpected("in \\u hexadecimal character escape")
					}
					p.pos++
				}
			default:
				return 0, false, p.unexpected("in string escape code")
			}
		case c < 0x20:
			return 0, false, p.unexpected("in string literal")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				plain = false
			}
			p.pos += size
		}
	}
	return 0, false, p.syntax("")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b {
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

// unquote decodes the body of a well-formed JSON string (scanString checked
// its escapes).
func unquote(s []byte) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c == '\\' {
			switch e := s[i+1]; e {
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
				r := hexVal(s[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
						if r2 := utf16.DecodeRune(r, hexVal(s[i+2:i+6])); r2 != utf8.RuneError {
							out = utf8.AppendRune(out, r2)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, e)
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return string(out)
}
