package jsontext

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"b\s/`, `"q\"b\\s/"`},
		{"\n\r\t\b\f", `"\n\r\t\u0008\u000c"`},
		{"\x00\x1f\x7f", `"\u0000\u001f` + "\x7f" + `"`},
		{"é✓😀\u2028<&>", `"é✓😀` + "\u2028" + `<&>"`},
		{"a\xffb\xc3", `"a\ufffdb\ufffd"`},
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // an encoded surrogate is not UTF-8
	} {
		got := AppendString([]byte("x"), tc.in)
		if string(got) != "x"+tc.want {
			t.Errorf("AppendString(%q) = %s, want %s", tc.in, got[1:], tc.want)
		}
	}
}

func TestValid(t *testing.T) {
	for _, s := range []string{`0`, `-0`, `1.5e+10`, `-0.0E-1`, `""`, `"\u00e9\ud83d\ude00"`, `[]`, `{}`,
		`1e308`, `-1E+308`, `1.7976931348623157e308`, `0.01e310`, `0e999999`, `-0.000e999999999`, `1e-999999`, `123e-400`,
		"1" + strings.Repeat("0", 308), "17976931348623157" + strings.Repeat("0", 292) + ".5", "0." + strings.Repeat("0", 400) + "1e401",
		` [ 1 , { "a" : [ ] } ] `, "\t\r\ntrue\n", `false`, `null`, `"é"`, `{"a":{"b":[{}]},"c":"d"}`} {
		if !Valid([]byte(s)) {
			t.Errorf("%q: not valid", s)
		}
	}
	for _, s := range []string{``, ` `, `01`, `1.`, `.5`, `1e`, `1e+`, `-`, `+1`, `[1,]`, `{"a"}`, `{"a":1,}`,
		`{1:2}`, `[1 2]`, `tru`, `nul`, `"a`, "\"\x7f\xff\"", "\"\x01\"", `1 2`, `{}}`, `]`, `[`, `"\u00g0"`, `"\x"`,
		`{"a":1 "b":2}`, `[}`, `{]`, "\"a\xc3\x28\"", "\xef\xbb\xbf{}",
		`"\ud800"`, `"\udc00"`, `"\ud800\ud800"`, `"\ud800\u0041"`, `"x\ude00y"`, `{"\udbff":1}`, `["\ud83d\ude00\ud83d"]`,
		`1e309`, `-1e309`, `1.8e308`, `1e999999`, `10E308`, `0.01e311`, `-1e9999999999999999999`, "1" + strings.Repeat("0", 309),
		"0." + strings.Repeat("0", 400) + "1e711", `[0,1e400]`} {
		if Valid([]byte(s)) {
			t.Errorf("%q: valid", s)
		}
	}
	deep := strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth)
	if !Valid([]byte(deep)) {
		t.Error("MaxDepth nesting is refused")
	}
	if Valid([]byte("[" + deep + "]")) {
		t.Error("nesting past MaxDepth is accepted")
	}
}

