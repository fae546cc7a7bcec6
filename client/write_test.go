package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

const notes = "notes/user:u1"

func oid(i int) string { return fmt.Sprintf("%024x", i) }

// mustGet returns the local record's data, or "" when there is none.
func mustGet(tb testing.TB, c *Client, ch, id string) string {
	tb.Helper()
	v, ok, err := c.Get(context.Background(), ch, id)
	if err != nil {
		tb.Fatal(err)
	}
	if !ok {
		return ""
	}
	return string(v)
}

// mustAssign gives the outbox's next changes to a write and returns it.
func mustAssign(tb testing.TB, c *Client) *outWrite {
	tb.Helper()
	w, err := c.nextWrite(context.Background(), map[recKey]bool{})
	if err != nil || w == nil {
		tb.Fatalf("nextWrite = %v, %v", w, err)
	}
	return w
}

func mustApplyResult(tb testing.TB, c *Client, res *wire.WriteResult) resultOutcome {
	tb.Helper()
	out, err := c.applyResult(context.Background(), res)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func putEntry(ch, key string, seq uint64, data string) wire.Entry {
	return wire.Entry{Channel: ch, Seq: seq, Op: "put", Key: key, Data: json.RawMessage(data), Origin: "api"}
}

func pushOf(epoch string, entries ...wire.Entry) *wire.Push {
	p := &wire.Push{Entries: entries}
	last := map[string]uint64{}
	for _, e := range entries {
		last[e.Channel] = max(last[e.Channel], e.Seq)
	}
	for ch, seq := range last {
		p.Positions = append(p.Positions, wire.Position{Channel: ch, Epoch: epoch, Seq: seq})
	}
	return p
}

func serverRecs(tb testing.TB, c *Client) int {
	tb.Helper()
	var n int
	if err := c.db.QueryRow(`SELECT count(*) FROM syncpoint_server_records`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// A pending local change wins over pushes of its record until its result
// arrives; a result ahead of the pushes is not undone by older entries.
func TestPendingChangeWinsOverPushes(t *testing.T) {
	c := MustOpenOffline(t, nil)
	ctx := context.Background()
	epochs := map[string]string{}
	k := oid(1)
	if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, k, 1, `{"v":"server1"}`)), epochs); err != nil {
		t.Fatal(err)
	}
	if err := c.PutTo(ctx, notes, k, json.RawMessage(`{"v":"mine"}`)); err != nil {
		t.Fatal(err)
	}
	// Another device's change arrives while ours waits.
	if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, k, 2, `{"v":"server2"}`)), epochs); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, notes, k); got != `{"v":"mine"}` {
		t.Fatalf("local record = %s, want the pending change", got)
	}
	w := mustAssign(t, c)
	if len(w.frame.Changes) != 1 || len(w.frame.Changes[0].Updated) != 1 || w.frame.Changes[0].Updated[0].BaseSeq != 2 {
		t.Fatalf("write = %+v, want one update based on seq 2", w.frame)
	}
	// server_order took it as seq 4; seq 3 (someone else's) is still on its way.
	out := mustApplyResult(t, c, &wire.WriteResult{WriteID: w.id, Saved: []wire.Saved{{Channel: notes, ID: k, Seq: 4, Overwrote: true}}})
	if !out.known || out.retryWrite || c.Pending() != 0 {
		t.Fatalf("outcome %+v, pending %d", out, c.Pending())
	}
	if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, k, 3, `{"v":"server3"}`)), epochs); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, notes, k); got != `{"v":"mine"}` {
		t.Fatalf("after an older push: %s", got)
	}

	// A delete, saved as seq 6: the older put at seq 5 must not bring it back.
	if err := c.DeleteFrom(ctx, notes, k); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, notes, k); got != "" {
		t.Fatalf("after Delete: %s", got)
	}
	w = mustAssign(t, c)
	if d := w.frame.Changes[0].Deleted; len(d) != 1 || d[0].BaseSeq != 4 {
		t.Fatalf("write = %+v, want a delete based on seq 4", w.frame)
	}
	mustApplyResult(t, c, &wire.WriteResult{WriteID: w.id, Saved: []wire.Saved{{Channel: notes, ID: k, Seq: 6}}})
	if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, k, 4, `{"v":"mine"}`), putEntry(notes, k, 5, `{"v":"late"}`)), epochs); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, notes, k); got != "" {
		t.Fatalf("an older push undid a saved delete: %s", got)
	}
	if n := serverRecs(t, c); n != 1 {
		t.Fatalf("%d server records kept, want the delete's guard", n)
	}
	if _, err := c.applyPush(ctx, pushOf("E", wire.Entry{Channel: notes, Seq: 6, Op: "delete", Key: k, Origin: "device:d1"}), epochs); err != nil {
		t.Fatal(err)
	}
	if n := serverRecs(t, c); n != 0 {
		t.Fatalf("%d server records kept after the position passed them", n)
	}
}

