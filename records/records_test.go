package records_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/wire"
)

// offline has two devices of u1 create a record together, then edit it
// "offline" from the same base_seq, and upload one after the other.
func offline(t *testing.T, e *env, biz, first, second string) (id string, base uint64, r1, r2 *wire.WriteResult) {
	t.Helper()
	d1 := e.connect("u1", "d1", nil, biz)
	d2 := e.connect("u1", "d2", nil, biz)
	id = newID()
	saved := mustSaved(t, d1.write(changes(biz, "", []wire.Record{rec(id, 0, `{"title":"a","body":"b","tags":[1,2]}`)}, nil, nil)), id)
	base = saved[0].Seq
	ch := biz + "/user:u1"
	if saved[0].Channel != ch {
		t.Fatalf("saved in %s, want %s", saved[0].Channel, ch)
	}
	d2.waitFor("the created record", func(got []wire.Entry) bool { return len(got) == 1 })
	r1 = d1.write(changes(biz, "", nil, []wire.Record{rec(id, base, first)}, nil))
	r2 = d2.write(changes(biz, "", nil, []wire.Record{rec(id, base, second)}, nil))
	return id, base, r1, r2
}

func TestOfflineEditsReject(t *testing.T) {
	e := MustOpenEnv(t, nil)
	id, _, r1, r2 := offline(t, e, "notes", `{"title":"a1","body":"b","tags":[1,2]}`, `{"title":"a","body":"b2","tags":[1,2]}`)
	s1 := mustSaved(t, r1, id)
	if len(r2.Saved) != 0 || len(r2.Errors) != 1 {
		t.Fatalf("second upload: %s", dump(r2))
	}
	err := r2.Errors[0]
	if err.Code != "conflict" || err.ID != id || err.Channel != "notes/user:u1" || err.Current == nil {
		t.Fatalf("conflict = %s", dump(err))
	}
	if err.Current.Seq != s1[0].Seq || err.Current.Op != "put" || !jsonEq(err.Current.Data, `{"title":"a1","body":"b","tags":[1,2]}`) || err.Current.Origin != "device:d1" {
		t.Fatalf("conflict carries current %s, want d1's version at seq %d", dump(err.Current), s1[0].Seq)
	}
	// The device resolves it against the current record.
	d2 := e.connect("u1", "d2", nil)
	mustSaved(t, d2.write(changes("notes", "", nil, []wire.Record{rec(id, err.Current.Seq, `{"title":"a1","body":"b2"}`)}, nil)), id)
	if got := e.record("notes/user:u1", id); !jsonEq(got.Data, `{"title":"a1","body":"b2"}`) {
		t.Fatalf("record is %s", got.Data)
	}
}

func TestOfflineEditsServerOrder(t *testing.T) {
	e := MustOpenEnv(t, nil)
	id, _, r1, r2 := offline(t, e, "lww", `{"title":"a1"}`, `{"title":"a2"}`)
	s1 := mustSaved(t, r1, id)
	s2 := mustSaved(t, r2, id)
	if s1[0].Overwrote || !s2[0].Overwrote || s2[0].Seq != s1[0].Seq+1 {
		t.Fatalf("saved %s then %s; want the second to overwrite", dump(s1), dump(s2))
	}
	if got := e.record("lww/user:u1", id); !jsonEq(got.Data, `{"title":"a2"}`) || got.Origin != "device:d2" {
		t.Fatalf("record is %s from %s, want the last arrival", got.Data, got.Origin)
	}
}

