package wire

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the encoder")

// TestJSONGolden pins the exact JSON of every sample frame; the files are
// indented for reading and compared compacted.
func TestJSONGolden(t *testing.T) {
	for _, tc := range sampleFrames() {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodeJSON(nil, tc.frame)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", tc.name+".json")
			if *update {
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, got, "", "  "); err != nil {
					t.Fatal(err)
				}
				pretty.WriteByte('\n')
				if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, compact.Bytes()) {
				t.Errorf("encoding differs from %s\n got %s\nwant %s", path, got, compact.Bytes())
			}
			f, err := DecodeJSON(compact.Bytes())
			if err != nil || !reflect.DeepEqual(f, tc.frame) {
				t.Errorf("decoding %s: %v", path, err)
			}
		})
	}
}

// TestDocExamples checks every JSON example in docs/protocol.md: it decodes,
// and it is written the way the encoder writes it, so the doc cannot drift
// from the code. Every message type must have an example.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "protocol.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	seen := map[string]bool{}
	for _, m := range blocks {
		block := m[1]
		if !bytes.HasPrefix(bytes.TrimSpace(block), []byte(`{"`)) || bytes.Contains(block, []byte("// not a frame")) {
			continue
		}
		f, err := DecodeJSON(block)
		if err != nil {
			t.Errorf("doc example does not decode: %v\n%s", err, block)
			continue
		}
		seen[f.Type()] = true
		got, err := EncodeJSON(nil, f)
		if err != nil {
			t.Errorf("doc example does not encode: %v\n%s", err, block)
			continue
		}
		// Data keeps its own spacing, so compare both sides compacted.
		var doc, code bytes.Buffer
		if err := json.Compact(&doc, block); err != nil {
			t.Fatal(err)
		}
		if err := json.Compact(&code, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(doc.Bytes(), code.Bytes()) {
			t.Errorf("doc example is not in canonical form (field order, zero fields left out)\n doc %s\ncode %s", doc.Bytes(), code.Bytes())
		}
	}
	for _, name := range []string{"hello", "welcome", "push", "ack", "write", "write_result", "ping", "pong", "error"} {
		if !seen[name] {
			t.Errorf("docs/protocol.md has no JSON example of %s", name)
		}
	}
}

func TestDecodeJSONRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{``, "want a JSON object"},
		{`   `, "want a JSON object"},
		{`[]`, "want a JSON object"},
		{`null`, "want a JSON object"},
		{`"ping"`, "want a JSON object"},
		{`{`, "want a member name"},
		{`{}`, "holds no message"},
		{`{"ping":{},"pong":{}}`, "holds one message; ping came first"},
		{`{"ping":{},"ping":{}}`, "holds one message"},
		{`{"pingg":{}}`, `unknown message "pingg"`},
		{`{"Ping":{}}`, `unknown message "Ping"`},
		{`{"` + strings.Repeat("é", 100) + `":{}}`, `unknown message "` + strings.Repeat("é", 32) + `..."`},
		{`{"ping":null}`, "want an object"},
		{`{"ping":1}`, "want an object"},
		{`{"ping":{}} {}`, "data after the frame"},
		{`{"ping":{}}x`, "data after the frame"},
		{`{"ping":{"nonce":-1}}`, `"nonce": want an unsigned integer`},
		{`{"ping":{"nonce":1.5}}`, `"nonce": want an unsigned integer`},
		{`{"ping":{"nonce":1e3}}`, `want an unsigned integer`},
		{`{"ping":{"nonce":"1"}}`, `want an unsigned integer`},
		{`{"ping":{"nonce":01}}`, `leading zero`},
		{`{"ping":{"nonce":18446744073709551616}}`, `overflows`},
		{`{"ping":{"nonce":1,}}`, "want a member name"},
		{`{"ping":{"nonce" 1}}`, "want : after a member name"},
		{`{"ping":{"nonce":1 "x":2}}`, "want , or }"},
		{`{"ping":{nonce:1}}`, "want a member name"},
		{`{"error":{"code":4294967296}}`, "out of range"},
		{`{"error":{"fatal":1}}`, "want true or false"},
		{`{"error":{"fatal":tru}}`, "want true or false"},
		{`{"error":{"message":5}}`, `"message": want a string`},
		{`{"error":{"message":"a` + "\x01" + `"}}`, "bad string"},
		{`{"error":{"message":"a` + "\xff" + `"}}`, "bad string"},
		{`{"error":{"message":"\x"}}`, "bad string"},
		{`{"error":{"message":"\u12"}}`, "bad string"},
		{`{"error":{"message":"unterminated}}`, "bad string"},
		// I-JSON (RFC 7493), which the JSON reader holds frames to.
		{`{"error":{"message":"\ud800"}}`, "bad string"},
		{`{"push":{"entries":[{"data":[1e999]}]}}`, "data is not valid JSON"},
		{`{"push":{"entries":[{"data":{"a":"\udc00"}}]}}`, "data is not valid JSON"},
		{`{"hello":{"versions":1}}`, `"versions": want an array`},
		{`{"hello":{"versions":["1"]}}`, "want an unsigned integer in the array"},
		{`{"hello":{"versions":[1,]}}`, "want a value after ,"},
		{`{"hello":{"versions":[1 2]}}`, "want , or ]"},
		{`{"hello":{"versions":[4294967296]}}`, "out of range"},
		{`{"hello":{"bizzes":[1]}}`, "want a string in the array"},
		{`{"hello":{"positions":[null]}}`, "want an object in the array"},
		{`{"hello":{"positions":[{"seq":true}]}}`, `"seq": want an unsigned integer`},
		{`{"hello":{"positions":{}}}`, "want an array"},
		{`{"welcome":{"heartbeat_interval_ms":18446744073709551615}}`, "out of range"},
		{`{"welcome":{"max_batch":4294967296}}`, "out of range"},
		{`{"push":{"entries":[{"data":}]}}`, `"data": data is not valid JSON`},
		{`{"push":{"entries":[{"data":{"a":1,}}]}}`, "data is not valid JSON"},
		{`{"push":{"entries":[{"data":[1,2}]}}`, "data is not valid JSON"},
		{`{"push":{"entries":[{"data":NaN}]}}`, "data is not valid JSON"},
		{`{"push":{"entries":[{"data":"` + "\xc3\x28" + `"}]}}`, "data is not valid JSON"},
		{`{"push":{"entries":[{"created_at":1.5}]}}`, "want an integer"},
		{`{"push":{"entries":[{"created_at":-}]}}`, "want an integer"},
		{`{"push":{"entries":[{"created_at":-9223372036854775809}]}}`, "overflows"},
		{`{"push":{"entries":[{"created_at":9223372036854775808}]}}`, "overflows"},
		{`{"push":{"entries":[{"op":1}]}}`, "want a string"},
		{`{"push":{"entries":[["x"]]}}`, "want an object in the array"},
		{`{"push":{"entries":[{}],"unknown":[1,}}`, `"unknown": not valid JSON`},
		{`{"write":{"changes":[{"created":[{"data":{]}}]}}`, "data is not valid JSON"},
		{`{"write_result":{"error":5}}`, "want an object"},
		{`{"write_result":{"errors":[{"current":[]}]}}`, "want an object"},
		{`{"ping":{"x":` + strings.Repeat("[", jsontext.MaxDepth+1) + strings.Repeat("]", jsontext.MaxDepth+1) + `}}`, "not valid JSON"},
	} {
		f, err := DecodeJSON([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: decoded to %+v, want an error", tc.in, f)
			continue
		}
		if code := codeOf(err); code != syncpoint.CodeMalformed {
			t.Errorf("%s: code %q, want malformed", tc.in, code)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.in, err, tc.want)
		}
	}
}

