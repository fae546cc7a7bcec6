package wire

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func readEvents(t *testing.T, stream string) []Event {
	t.Helper()
	r := NewEventReader(strings.NewReader(stream), 1<<10)
	var out []Event
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read %q: %v", stream, err)
		}
		out = append(out, ev)
	}
}

// Events written by AppendEvent read back whole, line breaks in their data
// included, and an id set once stays the last id.
func TestEventRoundTrip(t *testing.T) {
	var b []byte
	b = AppendEvent(b, "id-1", EventEntry, []byte(`{"a":1}`))
	b = AppendEvent(b, "", EventGap, []byte("{\n\"b\":\r\n2\r}"))
	b = append(b, ": ping\n\n"...)
	b = AppendEvent(b, "id-3", EventClose, nil)
	got := readEvents(t, string(b))
	want := []Event{
		{ID: "id-1", Type: "entry", Data: []byte(`{"a":1}`)},
		{ID: "id-1", Type: "gap", Data: []byte("{\n\"b\":\n2\n}")},
		{ID: "id-1", Comment: true, Data: []byte("ping")},
		{ID: "id-3", Type: "close", Data: []byte{}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back\n %+v\nwant\n %+v", got, want)
	}
}

// The parsing rules of the HTML standard's event stream, case by case.
func TestEventReaderRules(t *testing.T) {
	cases := []struct {
		name, in string
		want     []Event
	}{
		{"CR and CRLF end lines", "data: a\rdata: b\r\n\r", []Event{{Type: "message", Data: []byte("a\nb")}}},
		{"no data, no event", "event: x\nid: 7\n\ndata: y\n\n", []Event{{ID: "7", Type: "message", Data: []byte("y")}}},
		{"a field without a colon", "data\n\n", []Event{{Type: "message", Data: []byte{}}}},
		{"only one space is dropped", "data:  two\n\n", []Event{{Type: "message", Data: []byte(" two")}}},
		{"an id with NUL is ignored", "id: a\x00b\ndata: x\n\n", []Event{{Type: "message", Data: []byte("x")}}},
		{"byte order mark", "\xEF\xBB\xBFdata: x\n\n", []Event{{Type: "message", Data: []byte("x")}}},
		{"unknown fields", "foo: bar\ndata: x\n\n", []Event{{Type: "message", Data: []byte("x")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := readEvents(t, tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	r := NewEventReader(strings.NewReader("retry: 2500\nretry: x\n\n"), 0)
	if _, err := r.Next(); err != io.EOF || r.Retry() != 2500*time.Millisecond {
		t.Fatalf("retry %v (%v), want 2.5s", r.Retry(), err)
	}
	if _, err := NewEventReader(strings.NewReader("data: x\n"), 0).Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a stream cut inside an event: %v", err)
	}
	if _, err := NewEventReader(strings.NewReader("data: "+strings.Repeat("x", 100)+"\n\n"), 64).Next(); syncpoint.Code(err) != syncpoint.CodeTooLarge {
		t.Fatalf("an event over the bound: %v", err)
	}
}

func TestEntryJSONRoundTrip(t *testing.T) {
	e := Entry{Channel: "chat/user:u1", Seq: 42, Op: "put", Key: "k", Data: []byte(`{"text":"hi"}`),
		CreatedAt: fromUnixMilli(1700000000000), ExpiresAt: fromUnixMilli(1702592000000), Origin: "api"}
	b, err := AppendEntryJSON(nil, &e)
	if err != nil {
		t.Fatal(err)
	}
	push, err := EncodeJSON(nil, &Frame{Push: &Push{Entries: []Entry{e}}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(push, b) {
		t.Fatalf("entry %s is not written as in a push: %s", b, push)
	}
	got, err := DecodeEntryJSON(b)
	if err != nil || !reflect.DeepEqual(got, e) {
		t.Fatalf("decoded %+v, %v; want %+v", got, err, e)
	}
	for _, bad := range []string{``, `[]`, `{"seq":-1}`, `{"seq":1} {}`, `{"data":}`} {
		if _, err := DecodeEntryJSON([]byte(bad)); syncpoint.Code(err) != syncpoint.CodeMalformed {
			t.Errorf("decode %q: %v, want malformed", bad, err)
		}
	}
	if _, err := AppendEntryJSON(nil, &Entry{Data: []byte(`{`)}); err == nil {
		t.Fatal("an entry whose data is not JSON was encoded")
	}
}

func FuzzEventReader(f *testing.F) {
	f.Add([]byte(AppendEvent(nil, "abc", EventEntry, []byte("{\n}"))))
	f.Add([]byte("data: a\r\rdata\r\n: c\nretry: 10\nid\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewEventReader(bytes.NewReader(b), 256)
		for range len(b) + 1 {
			ev, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && syncpoint.Code(err) != syncpoint.CodeTooLarge {
					t.Fatalf("error %v", err)
				}
				return
			}
			if len(ev.Data) > 256 {
				t.Fatalf("an event of %d bytes passed the bound of 256", len(ev.Data))
			}
			if ev.Comment {
				continue
			}
			// What was read writes back to the same event.
			again, err := NewEventReader(bytes.NewReader(AppendEvent(nil, ev.ID, ev.Type, ev.Data)), 1<<20).Next()
			if ev.ID != "" && (err != nil || !reflect.DeepEqual(again, ev)) {
				t.Fatalf("event %+v rewritten reads as %+v, %v", ev, again, err)
			}
		}
		t.Fatal("more events than bytes")
	})
}

func FuzzDecodeEntryJSON(f *testing.F) {
	f.Add([]byte(`{"channel":"chat/user:u1","seq":42,"op":"msg","data":{"text":"hi"},"created_at":1700000000000,"origin":"api"}`))
	f.Add([]byte(`{"seq":1,"data":"\ud83d","x":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntryJSON(b)
		if err != nil {
			if code := syncpoint.Code(err); code != syncpoint.CodeMalformed && code != syncpoint.CodeTooLarge {
				t.Fatalf("error %v", err)
			}
			return
		}
		enc, err := AppendEntryJSON(nil, &e)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", e, err)
		}
		again, err := DecodeEntryJSON(enc)
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("round trip of %q: %q, %v", b, enc, err)
		}
	})
}
