package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/syncpoint/syncpoint"
)

// ms is a wire-exact time: whole milliseconds, UTC.
func ms(v int64) time.Time { return time.UnixMilli(v).UTC() }

// sampleFrames has every message with every field set (and some corner
// values), named as in the golden files.
func sampleFrames() []struct {
	name  string
	frame *Frame
} {
	entry := Entry{
		Channel:   "chat/user:u1",
		Seq:       42,
		Op:        "msg",
		Data:      json.RawMessage(`{"text":"hi"}`),
		CreatedAt: ms(1700000000000),
		Origin:    "api",
	}
	return []struct {
		name  string
		frame *Frame
	}{
		{"hello", &Frame{Hello: &Hello{
			Versions:   []uint32{1},
			Token:      "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig",
			DeviceID:   "d1",
			Platform:   "ios",
			AppVersion: "2.3.0",
			Bizzes:     []string{"chat", "config", "team"},
			Positions: []Position{
				{Channel: "chat/user:u1", Epoch: "01HZX3E1Q2", Seq: 41},
				{Channel: "config/global", Epoch: "01HZX3E1Q3", Seq: 7},
			},
		}}},
		{"welcome", &Frame{Welcome: &Welcome{
			Version:           1,
			SessionID:         "01HZX4AB7K",
			HeartbeatInterval: 25 * time.Second,
			MaxBatch:          256,
			Channels: []ChannelStatus{
				{Channel: "chat/user:u1", Status: StatusOK, Epoch: "01HZX3E1Q2", FirstSeq: 1, LastSeq: 45, From: 41},
				{Channel: "config/global", Status: StatusReset, Epoch: "01HZX9Z000", FirstSeq: 1, LastSeq: 2},
				{Channel: "team/group:g1", Status: StatusGap, Epoch: "01HZX3E1Q4", FirstSeq: 100, LastSeq: 180, From: 99},
			},
		}}},
		{"push", &Frame{Push: &Push{
			Entries: []Entry{
				entry,
				{Channel: "config/global", Seq: 1, Op: "put", Key: "theme", Data: json.RawMessage(`{"color":"dark","sizes":[1,2.5,-3e2],"ok":true,"none":null}`),
					CreatedAt: ms(1700000001000), ExpiresAt: ms(1702592001000), Origin: "api"},
				{Channel: "config/global", Seq: 2, Op: "delete", Key: "banner", CreatedAt: ms(1700000002000), Origin: "device:d2"},
			},
			Positions: []Position{
				{Channel: "chat/user:u1", Epoch: "01HZX3E1Q2", Seq: 45},
				{Channel: "config/global", Epoch: "01HZX9Z000", Seq: 2},
			},
		}}},
		{"push_positions_only", &Frame{Push: &Push{Positions: []Position{{Channel: "chat/user:u1", Epoch: "01HZX3E1Q2", Seq: 50}}}}},
		{"ack", &Frame{Ack: &Ack{Positions: []Position{
			{Channel: "chat/user:u1", Epoch: "01HZX3E1Q2", Seq: 45},
			{Channel: "config/global", Seq: 2},
		}}}},
		{"write", &Frame{Write: &Write{WriteID: "01HZX5W000", Changes: []ChangeSet{
			{Biz: "notes",
				Created: []Record{{ID: "01HZX5N001", Data: json.RawMessage(`{"title":"groceries"}`)}},
				Updated: []Record{{ID: "01HZX5N000", BaseSeq: 12, Data: json.RawMessage(`{"title":"todo","done":true}`), Fields: []string{"done"}}},
				Deleted: []Record{{ID: "01HZX5M999", BaseSeq: 9}},
			},
			{Biz: "tasks", Target: "group:g1", Created: []Record{{ID: "5f1d7c2e9b1e8a3d4c6b7a80", Data: json.RawMessage(`"plain string"`)}}},
		}}}},
		{"write_result", &Frame{WriteResult: &WriteResult{
			WriteID: "01HZX5W000",
			Saved: []Saved{
				{Channel: "notes/user:u1", ID: "01HZX5N001", Seq: 13},
				{Channel: "notes/user:u1", ID: "01HZX5M999", Seq: 14, Overwrote: true},
			},
			Errors: []RecordError{
				{Channel: "notes/user:u1", ID: "01HZX5N000", Code: "conflict", Message: "changed since base_seq 12",
					Current: &Entry{Channel: "notes/user:u1", Seq: 15, Op: "put", Key: "01HZX5N000", Data: json.RawMessage(`{"title":"todo!"}`), CreatedAt: ms(1700000003000), Origin: "device:d2"}},
				{Channel: "tasks/group:g1", ID: "x", Field: "id", Code: "invalid", Message: "id: want 1-128 characters"},
			},
		}}},
		{"write_result_failed", &Frame{WriteResult: &WriteResult{
			WriteID: "01HZX5W001",
			Error:   &Error{Code: CloseUnavailable, Reason: "unavailable", Message: "the webhook did not answer in time"},
		}}},
		{"ping", &Frame{Ping: &Ping{Nonce: 7}}},
		{"pong", &Frame{Pong: &Pong{Nonce: 7}}},
		{"ping_zero", &Frame{Ping: &Ping{}}},
		{"error", &Frame{Error: &Error{Code: CloseSlowConsumer, Reason: "slow_consumer", Message: "the send queue is full; resume from your sync point", Fatal: true}}},
		{"hello_strings", &Frame{Hello: &Hello{
			Token:      "quote\" backslash\\ slash/ nl\n tab\t ctl\x01\x1f del\x7f",
			DeviceID:   "ünïcødé ✓ 😀",
			Platform:   "\u2028\u2029",
			AppVersion: "<&>",
			Versions:   []uint32{1, 2, 4294967295},
		}}},
		{"push_extremes", &Frame{Push: &Push{Entries: []Entry{{
			Channel:   "c/global",
			Seq:       1<<64 - 1,
			Op:        "msg",
			Data:      json.RawMessage(`null`),
			CreatedAt: ms(-1),
			ExpiresAt: ms(1<<62 - 1),
		}}}}},
	}
}