func TestResultOutcomes(t *testing.T) {
	var conflicts []Conflict
	var werrs []WriteError
	c := MustOpenOffline(t, nil)
	c.cfg.OnConflict = func(cf Conflict) { conflicts = append(conflicts, cf) }
	c.cfg.OnWriteError = func(we WriteError) { werrs = append(werrs, we) }
	ctx := context.Background()
	epochs := map[string]string{}
	if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, oid(1), 1, `{"v":1}`), putEntry(notes, oid(2), 2, `{"v":2}`)), epochs); err != nil {
		t.Fatal(err)
	}
	put := func(id, data string) {
		t.Helper()
		if err := c.PutTo(ctx, notes, id, json.RawMessage(data)); err != nil {
			t.Fatal(err)
		}
	}
	put(oid(1), `{"v":"a"}`)  // conflict
	put(oid(2), `{"v":"b"}`)  // invalid_data, rolled back to v 2
	put(oid(3), `{"v":"c"}`)  // unavailable: sent again later
	put("bad", `{"v":"d"}`)   // invalid_id, refused before the channel was resolved
	put(oid(1), `{"v":"a2"}`) // made on top of the conflicting change: dropped with it
	w := mustAssign(t, c)
	if len(w.rows) != 4 {
		t.Fatalf("write has %d rows, want 4 (the second change to oid 1 waits)", len(w.rows))
	}
	cur := putEntry(notes, oid(1), 7, `{"v":"theirs"}`)
	out := mustApplyResult(t, c, &wire.WriteResult{WriteID: w.id, Errors: []wire.RecordError{
		{Channel: notes, ID: oid(1), Code: "conflict", Message: "changed", Current: &cur},
		{Channel: notes, ID: oid(2), Field: "data", Code: "invalid_data", Message: "data must be a JSON object"},
		{Channel: notes, ID: oid(3), Code: "unavailable", Message: "try later"},
		{ID: "bad", Field: "id", Code: "invalid_id", Message: "not an id"},
	}})
	if out.retried != 1 {
		t.Fatalf("outcome %+v, want one change to retry", out)
	}
	if err := c.deliverNotices(ctx); err != nil {
		t.Fatal(err)
	}
	if len(conflicts) != 1 || conflicts[0].ID != oid(1) || conflicts[0].Current == nil || string(conflicts[0].Current.Data) != `{"v":"theirs"}` ||
		len(conflicts[0].Dropped) != 1 || string(conflicts[0].Dropped[0].Data) != `{"v":"a2"}` {
		t.Fatalf("conflicts = %+v", conflicts)
	}
	codes := []string{}
	for _, we := range werrs {
		codes = append(codes, we.ID+":"+we.Code)
	}
	if !slices.Equal(codes, []string{oid(2) + ":invalid_data", "bad:invalid_id"}) {
		t.Fatalf("write errors = %v", codes)
	}
	for id, want := range map[string]string{oid(1): `{"v":"theirs"}`, oid(2): `{"v":2}`, oid(3): `{"v":"c"}`, "bad": ""} {
		if got := mustGet(t, c, notes, id); got != want {
			t.Errorf("%s: local %s, want %s", id, got, want)
		}
	}
	if c.Pending() != 1 {
		t.Fatalf("pending %d, want the one to retry", c.Pending())
	}
	// The retried change goes in a new write, as a create again.
	w2 := mustAssign(t, c)
	if w2.id == w.id || len(w2.frame.Changes) != 1 || len(w2.frame.Changes[0].Created) != 1 {
		t.Fatalf("retry write = %+v", w2.frame)
	}
	// A whole-write error that says retry keeps everything for a resend.
	out = mustApplyResult(t, c, &wire.WriteResult{WriteID: w2.id, Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeUnavailable, "webhook down"), false)})
	if !out.retryWrite || c.Pending() != 1 {
		t.Fatalf("outcome %+v, pending %d", out, c.Pending())
	}
	again, err := c.loadAssigned(ctx)
	if err != nil || len(again) != 1 || again[0].id != w2.id {
		t.Fatalf("assigned = %v, %v", again, err)
	}
	// One that says stop refuses every change in it.
	mustApplyResult(t, c, &wire.WriteResult{WriteID: w2.id, Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeForbidden, "no uploads"), false)})
	if err := c.deliverNotices(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Pending() != 0 || mustGet(t, c, notes, oid(3)) != "" || werrs[len(werrs)-1].Code != "forbidden" {
		t.Fatalf("pending %d, errors %+v", c.Pending(), werrs)
	}
	if n := serverRecs(t, c); n != 1 {
		t.Fatalf("%d server records left, want the guard of oid 1 at seq 7", n)
	}
}

