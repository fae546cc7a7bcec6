package jsonbody

import (
	"testing"

	"github.com/syncpoint/syncpoint"
)

func TestDecode(t *testing.T) {
	type body struct {
		Name  string   `json:"name"`
		Items []string `json:"items"`
	}
	for _, tc := range []struct {
		in   string
		code syncpoint.ErrorCode
	}{
		{`{"name": "x", "items": ["a"]}`, ""},
		{``, syncpoint.CodeMalformed},
		{`{"name": `, syncpoint.CodeMalformed},
		{`{"name": "x"} {}`, syncpoint.CodeMalformed},
		{`{"name": x}`, syncpoint.CodeMalformed},
		{`{"nme": "x"}`, syncpoint.CodeInvalid},
		{`{"items": "a"}`, syncpoint.CodeInvalid},
		{`[]`, syncpoint.CodeInvalid},
	} {
		var b body
		err := Decode([]byte(tc.in), &b)
		if got := syncpoint.Code(err); got != tc.code || (err != nil && syncpoint.Message(err) == "") {
			t.Errorf("Decode(%q) = %v, want code %q", tc.in, err, tc.code)
		}
	}
}

func TestErrorField(t *testing.T) {
	type inner struct {
		Limit int `json:"limit"`
	}
	type base struct {
		Size int `json:"size"`
	}
	type body struct {
		base
		Inner *inner `json:"inner"`
	}
	for in, field := range map[string]string{
		`{"size": "big"}`:           "size",
		`{"inner": {"limit": "x"}}`: "inner.limit",
		`{"colour": 1}`:             "colour",
	} {
		var b body
		err := Decode([]byte(in), &b)
		e, ok := err.(*syncpoint.Error)
		if !ok || e.Field != field {
			t.Errorf("Decode(%s) = %#v, want field %q", in, err, field)
		}
	}
}