func TestRoundTrip(t *testing.T) {
	for _, codec := range []Codec{JSON, Proto} {
		for _, tc := range sampleFrames() {
			t.Run(codec.Name()+"/"+tc.name, func(t *testing.T) {
				b, err := codec.Encode(nil, tc.frame)
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				got, err := codec.Decode(b)
				if err != nil {
					t.Fatalf("decode: %v\n%s", err, b)
				}
				if !reflect.DeepEqual(got, tc.frame) {
					t.Fatalf("round trip changed the frame\n got %#v\nwant %#v", got, tc.frame)
				}
				// Encoding appends: a prefix in dst is kept.
				b2, err := codec.Encode([]byte("prefix"), tc.frame)
				if err != nil || string(b2) != "prefix"+string(b) {
					t.Fatalf("encode after a prefix: %v", err)
				}
			})
		}
	}
}

// TestCrossCodec checks that both codecs carry the same information: a
// frame taken through JSON and then protobuf comes back unchanged.
func TestCrossCodec(t *testing.T) {
	for _, tc := range sampleFrames() {
		j, _ := EncodeJSON(nil, tc.frame)
		f1, err := DecodeJSON(j)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := EncodeProto(nil, f1)
		f2, err := DecodeProto(p)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f2, tc.frame) {
			t.Errorf("%s: json then proto changed the frame", tc.name)
		}
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	for _, codec := range []Codec{JSON, Proto} {
		f := sampleFrames()[2].frame // push
		b, _ := codec.Encode(nil, f)
		got, err := codec.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		for i := range b {
			b[i] = 'x'
		}
		if !reflect.DeepEqual(got, f) {
			t.Fatalf("%s: decoded frame changed when the input buffer was overwritten", codec.Name())
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	bad := []struct {
		name string
		f    *Frame
		want string
	}{
		{"empty", &Frame{}, "no message"},
		{"two", &Frame{Ping: &Ping{}, Pong: &Pong{}}, "more than one"},
		{"entry data", &Frame{Push: &Push{Entries: []Entry{{Channel: "c/global", Seq: 3, Data: []byte(`{"a":`)}}}}, "c/global seq 3: data is not valid JSON"},
		{"record data", &Frame{Write: &Write{Changes: []ChangeSet{{Created: []Record{{ID: "r1", Data: []byte(`nope`)}}}}}}, `record "r1": data`},
		{"current data", &Frame{WriteResult: &WriteResult{Errors: []RecordError{{Current: &Entry{Data: []byte(`[`)}}}}}, "data is not valid JSON"},
		{"negative heartbeat", &Frame{Welcome: &Welcome{HeartbeatInterval: -time.Second}}, "negative"},
		{"negative max_batch", &Frame{Welcome: &Welcome{MaxBatch: -1}}, "max_batch"},
	}
	for _, codec := range []Codec{JSON, Proto} {
		for _, tc := range bad {
			_, err := codec.Encode(nil, tc.f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s/%s: got %v, want an error with %q", codec.Name(), tc.name, err, tc.want)
			}
			if code := codeOf(err); code != "invalid" {
				t.Errorf("%s/%s: code %q, want invalid", codec.Name(), tc.name, code)
			}
		}
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		in   []uint32
		want uint32
		ok   bool
	}{
		{nil, 0, false},
		{[]uint32{0}, 0, false},
		{[]uint32{2, 3}, 0, false},
		{[]uint32{1}, 1, true},
		{[]uint32{3, 1, 2}, 1, true},
	} {
		v, ok := Negotiate(tc.in)
		if v != tc.want || ok != tc.ok {
			t.Errorf("Negotiate(%v) = %d, %v; want %d, %v", tc.in, v, ok, tc.want, tc.ok)
		}
	}
}

func TestFrameType(t *testing.T) {
	for _, tc := range sampleFrames() {
		typ := tc.frame.Type()
		if !strings.HasPrefix(tc.name, typ) || typ == "" {
			t.Errorf("%s: Type() = %q", tc.name, typ)
		}
	}
	if typ := (&Frame{}).Type(); typ != "" {
		t.Errorf("empty frame: Type() = %q", typ)
	}
}

func TestCodecFor(t *testing.T) {
	if CodecFor(SubprotocolJSON) != JSON || CodecFor(SubprotocolProto) != Proto || CodecFor("chat") != nil {
		t.Fatal("CodecFor does not map the subprotocols")
	}
	for _, s := range Subprotocols() {
		if CodecFor(s) == nil {
			t.Errorf("offered subprotocol %q has no codec", s)
		}
	}
}

// TestMaxFrameItems checks the bound on list elements in both codecs, and
// that decoding stops early: a frame of empty elements must not turn into
// a huge allocation.
func TestMaxFrameItems(t *testing.T) {
	jsonPush := func(n int) []byte {
		return []byte(`{"push":{"entries":[` + strings.Repeat(`{},`, n-1) + `{}]}}`)
	}
	protoPush := func(n int, pos int) []byte {
		var b []byte
		for range n {
			b = append(b, 0x0a, 0x00) // entries: an empty Entry
		}
		for range pos {
			b = append(b, 0x12, 0x00) // positions: an empty Position
		}
		return append([]byte{0x1a}, appendVarint(b)...)
	}
	for _, tc := range []struct {
		name   string
		decode func([]byte) (*Frame, error)
		in     []byte
		ok     bool
	}{
		{"json at the limit", DecodeJSON, jsonPush(MaxFrameItems), true},
		{"json over", DecodeJSON, jsonPush(MaxFrameItems + 1), false},
		{"json over across lists", DecodeJSON, []byte(`{"hello":{"bizzes":["a"],"positions":[` + strings.Repeat(`{},`, MaxFrameItems-1) + `{}]}}`), false},
		{"proto at the limit", DecodeProto, protoPush(MaxFrameItems-1, 1), true},
		{"proto over", DecodeProto, protoPush(MaxFrameItems+1, 0), false},
		{"proto over across lists", DecodeProto, protoPush(MaxFrameItems, 1), false},
		{"proto generic over", decodeProtoGeneric, protoPush(MaxFrameItems+1, 0), false},
	} {
		f, err := tc.decode(tc.in)
		switch {
		case tc.ok && (err != nil || len(f.Push.Entries)+len(f.Push.Positions) != MaxFrameItems):
			t.Errorf("%s: %v", tc.name, err)
		case !tc.ok && codeOf(err) != syncpoint.CodeTooLarge:
			t.Errorf("%s: got %v, want too_large", tc.name, err)
		}
	}
}

func appendVarint(b []byte) []byte {
	return append(protowire.AppendVarint(nil, uint64(len(b))), b...)
}
