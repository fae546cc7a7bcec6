package wire

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire/wirepb"
)

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeProtoRejects(t *testing.T) {
	// Frame field 99 is a message a later version might add.
	future := protowire.AppendTag(nil, 99, protowire.BytesType)
	future = protowire.AppendBytes(future, nil)
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType) // hello
	inner := protowire.AppendTag(nil, 3, protowire.BytesType)   // device_id
	inner = protowire.AppendBytes(inner, []byte("\xff"))
	badUTF8 = protowire.AppendBytes(badUTF8, inner)

	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "holds no message"},
		{"unknown message", future, "holds no message"},
		{"garbage", []byte{0xff, 0xff, 0xff}, "frame is not valid protobuf"},
		{"truncated", mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Ping{Ping: &wirepb.Ping{Nonce: 300}}})[:3], "frame is not valid protobuf"},
		{"invalid utf-8", badUTF8, "a string is not valid UTF-8"},
		{"entry data", mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Push{Push: &wirepb.Push{Entries: []*wirepb.Entry{{Channel: "c/global", Data: []byte("{")}}}}}), `entry "c/global": data is not valid JSON`},
		{"current data", mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_WriteResult{WriteResult: &wirepb.WriteResult{Errors: []*wirepb.RecordError{{Current: &wirepb.Entry{Data: []byte("x")}}}}}}), "data is not valid JSON"},
		{"record data", mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Write{Write: &wirepb.Write{Changes: []*wirepb.ChangeSet{{Updated: []*wirepb.Record{{Id: "r", Data: []byte("[1,]")}}}}}}}), `record "r": data is not valid JSON`},
		{"heartbeat", mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Welcome{Welcome: &wirepb.Welcome{HeartbeatIntervalMs: 1 << 63}}}), "heartbeat_interval_ms is out of range"},
	} {
		f, err := DecodeProto(tc.in)
		if err == nil {
			t.Errorf("%s: decoded to %+v, want an error", tc.name, f)
			continue
		}
		if codeOf(err) != syncpoint.CodeMalformed || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want malformed saying %q", tc.name, err, tc.want)
		}
		if strings.Contains(err.Error(), "proto:") || strings.Contains(err.Error(), "wire-format") {
			t.Errorf("%s: %v speaks of the protobuf library's internals", tc.name, err)
		}
	}
}

func TestDecodeProtoAccepts(t *testing.T) {
	// Data is trimmed of surrounding white space, like the JSON codec does.
	b := mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Push{Push: &wirepb.Push{Entries: []*wirepb.Entry{{Data: []byte(" \n{\"a\": 1}\t")}, {}}}}})
	f, err := DecodeProto(b)
	if err != nil {
		t.Fatal(err)
	}
	want := &Frame{Push: &Push{Entries: []Entry{{Data: json.RawMessage(`{"a": 1}`)}, {}}}}
	if !reflect.DeepEqual(f, want) {
		t.Fatalf("got %#v", f)
	}
	// Unknown fields inside a message are skipped.
	ping := protowire.AppendTag(nil, 1, protowire.VarintType)
	ping = protowire.AppendVarint(ping, 5)
	ping = protowire.AppendTag(ping, 50, protowire.BytesType)
	ping = protowire.AppendBytes(ping, []byte("later"))
	frame := protowire.AppendTag(nil, 7, protowire.BytesType)
	frame = protowire.AppendBytes(frame, ping)
	f, err = DecodeProto(frame)
	if err != nil || !reflect.DeepEqual(f, &Frame{Ping: &Ping{Nonce: 5}}) {
		t.Fatalf("unknown field: got %+v, %v", f, err)
	}
	// An empty error message is still an error frame.
	f, err = DecodeProto(mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Error{Error: &wirepb.Error{}}}))
	if err != nil || f.Error == nil {
		t.Fatalf("empty error: got %+v, %v", f, err)
	}
}

// An encode failure says what is wrong in our words, not the library's.
func TestEncodeProtoInvalidUTF8(t *testing.T) {
	_, err := EncodeProto(nil, &Frame{Hello: &Hello{DeviceID: "\xff"}})
	if codeOf(err) != syncpoint.CodeInvalid || !strings.Contains(err.Error(), "not valid UTF-8") || strings.Contains(err.Error(), "proto:") {
		t.Fatalf("got %v, want invalid saying a string is not valid UTF-8", err)
	}
}

// TestProtoMatchesSchema guards the hand-kept mapping: across the sample
// frames, every field of every message in the schema is set at least once.
func TestProtoMatchesSchema(t *testing.T) {
	set := map[protoreflect.FullName]bool{}
	for _, tc := range sampleFrames() {
		pb, err := toPB(tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		collectSet(set, pb.ProtoReflect())
	}
	msgs := wirepb.File_syncpoint_proto.Messages()
	for i := 0; i < msgs.Len(); i++ {
		fields := msgs.Get(i).Fields()
		for j := 0; j < fields.Len(); j++ {
			if name := fields.Get(j).FullName(); !set[name] {
				t.Errorf("%s is never set by the sample frames", name)
			}
		}
	}
}

func collectSet(set map[protoreflect.FullName]bool, m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		set[fd.FullName()] = true
		switch {
		case fd.IsList() && fd.Message() != nil:
			for j := 0; j < v.List().Len(); j++ {
				collectSet(set, v.List().Get(j).Message())
			}
		case fd.Message() != nil:
			collectSet(set, v.Message())
		}
		return true
	})
}

func TestPushFastPath(t *testing.T) {
	for _, tc := range sampleFrames() {
		if tc.frame.Push == nil {
			continue
		}
		b, err := EncodeProto(nil, tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		fast, ok := decodePushFast(b)
		if !ok {
			t.Fatalf("%s: the fast path refused what EncodeProto wrote", tc.name)
		}
		if !reflect.DeepEqual(fast, tc.frame) {
			t.Fatalf("%s: fast path got %#v", tc.name, fast)
		}
		// Inside a larger buffer (cap beyond len) data must still be right.
		big := append(make([]byte, 0, len(b)+64), b...)
		if fast, _ := decodePushFast(big); !reflect.DeepEqual(fast, tc.frame) {
			t.Fatalf("%s: wrong with spare capacity", tc.name)
		}
	}
	// Anything unusual goes to the generic path.
	for name, b := range map[string][]byte{
		"ping":           mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Ping{Ping: &wirepb.Ping{}}}),
		"bad data":       mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Push{Push: &wirepb.Push{Entries: []*wirepb.Entry{{Data: []byte("{")}}}}}),
		"trailing field": append(mustMarshal(t, &wirepb.Frame{Msg: &wirepb.Frame_Push{Push: &wirepb.Push{}}}), 0x38, 0x01),
	} {
		if _, ok := decodePushFast(b); ok {
			t.Errorf("%s: the fast path took it", name)
		}
	}
}