func TestOfflineEditsMerge(t *testing.T) {
	e := MustOpenEnv(t, nil)
	// Disjoint fields merge; a removed field stays removed.
	id, _, r1, r2 := offline(t, e, "merged", `{"title":"a1","body":"b","tags":[1,2]}`, `{"title":"a","body":"b2"}`)
	mustSaved(t, r1, id)
	s2 := mustSaved(t, r2, id)
	if s2[0].Overwrote {
		t.Fatal("a merge is not an overwrite")
	}
	if got := e.record("merged/user:u1", id); !jsonEq(got.Data, `{"title":"a1","body":"b2"}`) {
		t.Fatalf("merged record is %s", got.Data)
	}
	base := s2[0].Seq

	// Both change title: a conflict for title only; the rest merges.
	d1 := e.connect("u1", "d1", nil)
	d2 := e.connect("u1", "d2", nil)
	mustSaved(t, d1.write(changes("merged", "", nil, []wire.Record{rec(id, base, `{"title":"x","body":"b2"}`)}, nil)), id)
	r := d2.write(changes("merged", "", nil, []wire.Record{rec(id, base, `{"title":"y","body":"b2","due":"mon"}`)}, nil))
	if len(r.Saved) != 1 || len(r.Errors) != 1 {
		t.Fatalf("merge with a conflict: %s", dump(r))
	}
	ce := r.Errors[0]
	if ce.Code != "conflict" || ce.Field != "title" || ce.Current == nil || ce.Current.Seq != r.Saved[0].Seq {
		t.Fatalf("conflict = %s, saved = %s", dump(ce), dump(r.Saved))
	}
	want := `{"title":"x","body":"b2","due":"mon"}`
	if got := e.record("merged/user:u1", id); !jsonEq(got.Data, want) || !jsonEq(ce.Current.Data, want) {
		t.Fatalf("record is %s (current %s), want %s", got.Data, ce.Current.Data, want)
	}

	// The same change to the same field on both sides is no conflict.
	cur := r.Saved[0].Seq
	mustSaved(t, d1.write(changes("merged", "", nil, []wire.Record{rec(id, cur, `{"title":"z","body":"b2","due":"mon"}`)}, nil)), id)
	mustSaved(t, d2.write(changes("merged", "", nil, []wire.Record{rec(id, cur, `{"title":"z","body":"b2","due":"tue"}`)}, nil)), id)
	if got := e.record("merged/user:u1", id); !jsonEq(got.Data, `{"title":"z","body":"b2","due":"tue"}`) {
		t.Fatalf("record is %s", got.Data)
	}

	// A stale delete of a merge record is a conflict.
	r = d1.write(changes("merged", "", nil, nil, []wire.Record{rec(id, cur, "")}))
	if len(r.Errors) != 1 || r.Errors[0].Code != "conflict" {
		t.Fatalf("stale delete: %s", dump(r))
	}
}

// With compaction the base version is gone as soon as the record changes:
// without fields every differing field conflicts; with fields they apply.
func TestMergeWithoutBase(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d1 := e.connect("u1", "d1", nil)
	d2 := e.connect("u1", "d2", nil)
	id := newID()
	base := mustSaved(t, d1.write(changes("compact", "", []wire.Record{rec(id, 0, `{"a":1,"b":1,"c":1}`)}, nil, nil)), id)[0].Seq
	mustSaved(t, d1.write(changes("compact", "", nil, []wire.Record{rec(id, base, `{"a":2,"b":1,"c":1}`)}, nil)), id)

	r := d2.write(changes("compact", "", nil, []wire.Record{rec(id, base, `{"a":1,"b":3,"c":1}`)}, nil))
	if len(r.Saved) != 0 || len(r.Errors) != 2 {
		t.Fatalf("no base, no fields: %s", dump(r))
	}
	for _, ce := range r.Errors {
		if ce.Code != "conflict" || (ce.Field != "a" && ce.Field != "b") {
			t.Fatalf("conflict %s", dump(ce))
		}
	}

	up := rec(id, base, `{"a":1,"b":3,"c":1}`)
	up.Fields = []string{"b"}
	mustSaved(t, d2.write(changes("compact", "", nil, []wire.Record{up}, nil)), id)
	if got := e.record("compact/user:u1", id); !jsonEq(got.Data, `{"a":2,"b":3,"c":1}`) {
		t.Fatalf("record is %s", got.Data)
	}
}