func TestTrim(t *testing.T) {
	for in, want := range map[string]string{"": "", " \t\r\n": "", " {} ": "{}", "\v1\f": "\v1\f", "[ 1 ]\n": "[ 1 ]"} {
		if got := string(Trim([]byte(in))); got != want {
			t.Errorf("Trim(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSkipErrors pins the offsets and the wording of syntax errors, which
// the publish API passes on to clients.
func TestSkipErrors(t *testing.T) {
	for _, tc := range []struct {
		in     string
		depth  int
		offset int
		msg    string
	}{
		{``, 0, 0, endMsg},
		{`[1,2`, 0, 4, endMsg},
		{`{"a"`, 0, 4, endMsg},
		{`"abc\`, 0, 5, endMsg},
		{`"\u12`, 0, 5, endMsg},
		{`-`, 0, 1, endMsg},
		{`x`, 0, 0, `invalid character 'x' looking for beginning of value`},
		{`[1,]`, 0, 3, `invalid character ']' looking for beginning of value`},
		{`{"a":1,}`, 0, 7, `invalid character '}' looking for beginning of object key string`},
		{`{"a" 1}`, 0, 5, `invalid character '1' after object key`},
		{`[1 2]`, 0, 3, `invalid character '2' after a value in an object or array`},
		{`-x`, 0, 1, `invalid character 'x' in numeric literal`},
		{`1.e3`, 0, 2, `invalid character 'e' after decimal point in numeric literal`},
		{`1e+]`, 0, 3, `invalid character ']' in exponent of numeric literal`},
		{`nul1`, 0, 3, `invalid character '1' in literal null`},
		{`"a` + "\x01", 0, 2, `invalid character '\x01' in string literal`},
		{`"\q"`, 0, 2, `invalid character 'q' in string escape code`},
		{`"\u00g0"`, 0, 5, `invalid character 'g' in \u hexadecimal character escape`},
		{`[[]]`, MaxDepth - 1, 1, `exceeded max depth`},
	} {
		r := Reader{Data: []byte(tc.in)}
		err := r.Skip(tc.depth)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("%q: error %v, want a *SyntaxError", tc.in, err)
			continue
		}
		if se.Offset != tc.offset || se.Msg != tc.msg {
			t.Errorf("%q: error at %d %q, want at %d %q", tc.in, se.Offset, se.Msg, tc.offset, tc.msg)
		}
	}
	// Strictness is about UTF-8 only.
	r := Reader{Data: []byte("[\"ok\", \"a\xffb\"]"), StrictUTF8: true}
	if err := r.Skip(0); err == nil || err.(*SyntaxError).Offset != 9 {
		t.Errorf("strict: error %v, want one at byte 9", err)
	}
	r = Reader{Data: []byte("[\"ok\", \"a\xffb\"]")}
	if err := r.Skip(0); err != nil || r.Pos != len(r.Data) {
		t.Errorf("lenient: error %v at %d", err, r.Pos)
	}
}

func TestRawString(t *testing.T) {
	for _, tc := range []struct {
		in    string
		plain bool
		want  string
	}{
		{`""`, true, ""},
		{`"abc" `, true, "abc"},
		{`"é✓😀"`, true, "é✓😀"},
		{`"a\"b"`, false, `a"b`},
		{`"\\\/\b\f\n\r\t"`, false, "\\/\b\f\n\r\t"},
		{`"\u0041\u00e9\u2028"`, false, "Aé\u2028"},
		{`"\ud83d\ude00"`, false, "😀"},
		{`"\udbff\udfff"`, false, "\U0010ffff"},
		{"\"a\xffb\"", false, "a\ufffdb"},
		{"\"\xed\xa0\x80\"", false, "\ufffd\ufffd\ufffd"},
	} {
		r := Reader{Data: []byte(tc.in)}
		raw, plain, err := r.RawString()
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		got := string(raw)
		if !plain {
			got = string(Unquote(raw))
		}
		if plain != tc.plain || got != tc.want || r.Pos != strings.LastIndexByte(tc.in, '"')+1 {
			t.Errorf("%s: %q plain %v at %d, want %q plain %v", tc.in, got, plain, r.Pos, tc.want, tc.plain)
		}
	}
}

func TestReader(t *testing.T) {
	r := Reader{Data: []byte(" \n{ \"k\" : [ true, nul, 1.5e3 ] } ")}
	if c := r.Peek(); c != '{' || r.Pos != 2 {
		t.Fatalf("Peek = %q at %d", c, r.Pos)
	}
	if r.Kind() != "object" || r.Consume("{}") || !r.Consume("{") {
		t.Fatal("Kind or Consume at {")
	}
	if r.Peek(); r.Kind() != "string" {
		t.Fatalf("Kind = %s", r.Kind())
	}
	if raw, plain, err := r.RawString(); err != nil || !plain || string(raw) != "k" {
		t.Fatalf("String = %q, %v, %v", raw, plain, err)
	}
	if r.Peek() != ':' || !r.Consume(":") || r.Peek() != '[' || !r.Consume("[") {
		t.Fatal("walking to the array")
	}
	if r.Peek(); r.Kind() != "bool" || r.Literal("true") != nil {
		t.Fatal("true")
	}
	r.Consume(",")
	if r.Peek(); r.Kind() != "null" {
		t.Fatal("Kind at nul")
	}
	start := r.Pos
	if err := r.Literal("null"); err == nil || err.(*SyntaxError).Offset != start+3 {
		t.Fatalf("Literal(null) on nul: %v", err)
	}
	r.Pos = start + 4 // past "nul,"
	if r.Peek(); r.Kind() != "number" || r.Number() != nil || string(r.Data[start+5:r.Pos]) != "1.5e3" {
		t.Fatalf("Number ends at %d", r.Pos)
	}
	if err := r.Unexpected("after array element"); err.Error() != "invalid JSON at byte 28: invalid character ' ' after array element" {
		t.Fatalf("Unexpected = %v", err)
	}
	r.Pos = len(r.Data)
	if r.Peek() != 0 || r.Kind() != "value" || r.Unexpected("x").(*SyntaxError).Msg != endMsg {
		t.Fatal("at the end")
	}
}

// TestIJSON pins where I-JSON's refusals are reported and that a syntax
// error in the same string or number wins over them.
func TestIJSON(t *testing.T) {
	for _, tc := range []struct {
		in     string
		offset int
		ijson  bool
		msg    string
	}{
		{`"\ud800"`, 1, true, `lone surrogate \ud800 in string`},
		{`["ok","a\uDC00"]`, 8, true, `lone surrogate \uDC00 in string`},
		{`"\ud800\ud800\udc00"`, 1, true, `lone surrogate \ud800 in string`},
		{`{"\ud83d\ude00":"\ud83d"}`, 17, true, `lone surrogate \ud83d in string`},
		{`[1e999999, "\ud800"]`, 1, true, `number 1e999999 is out of the range of a float64`},
		{`-1.8e308`, 0, true, `number -1.8e308 is out of the range of a float64`},
		{"1" + strings.Repeat("0", 400), 0, true, `number 10000000000000000000... is out of the range of a float64`},
		{`"\ud800\u12"`, 11, false, `invalid character '"' in \u hexadecimal character escape`},
		{`"\ud800`, 7, false, endMsg},
		{`"\ud800` + "\x01" + `"`, 7, false, `invalid character '\x01' in string literal`},
		{`1e999x`, 0, true, `number 1e999 is out of the range of a float64`}, // the number is whole; what follows is the caller's
		{`[1e99999`, 1, true, `number 1e99999 is out of the range of a float64`},
	} {
		r := Reader{Data: []byte(tc.in)}
		err := r.Skip(0)
		var se *SyntaxError
		if !errors.As(err, &se) || se.Offset != tc.offset || se.IJSON != tc.ijson || se.Msg != tc.msg {
			t.Errorf("%s: error %#v, want at %d (I-JSON %v) %q", tc.in, err, tc.offset, tc.ijson, tc.msg)
		}
	}
	if err := (&SyntaxError{Offset: 3, Msg: "m", IJSON: true}).Error(); err != "not I-JSON (RFC 7493) at byte 3: m" {
		t.Errorf("Error() = %q", err)
	}
	// Unquote, given raw bytes it did not check, still never writes a
	// surrogate into UTF-8.
	if got := string(Unquote([]byte(`a\ud800b\udc00`))); got != "a\ufffdb\ufffd" {
		t.Errorf("Unquote of lone surrogates = %q", got)
	}
}

// ijsonBreaks lists the offsets where a JSON text, read as tokens by
// encoding/json, breaks I-JSON: unpaired surrogate escapes and numbers
// beyond float64. It is written apart from the reader, as its reference.
func ijsonBreaks(b []byte) []int {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var out []int
	prev := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return out
		}
		end := int(dec.InputOffset())
		raw := b[prev:end]
		prev = end
		switch v := tok.(type) {
		case json.Number:
			if f, err := strconv.ParseFloat(string(v), 64); err != nil && math.IsInf(f, 0) {
				out = append(out, end-len(v))
			}
		case string:
			q := bytes.IndexByte(raw, '"')
			out = append(out, loneSurrogates(raw[q:], end-len(raw)+q)...)
		}
	}
}

// loneSurrogates returns the offsets of the unpaired surrogate escapes in
// the quoted string s, which starts at offset base.
func loneSurrogates(s []byte, base int) []int {
	var out []int
	pending := -1 // a high surrogate waiting for its low one
	flush := func() {
		if pending >= 0 {
			out = append(out, pending)
			pending = -1
		}
	}
	for i := 1; i < len(s)-1; {
		if s[i] != '\\' {
			flush()
			i++
			continue
		}
		if s[i+1] != 'u' {
			flush()
			i += 2
			continue
		}
		v, _ := strconv.ParseUint(string(s[i+2:i+6]), 16, 32)
		switch r := rune(v); {
		case 0xdc00 <= r && r < 0xe000 && pending >= 0:
			pending = -1
		case 0xdc00 <= r && r < 0xe000:
			out = append(out, base+i)
		case 0xd800 <= r && r < 0xdc00:
			flush()
			pending = base + i
		default:
			flush()
		}
		i += 6
	}
	flush()
	return out
}

// FuzzSkip holds the reader to encoding/json: Skip accepts what json.Valid
// accepts (strict mode also wants valid UTF-8) unless the text breaks
// I-JSON, which ijsonBreaks confirms; strings read to what json.Unmarshal
// gives, and a syntax error is where encoding/json finds it.
func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{"a":[1,-2.5e-3,true,null,"x\u00e9"]}`, `-0`, `[`, `"\ud800"`, "\"\xff\"",
		` {} `, `"\ud83d\ude00\n"`, `[1,]`, `{"a" 1}`, `01`, `1.e3`, `nul`, "\"\x01\"", `"\q"`, `[[[[]]]]`,
		`[1e308,1e309]`, `"\udc00\ud800\udc00"`, `{"\ud800\"":0}`, `0.0001e312`, `[-17976931348623159e292]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := Reader{Data: b}
		r.Space()
		err := r.Skip(0)
		mine := err == nil && r.Peek() == 0 && r.Pos == len(b)
		var se *SyntaxError
		notIJSON := errors.As(err, &se) && se.IJSON
		theirs := json.Valid(b)
		switch {
		case notIJSON && theirs:
			if !slices.Contains(ijsonBreaks(b), se.Offset) {
				t.Fatalf("%q: refused as not I-JSON at %d (%s); the reference finds breaks at %v", b, se.Offset, se.Msg, ijsonBreaks(b))
			}
		case notIJSON:
			// Not JSON either, further on: the break came first.
		case mine != theirs:
			t.Fatalf("%q: Skip says %v (%v), json.Valid says %v", b, mine, err, theirs)
		case mine:
			if breaks := ijsonBreaks(b); len(breaks) > 0 {
				t.Fatalf("%q: accepted, but it breaks I-JSON at %v", b, breaks)
			}
		}
		if strict := Valid(b); strict != (mine && utf8.Valid(b)) {
			t.Fatalf("%q: Valid says %v", b, strict)
		}
		var v any
		jerr := json.Unmarshal(b, &v)
		var jse *json.SyntaxError
		if se != nil && !se.IJSON && se.Msg != endMsg && se.Msg != "exceeded max depth" && errors.As(jerr, &jse) && int64(se.Offset) != jse.Offset-1 {
			t.Fatalf("%q: error at %d (%s), encoding/json's after %d (%v)", b, se.Offset, se.Msg, jse.Offset, jse)
		}
		if s, ok := v.(string); ok && mine {
			r := Reader{Data: b}
			r.Space()
			raw, plain, err := r.RawString()
			if err != nil {
				t.Fatalf("%q: String: %v", b, err)
			}
			got := string(raw)
			if !plain {
				got = string(Unquote(raw))
			}
			if got != s {
				t.Fatalf("%q: read %q, encoding/json reads %q", b, got, s)
			}
		}
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a", "\"\\", "\x00\x7f\xff", "日本", "\xed\xa0\x80", "\u2028<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		if !utf8.Valid(b) || !Valid(b) {
			t.Fatalf("AppendString(%q) = %q: not valid JSON text", s, b)
		}
		var got, want string
		ref, _ := json.Marshal(s)
		if err := json.Unmarshal(b, &got); err != nil || json.Unmarshal(ref, &want) != nil || got != want {
			t.Fatalf("AppendString(%q) = %s reads as %q, encoding/json's as %q (%v)", s, b, got, want, err)
		}
		r := Reader{Data: b}
		if raw, plain, err := r.RawString(); err != nil || (plain && string(raw) != want) || (!plain && string(Unquote(raw)) != want) {
			t.Fatalf("AppendString(%q) = %s does not read back: %v", s, b, err)
		}
	})
}

func BenchmarkSkip(b *testing.B) {
	var doc []byte
	doc = append(doc, '[')
	for i := range 200 {
		if i > 0 {
			doc = append(doc, ',')
		}
		doc = append(doc, `{"id":"01HZX5N000123","from":"u3","text":"hello there, this is message 12","n":12.5,"ok":true,"tags":["a","b"],"x":null}`...)
	}
	doc = append(doc, ']')
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if !Valid(doc) {
			b.Fatal("not valid")
		}
	}
}

func BenchmarkAppendString(b *testing.B) {
	s := strings.Repeat("hello, wörld \"quoted\"\n", 8)
	buf := make([]byte, 0, 512)
	b.SetBytes(int64(len(s)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendString(buf[:0], s)
	}
}
