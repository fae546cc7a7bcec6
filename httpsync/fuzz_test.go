package httpsync

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/pebble"
)

var fuzzKey = []byte("0123456789abcdef0123456789abcdef")

// clientError fails unless err is a *syncpoint.Error with a message and one
// of the codes a client may see from these decoders.
func clientError(t *testing.T, err error, codes ...syncpoint.ErrorCode) {
	t.Helper()
	var se *syncpoint.Error
	if !errors.As(err, &se) || se.Message == "" || !slices.Contains(codes, se.Code) {
		t.Fatalf("error %v (%T) is not a client error of %v", err, err, codes)
	}
}

func FuzzCursor(f *testing.F) {
	good := encodeCursor(fuzzKey, "d1", []position{
		{Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}, Position: syncpoint.Position{Epoch: "01HZX3E1Q2", Seq: 45}},
		{Channel: syncpoint.Channel{Biz: "config", Target: syncpoint.GlobalTarget()}, Position: syncpoint.Position{Seq: 2}},
	})
	for _, s := range []string{good, good[:len(good)-1], "", "AQ", "AQA" + good[3:], "2014-02-14T09:12:43-0700", encodeCursor(fuzzKey, "d2", nil)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := decodeCursor(fuzzKey, "d1", s)
		if err != nil {
			clientError(t, err, syncpoint.CodeInvalidCursor)
			return
		}
		// A cursor that checks is one this server made: it encodes back
		// to itself, and names only valid channels.
		for _, p := range ps {
			if err := p.Channel.Validate(); err != nil {
				t.Fatalf("decoded channel %v: %v", p.Channel, err)
			}
		}
		if again := encodeCursor(fuzzKey, "d1", ps); again != s {
			t.Fatalf("%q decodes to %v, which encodes to %q", s, ps, again)
		}
		if _, err := decodeCursor(fuzzKey, "d2", s); err == nil {
			t.Fatal("d1's cursor passed for d2")
		}
	})
}

func FuzzAckKey(f *testing.F) {
	a := newAckKeys(fuzzKey, "d1")
	good := a.make(position{Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}, Position: syncpoint.Position{Epoch: "01HZX3E1Q2", Seq: 7}})
	for _, s := range []string{good, good[1:], good + "A", "", "AQ", "bad", newAckKeys(fuzzKey, "d2").make(position{Channel: syncpoint.Channel{Biz: "x", Target: syncpoint.GlobalTarget()}, Position: syncpoint.Position{Seq: 1}})} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := a.parse(s)
		if err != nil {
			clientError(t, err, syncpoint.CodeInvalidAckKey)
			return
		}
		if p.Seq == 0 || p.Channel.Validate() != nil {
			t.Fatalf("parsed %+v", p)
		}
		if again := a.make(p); again != s {
			t.Fatalf("%q parses to %+v, which makes %q", s, p, again)
		}
		if _, err := newAckKeys(fuzzKey, "d2").parse(s); err == nil {
			t.Fatal("d1's ack key passed for d2")
		}
	})
}

