package sse

import (
	"encoding/base64"
	"reflect"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
)

var testKey = []byte("sse-test-key-0123456789")

func sampleID(t testing.TB) (string, []chanHash, []syncpoint.Position) {
	hashes := []chanHash{hashChannel("chat/user:u1"), hashChannel("config/global"), hashChannel("team/group:g1")}
	pos := []syncpoint.Position{{Epoch: "4e5c61ae98464883", Seq: 42}, {}, {Epoch: "Not-Hex", Seq: 1 << 40}}
	return string(newIDCodec(testKey, "u1", "d1").appendID(nil, hashes, pos)), hashes, pos
}

// An id is URL-safe, names each channel with a position once, and reads
// back to those positions; seq 0 is left out.
func TestIDRoundTrip(t *testing.T) {
	id, hashes, pos := sampleID(t)
	if strings.ContainsAny(id, "+/=%&?# ") {
		t.Fatalf("id %q is not URL-safe", id)
	}
	if len(id) > 80 {
		t.Fatalf("id of two positions is %d characters: %q", len(id), id)
	}
	got, err := newIDCodec(testKey, "u1", "d1").decodeID(id)
	want := []idPos{{hashes[0], pos[0]}, {hashes[2], pos[2]}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, want)
	}
	empty := string(newIDCodec(testKey, "u1", "d1").appendID(nil, nil, nil))
	if got, err := newIDCodec(testKey, "u1", "d1").decodeID(empty); err != nil || len(got) != 0 {
		t.Fatalf("the id of no positions: %+v, %v", got, err)
	}
}

// An id read by another user or device, under another key, or with any
// byte changed is refused; so is anything that is not an id.
func TestIDTampering(t *testing.T) {
	id, _, _ := sampleID(t)
	for _, tc := range []struct {
		name string
		c    *idCodec
	}{
		{"another device", newIDCodec(testKey, "u1", "d2")},
		{"another user", newIDCodec(testKey, "u2", "d1")},
		{"another key", newIDCodec([]byte("another-key-0123456789"), "u1", "d1")},
	} {
		if _, err := tc.c.decodeID(id); syncpoint.Code(err) != syncpoint.CodeForbidden {
			t.Errorf("%s: %v, want forbidden", tc.name, err)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(id)
	c := newIDCodec(testKey, "u1", "d1")
	for i := 1; i < len(raw); i++ {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		if _, err := c.decodeID(base64.RawURLEncoding.EncodeToString(b)); syncpoint.Code(err) != syncpoint.CodeForbidden {
			t.Fatalf("byte %d changed: %v, want forbidden", i, err)
		}
	}
	for _, bad := range []string{"x", "!!!!", id + "=", "AA", strings.Repeat("A", 40)} {
		if _, err := c.decodeID(bad); syncpoint.Code(err) != syncpoint.CodeMalformed && syncpoint.Code(err) != syncpoint.CodeForbidden {
			t.Errorf("decode %q: %v, want malformed", bad, err)
		}
	}
	if _, err := c.decodeID(strings.Repeat("A", MaxIDLen+1)); syncpoint.Code(err) != syncpoint.CodeTooLarge {
		t.Errorf("an id over the limit: %v", err)
	}
}

// FuzzLastEventID feeds the decoder what a client may send, and also
// bodies signed with the right key, so that the parser behind the tag is
// reached: nothing panics, errors have the documented codes, and whatever
// decodes encodes back to the same positions.
func FuzzLastEventID(f *testing.F) {
	id, _, _ := sampleID(f)
	f.Add(id)
	f.Add("")
	f.Add("AQA")
	f.Fuzz(func(t *testing.T, id string) {
		c := newIDCodec(testKey, "u1", "d1")
		check := func(got []idPos, err error) {
			if err != nil {
				switch syncpoint.Code(err) {
				case syncpoint.CodeMalformed, syncpoint.CodeForbidden, syncpoint.CodeTooLarge:
				default:
					t.Fatalf("error %v", err)
				}
				return
			}
			hashes := make([]chanHash, len(got))
			pos := make([]syncpoint.Position, len(got))
			for i, p := range got {
				hashes[i], pos[i] = p.channel, p.pos
			}
			again, err := c.decodeID(string(c.appendID(nil, hashes, pos)))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("re-encoded %+v reads as %+v, %v", got, again, err)
			}
		}
		check(c.decodeID(id))
		if body, err := base64.RawURLEncoding.DecodeString(id); err == nil && len(body) > 0 {
			body[0] = idVersion
			signed := append(body, c.tag(body)...)
			check(c.decodeID(base64.RawURLEncoding.EncodeToString(signed)))
		}
	})
}
