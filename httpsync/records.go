package httpsync

import (
	"encoding/json"
	"strconv"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// A record travels flat, as TinySync and the CRM Sync API have it: its
// fields are the members of one object, with "id" (the record's key) among
// them. Data that is not an object (a string, a number, an array) travels
// as the member "value". In a one-shot answer "seq" is the seq of the
// version, the base_seq of the device's next update of it. These members
// are reserved: a record's own member of one of these names is not kept.
const (
	memberID      = "id"
	memberSeq     = "seq"
	memberBaseSeq = "base_seq"
	memberValue   = "value"
)

// appendRecord appends the flat form of a record: key, the seq when withSeq,
// and data's members (or data as "value"). Data that does not read as JSON
// (a store's corruption, never a publish) goes as null.
func appendRecord(dst []byte, key string, seq uint64, withSeq bool, data json.RawMessage) []byte {
	dst = append(dst, `{"id":`...)
	dst = jsontext.AppendString(dst, key)
	if withSeq {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, seq, 10)
	}
	if len(data) == 0 {
		return append(dst, '}')
	}
	members, ok := objectMembers(data)
	if !ok {
		dst = append(dst, `,"value":`...)
		if !jsontext.Valid(data) {
			return append(dst, `null}`...)
		}
		return append(append(dst, jsontext.Trim(data)...), '}')
	}
	for _, m := range members {
		switch m.name {
		case memberID, memberSeq, memberBaseSeq:
			continue
		}
		dst = append(dst, ',')
		dst = append(dst, m.raw...)
	}
	return append(dst, '}')
}

// member is one member of an object: its name and its text ("name":value
// as it stood, white space between the two included).
type member struct {
	name string
	raw  []byte
}

// objectMembers splits a JSON object into its members, in order. ok is
// false when data is not one object.
func objectMembers(data []byte) ([]member, bool) {
	r := jsontext.Reader{Data: data, StrictUTF8: true}
	if r.Peek() != '{' {
		return nil, false
	}
	r.Pos++
	var out []member
	if r.Peek() == '}' {
		r.Pos++
		r.Space()
		return out, r.Pos == len(data)
	}
	for {
		if r.Peek() != '"' {
			return nil, false
		}
		start := r.Pos
		raw, plain, err := r.RawString()
		if err != nil {
			return nil, false
		}
		name := string(raw)
		if !plain {
			name = string(jsontext.Unquote(raw))
		}
		if r.Peek() != ':' {
			return nil, false
		}
		r.Pos++
		r.Space()
		if err := r.Skip(1); err != nil {
			return nil, false
		}
		out = append(out, member{name: name, raw: data[start:r.Pos]})
		switch r.Peek() {
		case ',':
			r.Pos++
			continue
		case '}':
			r.Pos++
			r.Space()
			return out, r.Pos == len(data)
		}
		return nil, false
	}
}

// upload is one record of a one-shot request's created, updated or
// deleted list, taken apart.
type upload struct {
	ID      string
	BaseSeq uint64
	HasBase bool
	Data    json.RawMessage // the other members, as an object; nil for a delete
}

// splitUpload takes the reserved members out of a flat record. what names
// the record in messages ("entities[0].updated[3]").
func splitUpload(raw json.RawMessage, what string, withData bool) (upload, error) {
	members, ok := objectMembers(raw)
	if !ok {
		return upload{}, syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want an object with an id", what)
	}
	var u upload
	hasID := false
	data := []byte{'{'}
	for _, m := range members {
		switch m.name {
		case memberID, memberBaseSeq:
			v := valueOf(m.raw)
			if m.name == memberID {
				if err := json.Unmarshal(v, &u.ID); err != nil {
					return upload{}, syncpoint.Errorf(syncpoint.CodeInvalid, "%s.id: want a string", what)
				}
				hasID = true
				continue
			}
			if err := json.Unmarshal(v, &u.BaseSeq); err != nil {
				return upload{}, syncpoint.Errorf(syncpoint.CodeInvalid, "%s.base_seq: want a whole number of 0 or more", what)
			}
			u.HasBase = true
			continue
		case memberSeq:
			// A record sent back as it came keeps the seq it was read
			// at; base_seq is what counts.
			continue
		}
		if len(data) > 1 {
			data = append(data, ',')
		}
		data = append(data, m.raw...)
	}
	if !hasID {
		return upload{}, syncpoint.Errorf(syncpoint.CodeInvalid, "%s: no id", what)
	}
	if withData {
		u.Data = append(data, '}')
	}
	return u, nil
}

// valueOf is the value of a member's text.
func valueOf(raw []byte) []byte {
	r := jsontext.Reader{Data: raw}
	r.RawString()
	r.Peek()
	r.Pos++ // the colon
	r.Space()
	return raw[r.Pos:]
}