// Changes go in outbox order; a change set never lets the server reorder
// them (it applies created, then updated, then deleted).
func TestBuildWriteKeepsOrder(t *testing.T) {
	rows := []outRow{
		{k: recKey{notes, "a"}, kind: kindUpdate},
		{k: recKey{notes, "b"}, kind: kindCreate},
		{k: recKey{notes, "c"}, kind: kindCreate},
		{k: recKey{"tasks/group:g1", "d"}, kind: kindDelete},
		{k: recKey{notes, "e"}, kind: kindDelete},
	}
	w, err := buildWrite("W", rows)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, cs := range w.Changes {
		for _, l := range [][]wire.Record{cs.Created, cs.Updated, cs.Deleted} {
			for _, r := range l {
				got = append(got, r.ID)
			}
		}
	}
	if !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) || len(w.Changes) != 4 || w.Changes[2].Target != "group:g1" {
		t.Fatalf("order %v in %d change sets: %+v", got, len(w.Changes), w.Changes)
	}
}

func TestPutChecks(t *testing.T) {
	c := MustOpenOffline(t, nil)
	ctx := context.Background()
	for name, tc := range map[string]struct {
		err  error
		code syncpoint.ErrorCode
	}{
		"unknown default": {c.Put(ctx, "notes", oid(1), json.RawMessage(`{}`)), syncpoint.CodeNotFound},
		"bad channel":     {c.PutTo(ctx, "notes", oid(1), json.RawMessage(`{}`)), syncpoint.CodeInvalid},
		"empty id":        {c.PutTo(ctx, notes, "", json.RawMessage(`{}`)), syncpoint.CodeInvalid},
		"no data":         {c.PutTo(ctx, notes, oid(1), nil), syncpoint.CodeInvalid},
		"bad json":        {c.PutTo(ctx, notes, oid(1), json.RawMessage(`{"a":`)), syncpoint.CodeInvalid},
		"bad utf-8":       {c.PutTo(ctx, notes, oid(1), json.RawMessage("{\"a\":\"\xff\"}")), syncpoint.CodeInvalid},
		"bad id utf-8":    {c.PutTo(ctx, notes, "\xff", json.RawMessage(`{}`)), syncpoint.CodeInvalid},
		"too deep":        {c.PutTo(ctx, notes, oid(1), json.RawMessage(strings.Repeat("[", 10001)+strings.Repeat("]", 10001))), syncpoint.CodeInvalid},
	} {
		if syncpoint.Code(tc.err) != tc.code {
			t.Errorf("%s: err %v, want code %s", name, tc.err, tc.code)
		}
	}
	big := json.RawMessage(`{"s":"` + strings.Repeat("x", DefaultMaxRecordBytes) + `"}`)
	if err := c.PutTo(ctx, notes, oid(1), big); syncpoint.Code(err) != syncpoint.CodeTooLarge {
		t.Errorf("too large: %v", err)
	}
	c.mu.Lock()
	c.defaults = defaultsOf([]string{"notes/user:u1", "tasks/group:g1", "tasks/group:g2"})
	c.mu.Unlock()
	if err := c.Put(ctx, "tasks", oid(1), json.RawMessage(`{}`)); syncpoint.Code(err) != syncpoint.CodeInvalid {
		t.Errorf("group biz: %v", err)
	}
	if err := c.Put(ctx, "notes", oid(1), json.RawMessage(`{}`)); err != nil {
		t.Errorf("Put: %v", err)
	}
	if err := c.Delete(ctx, "notes", oid(9)); err != nil || c.Pending() != 1 {
		t.Errorf("Delete of an absent record: %v, pending %d", err, c.Pending())
	}
}