func TestCreateUpdateDeleteRules(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d := e.connect("u1", "d1", nil)
	id := newID()
	seq := mustSaved(t, d.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":1}`)}, nil, nil)), id)[0].Seq

	r := d.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":2}`)}, nil, nil))
	if len(r.Errors) != 1 || r.Errors[0].Code != records.CodeExists || r.Errors[0].Current == nil || r.Errors[0].Current.Seq != seq {
		t.Fatalf("create over a live record: %s", dump(r))
	}
	r = d.write(changes("notes", "", nil, []wire.Record{rec(newID(), 1, `{"v":1}`)}, []wire.Record{rec(newID(), 1, "")}))
	if len(r.Errors) != 2 || r.Errors[0].Code != "not_found" || r.Errors[1].Code != "not_found" {
		t.Fatalf("update and delete of no record: %s", dump(r))
	}
	del := mustSaved(t, d.write(changes("notes", "", nil, nil, []wire.Record{rec(id, seq, "")})), id)[0].Seq
	if en := e.record("notes/user:u1", id); en.Op != syncpoint.OpDelete || en.Seq != del {
		t.Fatalf("after delete the record is %s", dump(en))
	}
	r = d.write(changes("notes", "", nil, []wire.Record{rec(id, seq, `{"v":3}`)}, nil))
	if len(r.Errors) != 1 || r.Errors[0].Code != "not_found" {
		t.Fatalf("update of a deleted record: %s", dump(r))
	}
	mustSaved(t, d.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":4}`)}, nil, nil)), id)
	if en := e.record("notes/user:u1", id); en.Op != syncpoint.OpPut || !jsonEq(en.Data, `{"v":4}`) {
		t.Fatalf("re-created record is %s", dump(en))
	}
}

func TestResendSameWriteID(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d := e.connect("u1", "d1", nil)
	a, b := newID(), newID()
	w := changes("notes", "", []wire.Record{rec(a, 0, `{"v":1}`), rec(b, 0, `{"v":1}`)}, nil, nil)
	w.WriteID = "01HZX5W000"
	first := d.write(w)
	mustSaved(t, first, a, b)

	// The result was lost: the device reconnects and sends the write again.
	d = e.connect("u1", "d1", nil)
	again := d.write(w)
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("resend answered %s, first answer %s", dump(again), dump(first))
	}
	if n := len(e.entries("notes/user:u1")); n != 2 {
		t.Fatalf("%d entries after a resend, want 2", n)
	}

	// A resend that races the first send (the device did not wait) still
	// applies once.
	c := newID()
	w2 := changes("notes", "", []wire.Record{rec(c, 0, `{"v":1}`)}, nil, nil)
	w2.WriteID = "01HZX5W001"
	d.send(&wire.Frame{Write: w2})
	d = e.connect("u1", "d1", nil) // the old session is replaced mid-write
	mustSaved(t, d.write(w2), c)
	if n := len(e.entries("notes/user:u1")); n != 3 {
		t.Fatalf("%d entries, want 3", n)
	}

	// The result outlives a restart.
	e.restart()
	d = e.connect("u1", "d1", nil)
	if again := d.write(w); !reflect.DeepEqual(first, again) {
		t.Fatalf("resend after restart answered %s", dump(again))
	}
}

// A crash after the append but before the result was kept: the change is
// in the log with the write's idempotency key, and the resend reports it
// saved without applying it again.
func TestResendAfterCrash(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d := e.connect("u1", "d1", nil)
	ctx := context.Background()
	id, moved, fresh := newID(), newID(), newID()
	seq := mustSaved(t, d.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":1}`), rec(moved, 0, `{"v":1}`)}, nil, nil)), id, moved)[0].Seq
	movedSeq := seq + 1

	crashed := func(kind, key string, base uint64, data string) uint64 {
		t.Helper()
		res, err := e.pub.Publish(ctx, publish.Request{Biz: "notes", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}, Op: syncpoint.OpPut,
			Key: key, Data: json.RawMessage(data), IdempotencyKey: "w:d1:crash-1:" + key, Origin: "device:d1", IfKeySeq: &base,
			ContentHash: records.ChangeHash(kind, rec(key, base, data))})
		if err != nil || res[0].Err != nil {
			t.Fatalf("append: %v %v", err, res)
		}
		return res[0].Seq
	}
	upd := crashed("update", id, seq, `{"v":2}`)
	cre := crashed("create", fresh, 0, `{"v":1}`)
	mv := crashed("update", moved, movedSeq, `{"v":2}`)
	// Another device changes one of them before the resend.
	d2 := e.connect("u1", "d2", nil)
	later := mustSaved(t, d2.write(changes("notes", "", nil, []wire.Record{rec(moved, mv, `{"v":3}`)}, nil)), moved)[0].Seq
	last := later

	w := changes("notes", "", []wire.Record{rec(fresh, 0, `{"v":1}`)}, []wire.Record{rec(id, seq, `{"v":2}`), rec(moved, movedSeq, `{"v":2}`)}, nil)
	w.WriteID = "crash-1"
	r := d.write(w)
	saved := mustSaved(t, r, fresh, id, moved)
	if saved[0].Seq != cre || saved[1].Seq != upd || saved[2].Seq != mv {
		t.Fatalf("resend saved %s, want the seqs of the first try (%d, %d, %d)", dump(saved), cre, upd, mv)
	}
	if n := uint64(len(e.entries("notes/user:u1"))); n != last {
		t.Fatalf("%d entries, want %d: something was applied twice", n, last)
	}
}

// TestWriteIDReusedForOtherChanges sends other changes under a write_id
// that was already applied, over the device connection: each record the
// write_id already changed otherwise gets idempotency_mismatch with the
// seq it was saved as, nothing is applied for it, and identical changes
// and new records are answered as usual.
func TestWriteIDReusedForOtherChanges(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d := e.connect("u1", "d1", nil)
	a, b := newID(), newID()
	write := func(id string, created, updated []wire.Record) *wire.WriteResult {
		w := changes("notes", "", created, updated, nil)
		w.WriteID = id
		return d.write(w)
	}
	first := write("reused", []wire.Record{rec(a, 0, `{"v":1}`)}, nil)
	seq := mustSaved(t, first, a)[0].Seq

	r := write("reused", []wire.Record{rec(a, 0, `{"v":2}`)}, nil)
	if len(r.Saved) != 0 || len(r.Errors) != 1 || r.Errors[0].ID != a || r.Errors[0].Code != string(syncpoint.CodeIdempotencyMismatch) ||
		!strings.Contains(r.Errors[0].Message, fmt.Sprintf("seq %d", seq)) {
		t.Fatalf("other data under a spent write_id: %s, want idempotency_mismatch naming seq %d", dump(r), seq)
	}
	// The same change again, with a new record beside it: the first is
	// saved as before, the second applied.
	r = write("reused", []wire.Record{rec(a, 0, `{"v":1}`), rec(b, 0, `{"v":1}`)}, nil)
	saved := mustSaved(t, r, a, b)
	if saved[0].Seq != seq || saved[1].Seq != seq+1 {
		t.Fatalf("identical change and a new one: %s", dump(saved))
	}
	// The first write, resent as it was, gets its answer back.
	if again := write("reused", []wire.Record{rec(a, 0, `{"v":1}`)}, nil); !reflect.DeepEqual(again, first) {
		t.Fatalf("the first write resent: %s, first answer %s", dump(again), dump(first))
	}

	// Updated by another device since: the reuse is still told apart from a
	// conflict.
	up := mustSaved(t, write("upd", nil, []wire.Record{rec(a, seq, `{"v":5}`)}), a)[0].Seq
	d2 := e.connect("u1", "d2", nil)
	mustSaved(t, d2.write(changes("notes", "", nil, []wire.Record{rec(a, up, `{"v":6}`)}, nil)), a)
	r = write("upd", nil, []wire.Record{rec(a, seq, `{"v":7}`)})
	if len(r.Errors) != 1 || r.Errors[0].Code != string(syncpoint.CodeIdempotencyMismatch) || !strings.Contains(r.Errors[0].Message, fmt.Sprintf("seq %d", up)) {
		t.Fatalf("other data under a spent write_id, record changed since: %s", dump(r))
	}
	if en := e.record("notes/user:u1", a); !jsonEq(en.Data, `{"v":6}`) {
		t.Fatalf("the record after the refused reuse: %s", dump(en))
	}
	if n := len(e.entries("notes/user:u1")); n != 4 {
		t.Fatalf("%d entries, want 4: a reused write_id applied something", n)
	}
}

func TestDeleteReachesOtherDevices(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d1 := e.connect("u1", "d1", nil, "notes")
	d2 := e.connect("u1", "d2", nil, "notes")
	other := e.connect("u2", "d3", nil, "notes")
	id := newID()
	seq := mustSaved(t, d1.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":1}`)}, nil, nil)), id)[0].Seq
	d2.waitFor("the put", func(got []wire.Entry) bool { return len(got) == 1 })
	del := mustSaved(t, d1.write(changes("notes", "", nil, nil, []wire.Record{rec(id, seq, "")})), id)[0].Seq
	d2.waitFor("the delete", func(got []wire.Entry) bool { return len(got) == 2 })
	got := d2.got[1]
	if got.Op != "delete" || got.Key != id || got.Seq != del || got.Origin != "device:d1" || got.Channel != "notes/user:u1" {
		t.Fatalf("d2 got %s", dump(got))
	}
	if p := d2.got[0]; p.Op != "put" || p.Key != id || !jsonEq(p.Data, `{"v":1}`) {
		t.Fatalf("d2 got %s", dump(p))
	}
	// The writer gets its own entries too; another user gets nothing.
	d1.waitFor("its own entries", func(got []wire.Entry) bool { return len(got) == 2 })
	other.ping(5 * time.Second)
	if len(other.got) != 0 {
		t.Fatalf("another user received %s", dump(other.got))
	}
}

func TestGroupBiz(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d1 := e.connect("u1", "d1", []string{"g1"}, "team")
	d2 := e.connect("u2", "d2", []string{"g1"}, "team")
	outsider := e.connect("u3", "d3", []string{"g2"})
	id := newID()
	mustSaved(t, d1.write(changes("team", "group:g1", []wire.Record{rec(id, 0, `{"v":1}`)}, nil, nil)), id)
	d2.waitFor("the group record", func(got []wire.Entry) bool { return len(got) == 1 && got[0].Origin == "device:d1" })

	r := outsider.write(changes("team", "group:g1", []wire.Record{rec(newID(), 0, `{"v":1}`)}, nil, nil))
	if len(r.Errors) != 1 || r.Errors[0].Code != "forbidden" {
		t.Fatalf("outsider: %s", dump(r))
	}
	r = d1.write(changes("team", "", []wire.Record{rec(newID(), 0, `{"v":1}`)}, nil, nil))
	if len(r.Errors) != 1 || r.Errors[0].Code != "invalid" || r.Errors[0].Field != "target" {
		t.Fatalf("group biz without a target: %s", dump(r))
	}
}

func TestBadInput(t *testing.T) {
	e := MustOpenEnv(t, nil)
	for _, sub := range []string{wire.SubprotocolJSON, wire.SubprotocolProto} {
		t.Run(sub, func(t *testing.T) {
			d := e.connectWith(sub, e.token("u1"), "d-"+sub)
			ok := newID()
			huge := `{"x":"` + strings.Repeat("y", 100) + `"}`
			w := &wire.Write{Changes: []wire.ChangeSet{
				{Biz: "notes", Created: []wire.Record{
					rec("not an id!", 0, `{"v":1}`),
					rec("", 0, `{"v":1}`),
					rec(strings.Repeat("a", 200), 0, `{"v":1}`),
					rec("8ZZZZZZZZZZZZZZZZZZZZZZZZZ", 0, `{"v":1}`), // over 128 bits
					rec(ulid.Make().String(), 0, `{"v":1}`),
					rec(uuid(), 0, `{"v":1}`),
					rec(newID(), 0, `"a string"`),
					rec(newID(), 0, `[1,2]`),
					rec(newID(), 0, ``),
					rec(ok, 0, `{"v":1}`),
					rec(ok, 0, `{"v":2}`),
				}},
				{Biz: "notes", Updated: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "chat", Created: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "nope", Created: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "notes", Target: "user:u2", Created: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "notes", Target: "group:g1", Created: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "notes", Target: "user:", Created: []wire.Record{rec(newID(), 0, `{"v":1}`)}},
				{Biz: "small", Created: []wire.Record{rec(newID(), 0, huge)}},
			}}
			r := d.write(w)
			want := []string{records.CodeInvalidID, records.CodeInvalidID, records.CodeInvalidID, records.CodeInvalidID,
				records.CodeInvalidData, records.CodeInvalidData, records.CodeInvalidData, "invalid",
				"invalid", records.CodeNotWritable, records.CodeUnknownBiz, "forbidden", "invalid", "invalid", "too_large"}
			var got []string
			for _, re := range r.Errors {
				got = append(got, re.Code)
			}
			if r.Error != nil || !reflect.DeepEqual(got, want) || len(r.Saved) != 3 {
				t.Fatalf("errors %v, want %v; result %s", got, want, dump(r))
			}
			// The session goes on: a ping and another write work.
			d.ping(5 * time.Second)
			id := newID()
			mustSaved(t, d.write(changes("notes", "", []wire.Record{rec(id, 0, `{"v":1}`)}, nil, nil)), id)
		})
	}
}

func TestWholeWriteErrors(t *testing.T) {
	e := MustOpenEnv(t, func(c *records.Config) { c.MaxRecords = 3 })
	d := e.connect("u1", "d1", nil)
	for name, w := range map[string]*wire.Write{
		"no write_id":   {WriteID: "", Changes: []wire.ChangeSet{{Biz: "notes"}}},
		"long write_id": {WriteID: strings.Repeat("w", 129)},
		"too many": changes("notes", "", []wire.Record{rec(newID(), 0, `{}`), rec(newID(), 0, `{}`)}, nil,
			[]wire.Record{rec(newID(), 1, ""), rec(newID(), 1, "")}),
	} {
		if w.WriteID == "" && name != "no write_id" {
			w.WriteID = "w-" + strings.ReplaceAll(name, " ", "-")
		}
		d.send(&wire.Frame{Write: w})
		f := d.next(5 * time.Second)
		if f.WriteResult == nil || f.WriteResult.Error == nil || f.WriteResult.Error.Reason != "invalid" || f.WriteResult.Error.Code != wire.CloseBadRequest {
			t.Fatalf("%s: %s", name, dump(f))
		}
	}
	if n := len(e.entries("notes/user:u1")); n != 0 {
		t.Fatalf("%d entries after refused writes", n)
	}
}

func TestMetrics(t *testing.T) {
	e := MustOpenEnv(t, nil)
	d := e.connect("u1", "d1", nil)
	d.write(changes("notes", "", []wire.Record{rec(newID(), 0, `{}`), rec("bad", 0, `{}`)}, nil, nil))
	d.write(changes("nope", "", []wire.Record{rec(newID(), 0, `{}`)}, nil, nil))
	for _, c := range []struct {
		biz, result string
		want        float64
	}{{"notes", "saved", 1}, {"notes", records.CodeInvalidID, 1}, {"_unknown", records.CodeUnknownBiz, 1}} {
		n, err := counter(e, "syncpoint_record_changes_total", map[string]string{"biz": c.biz, "result": c.result})
		if err != nil || n != c.want {
			t.Errorf("changes{%s,%s} = %v (%v), want %v", c.biz, c.result, n, err, c.want)
		}
	}
	if n, _ := counter(e, "syncpoint_record_writes_total", map[string]string{"outcome": "applied"}); n != 2 {
		t.Errorf("writes{applied} = %v, want 2", n)
	}
}

// counter returns the value of one labelled series of a counter vec.
func counter(e *env, name string, labels map[string]string) (float64, error) {
	mfs, err := e.prom.Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue(), nil
		}
	}
	return 0, nil
}

