// Package jsonbody decodes the JSON bodies of HTTP requests strictly, into
// errors a client can act on: the business API (httpapi) and HTTP sync
// (httpsync) both answer a bad body in these words.
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"

	"github.com/syncpoint/syncpoint"
)

// Decode decodes one JSON value from data into v, refusing unknown fields
// and trailing data. Errors are *syncpoint.Error saying where: CodeMalformed
// for a body that does not parse, CodeInvalid for one that parses but has
// an unknown field or a field of the wrong type.
func Decode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typ *json.UnmarshalTypeError
		if errors.As(err, &typ) {
			// The path names embedded structs by their Go type; a client
			// knows only the JSON names.
			typ.Field = jsonPath(reflect.TypeOf(v), typ.Field)
		}
		return Error(err)
	}
	var extra json.RawMessage
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return Error(err)
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: data after the top-level value", dec.InputOffset()-int64(len(extra)))
}

// Error turns an encoding/json error into a client error that says where
// the body went wrong. A *syncpoint.Error (from an UnmarshalJSON) passes
// through.
func Error(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var se *syncpoint.Error
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &syn):
		// Offset counts the bytes read, the bad one included.
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON at byte offset %d: %s", max(syn.Offset-1, 0), strings.TrimPrefix(syn.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return syncpoint.Errorf(syncpoint.CodeMalformed, "the body is empty; want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: the body ends in the middle of a value")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return syncpoint.Errorf(syncpoint.CodeInvalid, "the body is a JSON %s; want an object", typ.Value)
		}
		return syncpoint.FieldErrorf(syncpoint.CodeInvalid, field, "%s: want %s, got a JSON %s", field, typeName(typ.Type.String()), typ.Value)
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return syncpoint.FieldErrorf(syncpoint.CodeInvalid, strings.Trim(f, `"`), "unknown field %s", f)
	}
	return syncpoint.Errorf(syncpoint.CodeMalformed, "invalid JSON: %s", strings.TrimPrefix(msg, "json: "))
}

// jsonPath drops from a decoder's dotted field path the names of the
// embedded structs of t, whose fields JSON sees as the outer struct's.
func jsonPath(t reflect.Type, path string) string {
	var out []string
	for seg := range strings.SplitSeq(path, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			out, t = append(out, seg), nil
			continue
		}
		if f, ok := t.FieldByName(seg); ok && f.Anonymous && f.Tag.Get("json") == "" {
			t = f.Type
			continue
		}
		out, t = append(out, seg), fieldType(t, seg)
	}
	return strings.Join(out, ".")
}

// fieldType is the type of t's field whose JSON name is name, or nil.
func fieldType(t reflect.Type, name string) reflect.Type {
	for _, f := range reflect.VisibleFields(t) {
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && f.Name == name) {
			return f.Type
		}
	}
	return nil
}

// typeName says a Go type the way a JSON user would.
func typeName(goType string) string {
	switch {
	case goType == "string", goType == "syncpoint.Op", goType == "syncpoint.TargetKind",
		goType == "syncpoint.ConflictPolicy", goType == "syncpoint.Duration":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "an object"
}
