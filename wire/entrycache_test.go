package wire

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/syncpoint/syncpoint"
)

// genericProto encodes f the way every other frame is encoded: through
// the generated types.
func genericProto(t *testing.T, f *Frame) ([]byte, error) {
	t.Helper()
	pb, err := toPB(f)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{}.Marshal(pb)
}

func randomPush(r *rand.Rand) *Push {
	strs := []string{"", "a", "chat/user:u1", "naïve", strings.Repeat("k", 200)}
	times := []time.Time{{}, time.UnixMilli(1), time.UnixMilli(1_764_000_000_000), time.UnixMilli(-5)}
	p := &Push{}
	for range r.IntN(5) {
		e := Entry{
			Channel: strs[r.IntN(len(strs))], Seq: []uint64{0, 1, 300, math.MaxUint64}[r.IntN(4)],
			Op: strs[r.IntN(2)], Key: strs[r.IntN(len(strs))], Origin: strs[r.IntN(len(strs))],
			CreatedAt: times[r.IntN(len(times))], ExpiresAt: times[r.IntN(len(times))],
		}
		switch r.IntN(3) {
		case 1:
			e.Data = json.RawMessage(`{"n":1}`)
		case 2:
			e.Data = json.RawMessage(`"` + strings.Repeat("d", r.IntN(300)) + `"`)
		}
		p.Entries = append(p.Entries, e)
	}
	for range r.IntN(3) {
		p.Positions = append(p.Positions, Position{Channel: strs[r.IntN(len(strs))], Epoch: strs[r.IntN(2)], Seq: uint64(r.IntN(1 << 20))})
	}
	return p
}

// The push fast path writes the bytes the generated code writes, from the
// cache or not, and refuses what it refuses.
func TestPushProtoMatchesGenerated(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		p := randomPush(r)
		f := &Frame{Push: p}
		want, err := genericProto(t, f)
		if err != nil {
			t.Fatal(err)
		}
		for pass := range 3 { // no cache, then a cache filled, then read
			if pass == 1 {
				for j := range p.Entries {
					p.Entries[j].Cache = &EntryCache{}
				}
			}
			got, err := EncodeProto([]byte("prefix"), f)
			if err != nil || !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
				t.Fatalf("push %d pass %d: %x, %v; want %x", i, pass, got, err, want)
			}
		}
	}
	for name, e := range map[string]Entry{
		"data not JSON":  {Channel: "c", Data: json.RawMessage(`{`)},
		"key not UTF-8":  {Channel: "c", Key: "\xff"},
		"channel broken": {Channel: "\xc3"},
	} {
		f := &Frame{Push: &Push{Entries: []Entry{e}}}
		_, gerr := genericProto(t, f)
		_, err := EncodeProto(nil, f)
		if gerr == nil || syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("%s: fast %v, generic %v; want both refused", name, err, gerr)
		}
	}
	bad := &Frame{Push: &Push{Positions: []Position{{Channel: "\xff"}}}}
	if _, err := EncodeProto(nil, bad); syncpoint.Code(err) != syncpoint.CodeInvalid {
		t.Errorf("a position that is not UTF-8: %v", err)
	}
}

// An entry's JSON from its cache is the JSON it encodes to.
func TestEntryCacheJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		p := randomPush(r)
		want, err := EncodeJSON(nil, &Frame{Push: p})
		if err != nil {
			t.Fatal(err)
		}
		for j := range p.Entries {
			p.Entries[j].Cache = &EntryCache{}
		}
		for pass := range 2 {
			got, err := EncodeJSON(nil, &Frame{Push: p})
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("push %d pass %d: %s, %v; want %s", i, pass, got, err, want)
			}
		}
	}
	e := Entry{Channel: "c", Data: json.RawMessage(`{`), Cache: &EntryCache{}}
	for range 2 {
		if _, err := EncodeJSON(nil, &Frame{Push: &Push{Entries: []Entry{e}}}); err == nil {
			t.Fatal("data that is not JSON was encoded; a failed encoding must not be cached")
		}
	}
}
