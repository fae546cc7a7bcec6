package jsonbench

import (
	stdjson "encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	v2text "github.com/go-json-experiment/json/jsontext"
	goccy "github.com/goccy/go-json"
	segment "github.com/segmentio/encoding/json"

	"github.com/syncpoint/syncpoint/internal/jsontext"
	"github.com/syncpoint/syncpoint/wire"
)

// The mirror types give the libraries the wire's JSON shape through struct
// tags. R is the raw-JSON type each library wants for data.
type frameJ[R ~[]byte] struct {
	Hello *helloJ    `json:"hello,omitempty"`
	Push  *pushJ[R]  `json:"push,omitempty"`
	Ack   *ackJ      `json:"ack,omitempty"`
	Write *writeJ[R] `json:"write,omitempty"`
}

type positionJ struct {
	Channel string `json:"channel,omitempty"`
	Epoch   string `json:"epoch,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
}

type helloJ struct {
	Versions   []uint32    `json:"versions,omitempty"`
	Token      string      `json:"token,omitempty"`
	DeviceID   string      `json:"device_id,omitempty"`
	Platform   string      `json:"platform,omitempty"`
	AppVersion string      `json:"app_version,omitempty"`
	Bizzes     []string    `json:"bizzes,omitempty"`
	Positions  []positionJ `json:"positions,omitempty"`
}

type entryJ[R ~[]byte] struct {
	Channel   string `json:"channel,omitempty"`
	Seq       uint64 `json:"seq,omitempty"`
	Op        string `json:"op,omitempty"`
	Key       string `json:"key,omitempty"`
	Data      R      `json:"data,omitempty"`
	CreatedAt int64  `json:"created_at,omitempty"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
	Origin    string `json:"origin,omitempty"`
}

type pushJ[R ~[]byte] struct {
	Entries   []entryJ[R] `json:"entries,omitempty"`
	Positions []positionJ `json:"positions,omitempty"`
}

type ackJ struct {
	Positions []positionJ `json:"positions,omitempty"`
}

type recordJ[R ~[]byte] struct {
	ID      string   `json:"id,omitempty"`
	BaseSeq uint64   `json:"base_seq,omitempty"`
	Data    R        `json:"data,omitempty"`
	Fields  []string `json:"fields,omitempty"`
}

type changeSetJ[R ~[]byte] struct {
	Biz     string       `json:"biz,omitempty"`
	Target  string       `json:"target,omitempty"`
	Created []recordJ[R] `json:"created,omitempty"`
	Updated []recordJ[R] `json:"updated,omitempty"`
	Deleted []recordJ[R] `json:"deleted,omitempty"`
}

type writeJ[R ~[]byte] struct {
	WriteID string          `json:"write_id,omitempty"`
	Changes []changeSetJ[R] `json:"changes,omitempty"`
}

// codec is one way of turning text into a wire.Frame and back.
type codec struct {
	name   string
	decode func([]byte) (*wire.Frame, error)
	encode func(dst []byte, f *wire.Frame) ([]byte, error)
}

func libCodec[R ~[]byte](name string, unmarshal func([]byte, any) error, marshal func(any) ([]byte, error)) codec {
	return codec{
		name: name,
		decode: func(b []byte) (*wire.Frame, error) {
			var m frameJ[R]
			if err := unmarshal(b, &m); err != nil {
				return nil, err
			}
			return toWire(&m), nil
		},
		encode: func(dst []byte, f *wire.Frame) ([]byte, error) {
			b, err := marshal(fromWire[R](f))
			return append(dst, b...), err
		},
	}
}

var v2opts = []jsonv2.Options{v2text.AllowDuplicateNames(true)}

