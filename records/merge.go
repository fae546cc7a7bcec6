package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
)

// object is a JSON object that keeps its members' order and raw values, so
// a merged record reads like the records it came from.
type object struct {
	keys []string
	vals map[string]json.RawMessage
}

var errNotObject = errors.New("not a JSON object")

// isObject reports whether data is one valid JSON object.
func isObject(data []byte) bool {
	t := bytes.TrimLeft(data, " \t\r\n")
	return len(t) > 0 && t[0] == '{' && json.Valid(data)
}

// parseObject splits a JSON object into its members; a repeated member
// keeps its first position and its last value, as encoding/json would.
func parseObject(data []byte) (*object, error) {
	if !isObject(data) {
		return nil, errNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	o := &object{vals: make(map[string]json.RawMessage)}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, seen := o.vals[k]; !seen {
			o.keys = append(o.keys, k)
		}
		o.vals[k] = v
	}
	return o, nil
}

func (o *object) get(k string) (json.RawMessage, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *object) set(k string, v json.RawMessage) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *object) del(k string) {
	if _, ok := o.vals[k]; !ok {
		return
	}
	delete(o.vals, k)
	for i, x := range o.keys {
		if x == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			break
		}
	}
}

func (o *object) clone() *object {
	c := &object{keys: append([]string(nil), o.keys...), vals: make(map[string]json.RawMessage, len(o.vals))}
	for k, v := range o.vals {
		c.vals[k] = v
	}
	return c
}

// marshal writes the object back, members in order.
func (o *object) marshal() json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(o.vals[k])
	}
	b.WriteByte('}')
	return b.Bytes()
}

// sameField reports whether a member has the same value (or is absent) in
// both objects. Values compare as JSON, so spacing and member order inside
// them do not matter; numbers compare by their text.
func sameField(a, b *object, k string) bool {
	av, aok := a.get(k)
	bv, bok := b.get(k)
	if aok != bok {
		return false
	}
	return !aok || jsonEqual(av, bv)
}

func jsonEqual(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if decodeNumbers(a, &x) != nil || decodeNumbers(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func decodeNumbers(data []byte, v *any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// merge applies a device's field changes to the current record. With the
// base the device edited, the device changed the fields that differ between
// base and upload, the server those that differ between base and current;
// a field both changed to different values is a conflict and keeps the
// current value. Without the base (compacted, trimmed or expired), the
// fields named in fields are taken from the upload; with no names either,
// every field of the upload that differs from current counts as changed on
// both sides. It returns the merged record and the conflicting fields.
func merge(base, upload, current *object, fields []string) (*object, []string) {
	out := current.clone()
	var conflicts []string
	take := func(k string) {
		if v, ok := upload.get(k); ok {
			out.set(k, v)
		} else {
			out.del(k)
		}
	}
	switch {
	case base != nil:
		seen := make(map[string]bool, len(base.keys)+len(upload.keys))
		for _, keys := range [][]string{upload.keys, base.keys} {
			for _, k := range keys {
				if seen[k] {
					continue
				}
				seen[k] = true
				if sameField(base, upload, k) {
					continue // the device left it alone
				}
				if !sameField(base, current, k) && !sameField(upload, current, k) {
					conflicts = append(conflicts, k)
					continue
				}
				take(k)
			}
		}
	case len(fields) > 0:
		seen := make(map[string]bool, len(fields))
		for _, k := range fields {
			if !seen[k] {
				seen[k] = true
				take(k)
			}
		}
	default:
		for _, k := range upload.keys {
			if !sameField(upload, current, k) {
				conflicts = append(conflicts, k)
			}
		}
	}
	return out, conflicts
}
