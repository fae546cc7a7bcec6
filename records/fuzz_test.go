package records_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// fuzzID is a record that exists in every writable user biz, at seqs 1-2.
const fuzzID = "0123456789abcdef01234567"

// FuzzWrite sends arbitrary changes through Write: it must never panic,
// every record must come back saved or with an error, and the result must
// encode.
func FuzzWrite(f *testing.F) {
	f.Add("w1", uint8(0), "", uint8(0), fuzzID, uint64(0), []byte(`{"a":1}`), "")
	f.Add("w2", uint8(1), "", uint8(1), fuzzID, uint64(1), []byte(`{"a":2,"b":{"c":[1]}}`), "")
	f.Add("w3", uint8(2), "", uint8(1), fuzzID, uint64(1), []byte(`{"title":"x"}`), "title,body")
	f.Add("w4", uint8(3), "", uint8(1), fuzzID, uint64(9), []byte(`{"title":"x"}`), "title")
	f.Add("w5", uint8(2), "", uint8(2), fuzzID, uint64(2), []byte(nil), "")
	f.Add("w6", uint8(4), "group:g1", uint8(0), "01ARZ3NDEKTSV4RRFFQ69G5FAV", uint64(0), []byte(`{}`), "")
	f.Add("", uint8(5), "user:u2", uint8(0), "bad id", uint64(0), []byte(`[1,2]`), "")
	f.Add("w7", uint8(6), "global", uint8(1), "550e8400-e29b-41d4-a716-446655440000", uint64(1), []byte(`{"a":`), "")
	f.Add("w8", uint8(7), "", uint8(0), fuzzID, uint64(0), []byte(`{"x":"`+strings.Repeat("y", 80)+`"}`), "")
	f.Add("w:9", uint8(2), "", uint8(1), fuzzID, uint64(1), []byte(` {"title" : "x" , "title": null} `), "\xff")

	e := MustOpenEnv(f, nil)
	id := syncpoint.Identity{DeviceID: "fuzz", UserID: "u1", Groups: []string{"g1"}}
	ctx := context.Background()
	for _, biz := range []string{"notes", "lww", "merged", "compact"} {
		for i, data := range []string{`{"title":"a","body":"b"}`, `{"title":"a2","body":"b"}`} {
			w := &wire.Write{WriteID: "seed-" + biz + string(rune('0'+i)), Changes: []wire.ChangeSet{{Biz: biz}}}
			if i == 0 {
				w.Changes[0].Created = []wire.Record{{ID: fuzzID, Data: json.RawMessage(data)}}
			} else {
				w.Changes[0].Updated = []wire.Record{{ID: fuzzID, BaseSeq: 1, Data: json.RawMessage(data)}}
			}
			if r := e.svc.Write(ctx, id, w); r.Error != nil || len(r.Errors) != 0 {
				f.Fatalf("seed %s: %s", biz, dump(r))
			}
		}
	}
	bizzes := []string{"notes", "lww", "merged", "compact", "team", "chat", "nope", "small", "inbox", ""}

	f.Fuzz(func(t *testing.T, writeID string, biz uint8, target string, kind uint8, recID string, base uint64, data []byte, fields string) {
		r0 := wire.Record{ID: recID, BaseSeq: base, Data: data}
		if fields != "" {
			r0.Fields = strings.Split(fields, ",")
		}
		other := wire.Record{ID: newID(), Data: json.RawMessage(`{"ok":true}`)}
		cs := wire.ChangeSet{Biz: bizzes[int(biz)%len(bizzes)], Target: target}
		switch kind % 3 {
		case 0:
			cs.Created = []wire.Record{r0, other}
		case 1:
			cs.Updated = []wire.Record{r0}
			cs.Created = []wire.Record{other}
		case 2:
			cs.Deleted = []wire.Record{r0}
			cs.Created = []wire.Record{other}
		}
		if writeID != "" {
			// Each input is a new write; a repeated id would be a resend.
			writeID = fmt.Sprint(writeCounter.Add(1), ".", writeID)
		}
		w := &wire.Write{WriteID: writeID, Changes: []wire.ChangeSet{cs}}
		r := e.svc.Write(ctx, id, w)
		if r == nil {
			t.Fatal("nil result")
		}
		if r.Error != nil {
			if len(r.Saved)+len(r.Errors) != 0 {
				t.Fatalf("a failed write also lists records: %s", dump(r))
			}
			return
		}
		for _, want := range []string{recID, other.ID} {
			found := false
			for _, s := range r.Saved {
				found = found || s.ID == want
			}
			for _, e := range r.Errors {
				found = found || e.ID == want
			}
			if !found {
				t.Fatalf("record %q has neither a saved nor an error: %s", want, dump(r))
			}
		}
		if len(r.Saved)+len(r.Errors) < 2 {
			t.Fatalf("two records, result %s", dump(r))
		}
		if utf8.ValidString(writeID) && utf8.ValidString(recID) && utf8.ValidString(target) && utf8.ValidString(fields) {
			for _, codec := range []wire.Codec{wire.JSON, wire.Proto} {
				if _, err := codec.Encode(nil, &wire.Frame{WriteResult: r}); err != nil {
					t.Fatalf("%s: result does not encode: %v\n%s", codec.Name(), err, dump(r))
				}
			}
		}
	})
}