// FuzzApplyWriteResult feeds arbitrary write_result frames, as a server
// could send them, for a write of known changes: applying one must never
// fail or panic, and must leave every pending change with a server version.
func FuzzApplyWriteResult(f *testing.F) {
	f.Add([]byte(`{"write_result":{"write_id":"W","saved":[{"channel":"notes/user:u1","id":"000000000000000000000001","seq":3}]}}`))
	f.Add([]byte(`{"write_result":{"write_id":"W","errors":[{"channel":"notes/user:u1","id":"000000000000000000000001","code":"conflict","current":{"channel":"notes/user:u1","seq":9,"op":"put","key":"000000000000000000000001","data":{"x":1}}}]}}`))
	f.Add([]byte(`{"write_result":{"write_id":"W","saved":[{"channel":"notes/user:u1","id":"000000000000000000000002","seq":2}],"errors":[{"channel":"notes/user:u1","id":"000000000000000000000002","field":"a","code":"conflict","current":{"channel":"notes/user:u1","seq":2,"op":"delete","key":"000000000000000000000002"}}]}}`))
	f.Add([]byte(`{"write_result":{"write_id":"W","error":{"code":3003,"reason":"unavailable"}}}`))
	f.Add([]byte(`{"write_result":{"write_id":"W","error":{"code":4000,"reason":"invalid"}}}`))
	f.Add([]byte(`{"write_result":{"write_id":"W","errors":[{"id":"000000000000000000000003","code":"rate_limited"},{"id":"000000000000000000000003","code":"invalid_id"}],"saved":[{"channel":"x/global","id":"y","seq":18446744073709551615}]}}`))
	c := MustOpenOffline(f, nil)
	c.cfg.OnConflict = func(Conflict) {}
	c.cfg.OnWriteError = func(WriteError) {}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wire.DecodeJSON(b)
		if err != nil || fr.WriteResult == nil {
			return
		}
		for _, q := range []string{`syncpoint_outbox`, `syncpoint_server_records`, `syncpoint_records`, `syncpoint_notices`} {
			if _, err := c.db.Exec(`DELETE FROM ` + q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.applyPush(ctx, pushOf("E", putEntry(notes, oid(2), 1, `{"v":1}`)), map[string]string{}); err != nil {
			t.Fatal(err)
		}
		for i, op := range []string{OpPut, OpDelete, OpPut, OpPut} {
			ch := Change{Channel: notes, ID: oid(i%3 + 1), Op: op, Data: json.RawMessage(`{"i":1}`)}
			if op == OpDelete {
				ch.ID, ch.Data = oid(2), nil
			}
			if err := c.change(ctx, ch); err != nil {
				t.Fatal(err)
			}
		}
		w := mustAssign(t, c)
		fr.WriteResult.WriteID = w.id
		if _, err := c.applyResult(ctx, fr.WriteResult); err != nil {
			t.Fatal(err)
		}
		if err := c.deliverNotices(ctx); err != nil {
			t.Fatal(err)
		}
		var orphans int
		if err := c.db.QueryRow(`SELECT count(*) FROM syncpoint_outbox o WHERE NOT EXISTS
			(SELECT 1 FROM syncpoint_server_records s WHERE s.channel = o.channel AND s.key = o.key)`).Scan(&orphans); err != nil {
			t.Fatal(err)
		}
		if orphans != 0 {
			t.Fatalf("%d pending changes lost their server version", orphans)
		}
	})
}

// BenchmarkPut measures one local change: the record and the outbox row in
// one durable transaction.
func BenchmarkPut(b *testing.B) {
	c := MustOpenOffline(b, nil)
	ctx := context.Background()
	data := json.RawMessage(`{"title":"groceries","done":false,"n":12345}`)
	i := 0
	for b.Loop() {
		i++
		if err := c.PutTo(ctx, notes, oid(i), data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
}

// A database written by the SDK before the outbox (schema 1) is migrated in
// place: its records and positions stay, and changes can be made at once.
func TestMigrateFromSchema1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	old, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`CREATE TABLE syncpoint_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID`,
		migrations[0],
		`INSERT INTO syncpoint_meta (name, value) VALUES ('schema_version', '1')`,
		`INSERT INTO syncpoint_positions (channel, epoch, seq, updated_at) VALUES ('notes/user:u1', 'E', 3, 0)`,
		`INSERT INTO syncpoint_records (channel, key, seq, data, created_at, expires_at, origin) VALUES ('notes/user:u1', '` + oid(1) + `', 3, '{"v":1}', 0, 0, 'api')`,
		`INSERT INTO syncpoint_notices (channel, kind, first_seq) VALUES ('notes/user:u1', 'gap', 2)`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()
	var gaps []uint64
	c, err := Open(Config{Server: "http://127.0.0.1:1", Token: "t", DeviceID: "d1", DBPath: path, OnGap: func(_ string, first uint64) { gaps = append(gaps, first) }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if p := c.Positions()[notes]; p.Seq != 3 || mustGet(t, c, notes, oid(1)) != `{"v":1}` {
		t.Fatalf("after migrating: position %+v, record %s", p, mustGet(t, c, notes, oid(1)))
	}
	if err := c.deliverNotices(ctx); err != nil || !slices.Equal(gaps, []uint64{2}) {
		t.Fatalf("old notice: %v, %v", gaps, err)
	}
	if err := c.PutTo(ctx, notes, oid(1), json.RawMessage(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	w := mustAssign(t, c)
	if u := w.frame.Changes[0].Updated; len(u) != 1 || u[0].BaseSeq != 3 {
		t.Fatalf("write = %+v, want an update based on seq 3", w.frame)
	}
}
