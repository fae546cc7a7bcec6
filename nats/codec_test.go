package nats

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func sampleEntries() []syncpoint.Entry {
	at := time.Date(2026, 3, 4, 5, 6, 7, 891011121, time.UTC)
	return []syncpoint.Entry{
		{
			Channel:        syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")},
			Epoch:          "e1",
			Seq:            42,
			Op:             syncpoint.OpPut,
			Key:            "k1",
			Data:           json.RawMessage(`{"text":"hi"}`),
			CreatedAt:      at,
			ExpiresAt:      at.Add(time.Hour),
			Conditions:     syncpoint.Conditions{Platforms: []string{"ios", "android"}, MinAppVersion: "1.2.0", MaxAppVersion: "2.0.0"},
			Origin:         syncpoint.OriginAPI,
			IdempotencyKey: "idem-1",
		},
		{
			Channel:   syncpoint.Channel{Biz: "config", Target: syncpoint.GlobalTarget()},
			Op:        syncpoint.OpMsg,
			CreatedAt: time.Unix(-5, 3).UTC(), // before 1970
			Origin:    "device:d1",
		},
		{}, // every field zero
	}
}

func TestEntriesRoundTrip(t *testing.T) {
	in := sampleEntries()
	out, err := decodeEntries(appendEntries(nil, in))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip changed the entries\n in %+v\nout %+v", in, out)
	}
	// Data aliases the message, with its capacity cut.
	out[0].Data = append(out[0].Data, 'x')
	if out[1].Channel.Biz != "config" {
		t.Fatal("appending to decoded data overwrote the next entry")
	}
}

