package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// Seeds beyond the sample frames live in testdata/fuzz/<FuzzName>.

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range sampleFrames() {
		b, err := EncodeJSON(nil, s.frame)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{`{}`, `{"ping":{}}`, `{"push":{"entries":[{"data":[{"a":"\ud83d"}]}]}}`, `{"hello":{"x":[[[]]]}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeJSON(b)
		if err != nil {
			if code := syncpoint.Code(err); fr != nil || (code != syncpoint.CodeMalformed && code != syncpoint.CodeTooLarge) {
				t.Fatalf("error %v with frame %v", err, fr)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		// Anything that decodes re-encodes, in either codec, to the same frame.
		enc, err := EncodeJSON(nil, fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !utf8.Valid(enc) || !json.Valid(enc) {
			t.Fatalf("encoded invalid JSON text %q", enc)
		}
		again, err := DecodeJSON(enc)
		if err != nil {
			t.Fatalf("decode re-encoded %q: %v", enc, err)
		}
		if !reflect.DeepEqual(fr, again) {
			t.Fatalf("JSON round trip changed the frame\n  in %q\n out %q", b, enc)
		}
		p, err := EncodeProto(nil, fr)
		if err != nil {
			t.Fatalf("encode proto: %v", err)
		}
		viaProto, err := DecodeProto(p)
		if err != nil || !reflect.DeepEqual(fr, viaProto) {
			t.Fatalf("proto round trip changed the frame: %v\n  in %q", err, b)
		}
	})
}

func FuzzDecodeProto(f *testing.F) {
	for _, s := range sampleFrames() {
		b, err := EncodeProto(nil, s.frame)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x08, 0x01}) // ping, nonce 1
	f.Fuzz(func(t *testing.T, b []byte) {
		if fast, ok := decodePushFast(b); ok {
			ref, err := decodeProtoGeneric(b)
			if err != nil || !reflect.DeepEqual(fast, ref) {
				t.Fatalf("the push fast path disagrees with the generic decoder (%v)\n in %x", err, b)
			}
		}
		if fast, ok := decodeAckFast(b); ok {
			ref, err := decodeProtoGeneric(b)
			if err != nil || !reflect.DeepEqual(fast, ref) {
				t.Fatalf("the ack fast path disagrees with the generic decoder (%v)\n in %x", err, b)
			}
		}
		fr, err := DecodeProto(b)
		if err != nil {
			if code := syncpoint.Code(err); fr != nil || (code != syncpoint.CodeMalformed && code != syncpoint.CodeTooLarge) {
				t.Fatalf("error %v with frame %v", err, fr)
			}
			return
		}
		enc, err := EncodeProto(nil, fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, err := DecodeProto(enc)
		if err != nil || !reflect.DeepEqual(fr, again) {
			t.Fatalf("proto round trip changed the frame: %v\n in %x", err, b)
		}
		j, err := EncodeJSON(nil, fr)
		if err != nil {
			t.Fatalf("encode JSON: %v", err)
		}
		viaJSON, err := DecodeJSON(j)
		if err != nil || !reflect.DeepEqual(fr, viaJSON) {
			t.Fatalf("JSON round trip changed the frame: %v\n in %x\nout %s", err, b, j)
		}
	})
}

func FuzzReader(f *testing.F) {
	f.Add(frameBytes([]byte("a"), []byte("bc")), uint16(16))
	f.Add([]byte{0, 0, 0, 0}, uint16(16))
	f.Add([]byte{0, 0, 0, 17}, uint16(16))
	f.Add([]byte{0, 0, 1}, uint16(0))
	f.Add(append([]byte{0, 0, 0, 5}, "abc"...), uint16(8))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		max := int(limit%4096) + 1
		r := NewReader(bytes.NewReader(in), max)
		var again bytes.Buffer
		for {
			b, err := r.Next()
			if err != nil {
				switch {
				case err == io.EOF:
					if !bytes.Equal(again.Bytes(), in) {
						t.Fatal("io.EOF before the end of the input")
					}
				case err == io.ErrUnexpectedEOF, syncpoint.Code(err) == syncpoint.CodeTooLarge, syncpoint.Code(err) == syncpoint.CodeMalformed:
				default:
					t.Fatalf("unexpected error %v", err)
				}
				if !bytes.HasPrefix(in, again.Bytes()) {
					t.Fatal("frames read do not re-frame to the input")
				}
				return
			}
			if len(b) == 0 || len(b) > max || cap(r.buf) > max {
				t.Fatalf("frame of %d bytes (buffer %d) with limit %d", len(b), cap(r.buf), max)
			}
			if err := WriteFrame(&again, b); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzValidJSON checks the hand-written JSON scanner against encoding/json:
// it accepts exactly what json.Valid accepts, except invalid UTF-8 and text
// that breaks I-JSON (lone surrogates, numbers out of range).
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5e-3,true,null,"x\u00e9"]}`, `-0`, `[`, `"\ud800"`, "\"\xff\"", ` {} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mine, theirs := jsontext.Valid(b), json.Valid(b)
		if mine && !theirs {
			t.Fatalf("accepted %q, which encoding/json refuses", b)
		}
		r := jsontext.Reader{Data: b}
		r.Space()
		var se *jsontext.SyntaxError
		ijson := errors.As(r.Skip(0), &se) && se.IJSON
		if theirs && !mine && utf8.Valid(b) && !ijson {
			t.Fatalf("refused %q, which encoding/json accepts", b)
		}
		if mine {
			tb := jsontext.Trim(b)
			if !jsontext.Valid(tb) || (len(tb) > 0 && (tb[0] == ' ' || tb[len(tb)-1] == ' ')) {
				t.Fatalf("trim broke %q", b)
			}
		}
	})
}