func codecs() []codec {
	return []codec{
		{name: "handwritten", decode: wire.DecodeJSON, encode: wire.EncodeJSON},
		libCodec[stdjson.RawMessage]("encoding_json", stdjson.Unmarshal, stdjson.Marshal),
		libCodec[v2text.Value]("go-json-experiment",
			func(b []byte, v any) error { return jsonv2.Unmarshal(b, v, v2opts...) },
			func(v any) ([]byte, error) { return jsonv2.Marshal(v, v2opts...) }),
		libCodec[stdjson.RawMessage]("goccy", goccy.Unmarshal, goccy.Marshal),
		libCodec[stdjson.RawMessage]("segmentio", segment.Unmarshal, segment.Marshal),
		// What the hand-written decoder guarantees on top of a library's:
		// the frame is I-JSON (no lone surrogates, no number out of a
		// double's range), checked in one pass before the library decodes.
		libCodec[stdjson.RawMessage]("goccy+ijson", validThen(goccy.Unmarshal), goccy.Marshal),
		libCodec[stdjson.RawMessage]("segmentio+ijson", validThen(segment.Unmarshal), segment.Marshal),
	}
}

func validThen(unmarshal func([]byte, any) error) func([]byte, any) error {
	return func(b []byte, v any) error {
		if !jsontext.Valid(b) {
			return errors.New("not I-JSON")
		}
		return unmarshal(b, v)
	}
}

func millis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

func unmillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func positionsToWire(ps []positionJ) []wire.Position {
	if len(ps) == 0 {
		return nil
	}
	out := make([]wire.Position, len(ps))
	for i, p := range ps {
		out[i] = wire.Position{Channel: p.Channel, Epoch: p.Epoch, Seq: p.Seq}
	}
	return out
}

func positionsFromWire(ps []wire.Position) []positionJ {
	out := make([]positionJ, len(ps))
	for i, p := range ps {
		out[i] = positionJ{Channel: p.Channel, Epoch: p.Epoch, Seq: p.Seq}
	}
	return out
}

func recordsToWire[R ~[]byte](rs []recordJ[R]) []wire.Record {
	if len(rs) == 0 {
		return nil
	}
	out := make([]wire.Record, len(rs))
	for i, r := range rs {
		out[i] = wire.Record{ID: r.ID, BaseSeq: r.BaseSeq, Data: stdjson.RawMessage(r.Data), Fields: r.Fields}
	}
	return out
}

func toWire[R ~[]byte](m *frameJ[R]) *wire.Frame {
	f := &wire.Frame{}
	switch {
	case m.Hello != nil:
		h := m.Hello
		f.Hello = &wire.Hello{Versions: h.Versions, Token: h.Token, DeviceID: h.DeviceID, Platform: h.Platform,
			AppVersion: h.AppVersion, Bizzes: h.Bizzes, Positions: positionsToWire(h.Positions)}
	case m.Push != nil:
		p := &wire.Push{Positions: positionsToWire(m.Push.Positions)}
		if len(m.Push.Entries) > 0 {
			p.Entries = make([]wire.Entry, len(m.Push.Entries))
		}
		for i, e := range m.Push.Entries {
			p.Entries[i] = wire.Entry{Channel: e.Channel, Seq: e.Seq, Op: e.Op, Key: e.Key, Data: stdjson.RawMessage(e.Data),
				CreatedAt: millis(e.CreatedAt), ExpiresAt: millis(e.ExpiresAt), Origin: e.Origin}
		}
		f.Push = p
	case m.Ack != nil:
		f.Ack = &wire.Ack{Positions: positionsToWire(m.Ack.Positions)}
	case m.Write != nil:
		w := &wire.Write{WriteID: m.Write.WriteID}
		for _, c := range m.Write.Changes {
			w.Changes = append(w.Changes, wire.ChangeSet{Biz: c.Biz, Target: c.Target,
				Created: recordsToWire(c.Created), Updated: recordsToWire(c.Updated), Deleted: recordsToWire(c.Deleted)})
		}
		f.Write = w
	}
	return f
}

