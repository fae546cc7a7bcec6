package httpapi

import (
	"errors"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// parsePublishBody decodes a publish body into b without reflection: it is
// the hottest decoder of the API. It accepts what encoding/json accepts for
// apiclient.PublishRequest with unknown fields refused, except that field names match
// exactly rather than case-insensitively; FuzzParsePublish holds it to
// that. As with encoding/json, a syntax error anywhere wins over a field
// error (unknown field, wrong type), which wins over trailing data.
func parsePublishBody(data []byte, b *apiclient.PublishRequest) error {
	p := parser{Reader: jsontext.Reader{Data: data}}
	if err := p.body(b); err != nil {
		return malformed(err, len(data))
	}
	if p.soft != nil {
		return p.soft
	}
	if p.Space(); p.Pos != len(p.Data) {
		return malformed(&jsontext.SyntaxError{Offset: p.Pos, Msg: "data after the top-level value"}, len(data))
	}
	return nil
}

// malformed turns a syntax error into the API's words, the ones jsonError
// uses for encoding/json's. Text that is JSON but not I-JSON is invalid
// rather than malformed: it parses, but its content cannot be passed on.
func malformed(err error, n int) error {
	se, ok := err.(*jsontext.SyntaxError)
	switch {
	case !ok:
		return err
	case se.IJSON:
		return notIJSON(se)
	case se.Offset >= n:
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: the body ends in the middle of a value")
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: %s", se.Offset, se.Msg)
}

// notIJSON is the API's error for a body that breaks RFC 7493: no client in
// another language could be relied on to decode what it carries.
func notIJSON(se *jsontext.SyntaxError) error {
	return syncpoint.Errorf(syncpoint.CodeInvalid, "the body is not I-JSON (RFC 7493) at byte offset %d: %s", se.Offset, se.Msg)
}

// checkIJSON refuses a body whose JSON breaks I-JSON, for the bodies that
// encoding/json decodes: it would turn a lone surrogate into U+FFFD and keep
// a number out of range as it is. Syntax errors are left to the decoder.
func checkIJSON(data []byte) error {
	r := jsontext.Reader{Data: data}
	r.Space()
	var se *jsontext.SyntaxError
	if err := r.Skip(0); errors.As(err, &se) && se.IJSON {
		return notIJSON(se)
	}
	return nil
}

// parser walks a publish body on jsontext's tokens. Its methods return
// syntax errors; soft holds the first field error, reported once the whole
// value proved well-formed.
type parser struct {
	jsontext.Reader
	soft error
}

// body reads the top-level value.
func (p *parser) body(b *apiclient.PublishRequest) error {
	switch p.Peek() {
	case '{':
		return p.object(b)
	case 'n':
		return p.Literal("null")
	}
	if p.Pos == len(p.Data) {
		return syncpoint.Errorf(syncpoint.CodeMalformed, "the body is empty; want a JSON object")
	}
	kind := p.Kind()
	if err := p.Skip(0); err != nil {
		return err
	}
	return syncpoint.Errorf(syncpoint.CodeInvalid, "the body is a JSON %s; want an object", kind)
}

// fieldError records the first field error.
func (p *parser) fieldError(err error) {
	if p.soft == nil {
		p.soft = err
	}
}

func (p *parser) object(b *apiclient.PublishRequest) error {
	p.Pos++ // '{'
	if p.Peek() == '}' {
		p.Pos++
		return nil
	}
	for {
		if p.Peek() != '"' {
			return p.Unexpected("looking for beginning of object key string")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		if p.Peek() != ':' {
			return p.Unexpected("after object key")
		}
		p.Pos++
		p.Space()
		if err := p.field(b, key); err != nil {
			return err
		}
		switch p.Peek() {
		case ',':
			p.Pos++
		case '}':
			p.Pos++
			return nil
		default:
			return p.Unexpected("after object key:value pair")
		}
	}
}

func (p *parser) field(b *apiclient.PublishRequest, key string) error {
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
		start := p.Pos
		if err := p.Skip(1); err != nil {
			return err
		}
		b.Data = append(b.Data[:0:0], p.Data[start:p.Pos]...)
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
	return p.Skip(1)
}

// typeMismatch records a field of the wrong type and skips its value.
func (p *parser) typeMismatch(field, want string) error {
	p.fieldError(syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want %s, got a JSON %s", field, want, p.Kind()))
	return p.Skip(1)
}

// stringField decodes a string; null leaves the field as it is.
func (p *parser) stringField(field string, dst *string) error {
	switch p.Peek() {
	case '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		*dst = s
		return nil
	case 'n':
		return p.Literal("null")
	}
	return p.typeMismatch(field, "a string")
}

func (p *parser) boolField(field string, dst *bool) error {
	switch p.Peek() {
	case 't':
		if err := p.Literal("true"); err != nil {
			return err
		}
		*dst = true
		return nil
	case 'f':
		if err := p.Literal("false"); err != nil {
			return err
		}
		*dst = false
		return nil
	case 'n':
		return p.Literal("null")
	}
	return p.typeMismatch(field, "true or false")
}

// stringsField decodes an array of strings; null empties the field. As in
// encoding/json, a repeated field reuses the earlier array, so a null
// element keeps the string that was at its index ("" if none).
func (p *parser) stringsField(field string, dst *[]string) error {
	switch p.Peek() {
	case 'n':
		if err := p.Literal("null"); err != nil {
			return err
		}
		*dst = nil
		return nil
	case '[':
	default:
		return p.typeMismatch(field, "an array")
	}
	p.Pos++
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
	if p.Peek() == ']' {
		p.Pos++
		*dst = out
		return nil
	}
	for {
		switch p.Peek() {
		case '"':
			s, err := p.str()
			if err != nil {
				return err
			}
			out = append(out, s)
		case 'n':
			if err := p.Literal("null"); err != nil {
				return err
			}
			out = append(out, prev())
		default:
			p.fieldError(syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want an array of strings, got a JSON %s in it", field, p.Kind()))
			if err := p.Skip(2); err != nil {
				return err
			}
			out = append(out, prev())
		}
		switch p.Peek() {
		case ',':
			p.Pos++
		case ']':
			p.Pos++
			*dst = out
			return nil
		default:
			return p.Unexpected("after array element")
		}
	}
}

// str decodes the string at Pos the way encoding/json does: invalid UTF-8
// becomes U+FFFD. (Lone surrogates never get here: the reader refuses them.)
func (p *parser) str() (string, error) {
	raw, plain, err := p.RawString()
	if err != nil {
		return "", err
	}
	if plain {
		return string(raw), nil
	}
	return string(jsontext.Unquote(raw)), nil
}