func jsonEq(a json.RawMessage, b string) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// The deadline context reaches the store: a write on a closed store fails
// whole and retryably, and nothing half-done is reported as saved.
func TestWriteOnClosedStore(t *testing.T) {
	e := MustOpenEnv(t, nil)
	id := syncpoint.Identity{DeviceID: "d1", UserID: "u1"}
	e.store.Close()
	w := changes("notes", "", []wire.Record{rec(newID(), 0, `{}`)}, nil, nil)
	w.WriteID = "w1"
	r := e.svc.Write(context.Background(), id, w)
	if r.Error == nil || r.Error.Code.Action() != wire.Reconnect {
		t.Fatalf("write on a closed store: %s", dump(r))
	}
}

func uuid() string {
	var b [16]byte
	rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Concurrent uploads from one base move the record between each other's
// read and append: each is judged again against the new record, so a
// merge keeps every device's field and server_order saves them all.
func TestConcurrentUploads(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	const n = 8
	for _, biz := range []string{"merged", "lww"} {
		t.Run(biz, func(t *testing.T) {
			id := newID()
			w := changes(biz, "", []wire.Record{rec(id, 0, `{"title":"t"}`)}, nil, nil)
			w.WriteID = "create-" + biz
			dev := syncpoint.Identity{DeviceID: "d0", UserID: "u1"}
			base := mustSaved(t, e.svc.Write(ctx, dev, w), id)[0].Seq
			results := make(chan *wire.WriteResult, n)
			for i := range n {
				go func() {
					w := changes(biz, "", nil, []wire.Record{rec(id, base, fmt.Sprintf(`{"title":"t","f%d":%d}`, i, i))}, nil)
					w.WriteID = fmt.Sprintf("%s-w%d", biz, i)
					results <- e.svc.Write(ctx, syncpoint.Identity{DeviceID: fmt.Sprintf("d%d", i+1), UserID: "u1"}, w)
				}()
			}
			for range n {
				r := <-results
				if r.Error != nil || len(r.Saved) != 1 || len(r.Errors) != 0 {
					t.Fatalf("concurrent upload: %s", dump(r))
				}
			}
			got := e.record(biz+"/user:u1", id)
			if got.Seq != base+n {
				t.Fatalf("record at seq %d, want %d", got.Seq, base+n)
			}
			var fields map[string]any
			json.Unmarshal(got.Data, &fields)
			if biz == "merged" && len(fields) != n+1 {
				t.Fatalf("merged record %s lost a field", got.Data)
			}
		})
	}
}