func fromWire[R ~[]byte](f *wire.Frame) *frameJ[R] {
	m := &frameJ[R]{}
	switch {
	case f.Push != nil:
		p := &pushJ[R]{Positions: positionsFromWire(f.Push.Positions), Entries: make([]entryJ[R], len(f.Push.Entries))}
		for i, e := range f.Push.Entries {
			p.Entries[i] = entryJ[R]{Channel: e.Channel, Seq: e.Seq, Op: e.Op, Key: e.Key, Data: R(e.Data),
				CreatedAt: unmillis(e.CreatedAt), ExpiresAt: unmillis(e.ExpiresAt), Origin: e.Origin}
		}
		m.Push = p
	case f.Ack != nil:
		m.Ack = &ackJ{Positions: positionsFromWire(f.Ack.Positions)}
	}
	return m
}

// Inputs shaped like real traffic: what a device sends (hello, ack, write)
// and what it receives (a push of 10 entries of about 128 bytes of data).
func inputs() map[string][]byte {
	data := `{"text":"` + strings.Repeat("x", 100) + `","n":1}`
	var entries []string
	for i := 1; i <= 10; i++ {
		entries = append(entries, fmt.Sprintf(`{"channel":"chat/user:u1","seq":%d,"op":"msg","data":%s,"created_at":1700000000000,"origin":"api"}`, 1000+i, data))
	}
	return map[string][]byte{
		"hello": []byte(`{"hello":{"versions":[1],"token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSIsImdyb3VwcyI6WyJnMSJdfQ.c2lnbmF0dXJl",` +
			`"device_id":"d1","platform":"ios","app_version":"2.3.0","bizzes":["chat","config","notes"],` +
			`"positions":[{"channel":"chat/user:u1","epoch":"01HZX3E1Q2","seq":41},{"channel":"config/global","epoch":"01HZX3E1Q3","seq":7},{"channel":"notes/user:u1","epoch":"01HZX3E1Q4","seq":1200}]}}`),
		"ack": []byte(`{"ack":{"positions":[{"channel":"chat/user:u1","epoch":"01HZX3E1Q2","seq":45},{"channel":"config/global","seq":2}]}}`),
		"write": []byte(`{"write":{"write_id":"01HZX5W000","changes":[{"biz":"notes",` +
			`"created":[{"id":"01HZX5N001","data":{"title":"groceries","items":["milk","eggs"]}}],` +
			`"updated":[{"id":"01HZX5N000","base_seq":12,"data":{"title":"todo","done":true}}],` +
			`"deleted":[{"id":"01HZX5M999","base_seq":9}]}]}}`),
		"push10": []byte(`{"push":{"entries":[` + strings.Join(entries, ",") + `],"positions":[{"channel":"chat/user:u1","epoch":"01HZX3E1Q2","seq":1010}]}}`),
	}
}

// TestSameFrames shows every codec decodes the inputs to the same frame and
// that the push encodings decode back to it, so the benchmark compares
// equal work.
func TestSameFrames(t *testing.T) {
	cs := codecs()
	for name, in := range inputs() {
		want, err := wire.DecodeJSON(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, c := range cs[1:] {
			got, err := c.decode(in)
			if err != nil {
				t.Fatalf("%s %s: %v", c.name, name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s decodes %s differently:\n got %+v\nwant %+v", c.name, name, got, want)
			}
		}
		if want.Push == nil {
			continue
		}
		for _, c := range cs {
			b, err := c.encode(nil, want)
			if err != nil {
				t.Fatalf("%s encode: %v", c.name, err)
			}
			back, err := wire.DecodeJSON(b)
			if err != nil || !reflect.DeepEqual(back, want) {
				t.Errorf("%s encodes a push that does not decode back: %v\n%s", c.name, err, b)
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	in := inputs()
	for _, name := range []string{"hello", "ack", "write", "push10"} {
		for _, c := range codecs() {
			b.Run(name+"/"+c.name, func(b *testing.B) {
				b.SetBytes(int64(len(in[name])))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.decode(in[name]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkEncodePush(b *testing.B) {
	f, err := wire.DecodeJSON(inputs()["push10"])
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range codecs() {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				if buf, err = c.encode(buf[:0], f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