func TestDecodeEntriesRejects(t *testing.T) {
	good := appendEntries(nil, sampleEntries())
	for name, b := range map[string][]byte{
		"empty":          {},
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge count":     {0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge string":    {1, 0xff, 0xff, 0xff, 0xff, 0x0f},
	} {
		if _, err := decodeEntries(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	h := header{kind: kindEvent, flags: flagFirst, node: "node-a", instance: 1<<63 + 5, seq: 300}
	msg := append(appendHeader(nil, h), "frag"...)
	got, frag, err := decodeHeader(msg)
	if err != nil || got != h || string(frag) != "frag" {
		t.Fatalf("got %+v %q %v, want %+v", got, frag, err, h)
	}
	if n := len(appendHeader(nil, header{node: string(make([]byte, MaxNodeLen)), instance: ^uint64(0), seq: ^uint64(0)})); n > maxHeaderLen {
		t.Fatalf("a header takes %d bytes; maxHeaderLen is %d", n, maxHeaderLen)
	}
	for name, b := range map[string][]byte{
		"short":       {messageVersion, kindEntries},
		"version":     append([]byte{9}, msg[1:]...),
		"kind":        append([]byte{messageVersion, 7}, msg[2:]...),
		"flags":       append([]byte{messageVersion, kindEvent, 0x80}, msg[3:]...),
		"no node":     appendHeader(nil, header{kind: kindEntries, seq: 1}),
		"seq 0":       appendHeader(nil, header{kind: kindEntries, node: "n"}),
		"no instance": {messageVersion, kindEntries, flagFirst | flagLast, 1, 'n', 0},
	} {
		if _, _, err := decodeHeader(b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}

func TestAssembler(t *testing.T) {
	a := newAssembler(10)
	msg := func(node string, instance, seq uint64, flags byte) header {
		return header{kind: kindEntries, flags: flags, node: node, instance: instance, seq: seq}
	}
	whole := byte(flagFirst | flagLast)
	steps := []struct {
		h        header
		frag     string
		wantBody string // "" when no body is done
		wantLost string
	}{
		{msg("a", 1, 7, whole), "one", "one", ""}, // first heard: any seq starts it
		{msg("a", 1, 8, flagFirst), "tw", "", ""},
		{msg("b", 1, 1, whole), "b1", "b1", ""}, // origins are apart
		{msg("a", 1, 9, 0), "o-", "", ""},
		{msg("a", 1, 10, flagLast), "two", "two-two", ""},
		{msg("a", 1, 12, whole), "gap", "gap", lostGap},                   // 11 went missing
		{msg("a", 1, 13, flagFirst), "x", "", ""},                         // never finished:
		{msg("a", 1, 14, whole), "y", "y", lostGap},                       // a new body starts
		{msg("a", 2, 1, whole), "restart", "restart", ""},                 // a new instance starts over
		{msg("a", 2, 2, flagFirst), "x", "", ""},                          //
		{msg("a", 3, 1, whole), "z", "z", lostGap},                        // restarted mid-body
		{msg("a", 3, 2, flagLast), "orphan", "", lostGap},                 // its start is missing
		{msg("a", 3, 3, flagFirst), "123456", "", ""},                     //
		{msg("a", 3, 4, flagLast), "789012", "", lostTooLarge},            // over maxBytes
		{msg("c", 1, 5, 0), "mid", "", lostGap},                           // first heard mid-body
		{msg("a", 3, 5, whole), "bigger than ten", "bigger than ten", ""}, // whole bodies are not bounded here
	}
	for i, s := range steps {
		body, done, lost := a.add(s.h, []byte(s.frag))
		if done != (s.wantBody != "") || string(body) != s.wantBody || lost != s.wantLost {
			t.Fatalf("step %d: got body %q done %v lost %q, want %q lost %q", i, body, done, lost, s.wantBody, s.wantLost)
		}
	}
	a.reset()
	if _, _, lost := a.add(msg("a", 3, 99, whole), []byte("after reset")); lost != "" {
		t.Fatalf("after reset: lost %q, want none", lost)
	}
}

func TestReconnectDelayBacksOff(t *testing.T) {
	b := &Broker{opts: Options{ReconnectWait: 100 * time.Millisecond, MaxReconnectWait: 2 * time.Second}}
	for _, c := range []struct {
		attempts int
		max      time.Duration
	}{{0, 100 * time.Millisecond}, {1, 100 * time.Millisecond}, {3, 400 * time.Millisecond}, {10, 2 * time.Second}, {1000, 2 * time.Second}} {
		if d := b.reconnectDelay(c.attempts); d < c.max/2 || d > c.max {
			t.Errorf("attempt %d: delay %v, want %v to %v", c.attempts, d, c.max/2, c.max)
		}
	}
}

// Seeds beyond these, grown by short campaigns, live in
// testdata/fuzz/FuzzDecodeMessage.
func FuzzDecodeMessage(f *testing.F) {
	h := header{kind: kindEntries, flags: flagFirst | flagLast, node: "node-a", instance: 7, seq: 1}
	f.Add(appendEntries(appendHeader(nil, h), sampleEntries()))
	f.Add(appendEntries(appendHeader(nil, h), nil))
	ev := syncpoint.Event{Kind: syncpoint.EventHead, Node: "node-a", Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.GroupTarget("g1")}, Epoch: "e", Seq: 9, At: time.Unix(1, 2)}
	h.kind = kindEvent
	withEvent, err := appendEvent(appendHeader(nil, h), &ev)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(withEvent)
	h.kind, h.flags = kindEntries, flagFirst
	f.Add(append(appendHeader(nil, h), 3, 4, 'c', 'h')) // the first fragment of a body
	f.Add([]byte{})
	f.Add([]byte{messageVersion, kindEntries, flagFirst | flagLast, 1, 'n', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, frag, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		h2, frag2, err := decodeHeader(append(appendHeader(nil, h), frag...))
		if err != nil || h2 != h || !bytes.Equal(frag, frag2) {
			t.Fatalf("header round trip: %+v %v, want %+v", h2, err, h)
		}
		switch h.kind {
		case kindEntries:
			entries, err := decodeEntries(frag)
			if err != nil {
				if !errors.Is(err, errMalformed) {
					t.Fatalf("error %v does not wrap errMalformed", err)
				}
				return
			}
			again, err := decodeEntries(appendEntries(nil, entries))
			if err != nil || !reflect.DeepEqual(entries, again) {
				t.Fatalf("entries round trip: %v\n got %+v\nwant %+v", err, again, entries)
			}
		case kindEvent:
			ev, err := decodeEvent(frag)
			if err != nil {
				return
			}
			// Zones come back as new values, so compare encodings.
			enc, err := appendEvent(nil, &ev)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", ev, err)
			}
			ev2, err := decodeEvent(enc)
			if err != nil {
				t.Fatalf("decode re-encoded %q: %v", enc, err)
			}
			if enc2, _ := appendEvent(nil, &ev2); !bytes.Equal(enc, enc2) {
				t.Fatalf("event round trip: %q, then %q", enc, enc2)
			}
		}
	})
}