// fuzzHandler is a handler over a real store, for the body decoders.
func fuzzHandler(f *testing.F) (*Handler, *caller) {
	st, err := pebble.Open(f.TempDir(), pebble.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	reg := syncpoint.NewRegistry(st)
	notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
	notes.Writable = true
	typing := syncpoint.NewBiz("typing", syncpoint.TargetUser)
	typing.Persistent = false
	if err := reg.Load(context.Background(), []syncpoint.Biz{notes, typing, syncpoint.NewBiz("tasks", syncpoint.TargetGroup)}); err != nil {
		f.Fatal(err)
	}
	h := New(Config{Store: st, Registry: reg})
	c := &caller{id: syncpoint.Identity{DeviceID: "d1", UserID: "u1", Groups: []string{"g1"}}}
	return h, c
}

func FuzzSyncBody(f *testing.F) {
	h, c := fuzzHandler(f)
	for _, s := range []string{
		`{}`, ``, `{"limit": 1000, "wait": "25s"}`, `{"wait": "-1s"}`, `{"limit": -1}`,
		`{"write_id": "w1", "entities": [{"name": "notes", "created": [{"id": "a", "title": "x"}], "updated": [{"id": "b", "base_seq": 3, "x": [1]}], "deleted": [{"id": "c", "base_seq": 1}]}]}`,
		`{"entities": [{"name": "tasks", "scope": {"group": "g1"}}]}`, `{"entities": [{"name": "tasks", "scope": {"group": "g2"}}]}`,
		`{"entities": [{"name": "typing"}]}`, `{"entities": [{"name": "notes", "created": [{"id": 5}]}]}`,
		`{"entities": [{"name": "notes", "updated": [{"id": "x", "base_seq": "1"}]}], "write_id": "w"}`,
		`{"last_synced": "AQ"}`, `{"entities": [{]}`, `[]`, `{"unknown": 1}`,
		`{"positions": [{"channel": "notes/user:u1", "epoch": "e1", "seq": 4}], "format": "entries"}`,
		`{"positions": [{"channel": "nope", "seq": 1}]}`, `{"format": "xml"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		o, err := h.parseSync(context.Background(), c, body)
		if err != nil {
			clientError(t, err, syncpoint.CodeMalformed, syncpoint.CodeInvalid, syncpoint.CodeForbidden, syncpoint.CodeInvalidCursor)
			return
		}
		if o.limit < 1 || o.limit > MaxLimit || o.wait < 0 || o.wait > h.cfg.MaxWait {
			t.Fatalf("limit %d, wait %s", o.limit, o.wait)
		}
		if o.write != nil {
			if o.write.WriteID == "" {
				t.Fatal("uploads without a write_id")
			}
			for _, cs := range o.write.Changes {
				for _, r := range slices.Concat(cs.Created, cs.Updated) {
					if !json.Valid(r.Data) {
						t.Fatalf("upload data %q", r.Data)
					}
				}
			}
		}
	})
}

func FuzzStartBody(f *testing.F) {
	for _, s := range []string{`{"bizzes": ["chat"]}`, `{}`, `{"bizzes": null}`, `{"bizzes": "chat"}`, `{"data": {"bizzes": ["a"]}}`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var req StartRequest
		if err := decodeStartBody(body, &req); err != nil {
			clientError(t, err, syncpoint.CodeMalformed, syncpoint.CodeInvalid)
		}
		var v2 v2Envelope[StartRequest]
		if err := decodeLenient(body, &v2); err != nil {
			clientError(t, err, syncpoint.CodeInvalid)
		}
	})
}

func FuzzAckBody(f *testing.F) {
	for _, s := range []string{`{"ack_keys": ["a", "b"]}`, `{"ack_keys": []}`, `{}`, `{"ack_keys": [1]}`, `{"data": {"ack_keys": ["x"]}}`, `{"ack_keys": ["a"]} x`} {
		f.Add([]byte(s))
	}
	a := newAckKeys(fuzzKey, "d1")
	f.Fuzz(func(t *testing.T, body []byte) {
		var req AckRequest
		if err := decodeAckBody(body, &req); err != nil {
			clientError(t, err, syncpoint.CodeMalformed, syncpoint.CodeInvalid)
			return
		}
		for _, k := range req.AckKeys {
			if _, err := a.parse(k); err != nil {
				clientError(t, err, syncpoint.CodeInvalidAckKey)
			}
		}
		var v2 v2Envelope[AckRequest]
		if err := decodeLenient(body, &v2); err != nil {
			clientError(t, err, syncpoint.CodeInvalid)
		}
	})
}

// FuzzRecord: any data a store holds comes out as one JSON object with the
// key as its id, and an upload's reserved members are taken apart cleanly.
func FuzzRecord(f *testing.F) {
	for _, s := range []string{`{"a":1,"id":"x","seq":3}`, `"plain"`, `[1,2]`, `{}`, `{"a":{"b":[1,{"c":null}]}}`, `{"a":1,}`, `{"\u0069d":2}`, ``, `nul`} {
		f.Add("k", []byte(s))
	}
	f.Fuzz(func(t *testing.T, key string, data []byte) {
		out := appendRecord(nil, key, 7, true, data)
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("record of %q is not an object: %s: %v", data, out, err)
		}
		if _, ok := v["id"].(string); !ok {
			t.Fatalf("record %s lost its id", out)
		}
		if v["seq"] != 7.0 {
			t.Fatalf("record %s lost its seq", out)
		}
		u, err := splitUpload(data, "r", true)
		if err != nil {
			clientError(t, err, syncpoint.CodeInvalid)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(u.Data, &m); err != nil {
			t.Fatalf("upload data of %q: %s: %v", data, u.Data, err)
		}
		if _, ok := m["id"]; ok {
			t.Fatalf("upload data %s kept its id", u.Data)
		}
	})
}