func TestDecodeJSONAccepts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want *Frame
	}{
		{" \t\r\n{ \"ping\" : { \"nonce\" : 3 } } \n", &Frame{Ping: &Ping{Nonce: 3}}},
		{`{"ping":{"nonce":null}}`, &Frame{Ping: &Ping{}}},
		{`{"pong":{"nonce":0}}`, &Frame{Pong: &Pong{}}},
		// Members this version does not know are skipped, whatever they hold.
		{`{"ping":{"future":{"a":[1,{"b":null}],"c":"\u00e9"},"nonce":9,"more":-1.5e-3}}`, &Frame{Ping: &Ping{Nonce: 9}}},
		// Escaped member names are unescaped before matching.
		{`{"p\u0069ng":{"n\u006fnce":4}}`, &Frame{Ping: &Ping{Nonce: 4}}},
		// A repeated member: the last one wins.
		{`{"hello":{"device_id":"a","device_id":"b","versions":[1],"versions":[2]}}`, &Frame{Hello: &Hello{DeviceID: "b", Versions: []uint32{2}}}},
		{`{"hello":{"token":null,"bizzes":null,"positions":[],"versions":[]}}`, &Frame{Hello: &Hello{}}},
		{`{"hello":{"token":"\ud83d\ude00 \"\\\/\b\f\n\r\t"}}`, &Frame{Hello: &Hello{Token: "😀 \"\\/\b\f\n\r\t"}}},
		{`{"push":{"entries":[{"data":  {"a" : [1, 2]}  ,"created_at":-5}]}}`,
			&Frame{Push: &Push{Entries: []Entry{{Data: json.RawMessage(`{"a" : [1, 2]}`), CreatedAt: ms(-5)}}}}},
		{`{"push":{"entries":[{"data":null,"expires_at":null}]}}`, &Frame{Push: &Push{Entries: []Entry{{Data: json.RawMessage(`null`)}}}}},
		{`{"welcome":{"heartbeat_interval_ms":1500}}`, &Frame{Welcome: &Welcome{HeartbeatInterval: 1500 * time.Millisecond}}},
		{`{"write_result":{"error":null,"errors":[{"current":null}]}}`, &Frame{WriteResult: &WriteResult{Errors: []RecordError{{}}}}},
		{`{"error":{}}`, &Frame{Error: &Error{}}},
	} {
		got, err := DecodeJSON([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tc.in, got, tc.want)
		}
	}
}

// TestEncodeJSONStrings checks that every string comes out as JSON that
// encoding/json reads back to the same text, and that invalid UTF-8 turns
// into U+FFFD rather than into an invalid text frame.
func TestEncodeJSONStrings(t *testing.T) {
	for _, s := range []string{"", "plain", "\"\\/", "\x00\x01\x1f\x7f", "\n\r\t\b\f", "é✓😀", "\u2028", "<script>&"} {
		b := jsontext.AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil || got != s {
			t.Errorf("%q: encoded %s, read back %q, %v", s, b, got, err)
		}
	}
	b := jsontext.AppendString(nil, "a\xffb\xc3")
	if string(b) != `"a\ufffdb\ufffd"` {
		t.Errorf("invalid UTF-8: got %s", b)
	}
}

func TestValidJSON(t *testing.T) {
	for _, s := range []string{`0`, `-0`, `1.5e+10`, `-0.0E-1`, `""`, `"\u00e9"`, `[]`, `{}`, ` [ 1 , { "a" : [ ] } ] `, `true`, `false`, `null`, `"é"`} {
		if !jsontext.Valid([]byte(s)) {
			t.Errorf("%s: not valid", s)
		}
	}
	for _, s := range []string{``, ` `, `01`, `1.`, `.5`, `1e`, `-`, `+1`, `[1,]`, `{"a"}`, `{"a":1,}`, `{1:2}`, `[1 2]`, `tru`, `nul`, `"a`, "\"\x7f\xff\"", `1 2`, `{}}`, `]`, `[`, `"\u00g0"`} {
		if jsontext.Valid([]byte(s)) {
			t.Errorf("%q: valid", s)
		}
	}
	deep := strings.Repeat("[", jsontext.MaxDepth) + strings.Repeat("]", jsontext.MaxDepth)
	if !jsontext.Valid([]byte(deep)) {
		t.Error("MaxDepth nesting is refused")
	}
	if jsontext.Valid([]byte("[" + deep + "]")) {
		t.Error("nesting past MaxDepth is accepted")
	}
}
