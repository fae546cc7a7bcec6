package httpsync_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestOneShotPages: changes come in pages of limit with more set, until
// more is false, each exactly once and in order.
func TestOneShotPages(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 250)
	cursor := ""
	var got []int
	for calls := 0; ; calls++ {
		if calls > 10 {
			t.Fatal("more never became false")
		}
		a := d.sync(map[string]any{"last_synced": cursor, "entities": []any{map[string]any{"name": "chat"}}, "limit": 100})
		if len(a.Entities) != 1 || a.Entities[0].Channel != "chat/user:u1" || a.Entities[0].Status != "ok" {
			t.Fatalf("entities %+v", a.Entities)
		}
		for _, m := range a.Entities[0].Messages {
			got = append(got, nOf(t, m.Data))
		}
		cursor = a.LastSynced
		if !a.More {
			break
		}
	}
	if len(got) != 250 {
		t.Fatalf("%d messages, want 250", len(got))
	}
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("message %d is %d", i, n)
		}
	}
	// The cursor's positions are the device's confirmation.
	a := d.sync(map[string]any{"last_synced": cursor, "entities": []any{map[string]any{"name": "chat"}}})
	if len(a.Entities[0].Messages) != 0 || a.More || a.LastSynced != cursor {
		t.Fatalf("a caught-up sync: %+v", a)
	}
	eventually(t, "the sync point at 250", func() bool { return e.syncPoint("d1", "chat/user:u1") == 250 })
}

// TestOneShotUploads: uploads are applied first and exactly once by
// write_id, reach other devices as created records, come back to their own
// device as updated, and a stale base_seq is a conflict with the current
// record.
func TestOneShotUploads(t *testing.T) {
	e := mustStart(t)
	d1 := e.device("d1", e.token("u1"))
	d2 := e.device("d2", e.token("u1"))
	up := map[string]any{
		"write_id": "w1",
		"entities": []any{map[string]any{"name": "notes", "created": []any{
			map[string]any{"id": "01HZX5N0000000000000000001", "title": "groceries"},
			map[string]any{"id": "01HZX5N0000000000000000002", "title": "todo"},
		}}},
	}
	a := d1.sync(up)
	en := a.Entities[0]
	if en.Channel != "notes/user:u1" || len(en.Saved) != 2 || en.Saved[0].Seq != 1 || en.Saved[1].Seq != 2 {
		t.Fatalf("uploads: %+v", en)
	}
	if len(en.Updated) != 2 || en.Updated[0]["title"] != "groceries" || en.Updated[0]["seq"] != 1.0 || len(en.Created) != 0 {
		t.Fatalf("own writes come back as updated with their seq: %+v", en)
	}
	// Sent again, the same write is not applied again.
	again := d1.sync(up)
	if s := again.Entities[0].Saved; len(s) != 2 || s[0].Seq != 1 || s[1].Seq != 2 {
		t.Fatalf("resend saved %+v", s)
	}
	b := d2.sync(map[string]any{"entities": []any{map[string]any{"name": "notes"}}})
	if c := b.Entities[0].Created; len(c) != 2 || c[1]["id"] != "01HZX5N0000000000000000002" || c[1]["title"] != "todo" || b.Entities[0].Position.Seq != 2 {
		t.Fatalf("the other device got %+v", b.Entities[0])
	}
	// d2 edits from base_seq 2; d1 then edits from the same base.
	d2.sync(map[string]any{"last_synced": b.LastSynced, "write_id": "w2", "entities": []any{map[string]any{"name": "notes",
		"updated": []any{map[string]any{"id": "01HZX5N0000000000000000002", "base_seq": 2, "title": "todo!"}}}}})
	c := d1.sync(map[string]any{"last_synced": a.LastSynced, "write_id": "w3", "entities": []any{map[string]any{"name": "notes",
		"updated": []any{map[string]any{"id": "01HZX5N0000000000000000002", "base_seq": 2, "title": "todo?"}}}}})
	errs := c.Entities[0].Errors
	if len(errs) != 1 || errs[0].Code != "conflict" || errs[0].Current["title"] != "todo!" || errs[0].Current["seq"] != 3.0 {
		t.Fatalf("a stale base_seq: %+v", c.Entities[0])
	}
	if cr := c.Entities[0].Created; len(cr) != 1 || cr[0]["title"] != "todo!" {
		t.Fatalf("d1 should get d2's edit: %+v", c.Entities[0])
	}
}

// TestOneShotCursorAfterReset: a cursor of the old history, reused after
// the channel was reset, says reset and brings the new history, every time.
func TestOneShotCursorAfterReset(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 5)
	req := func(cursor string) map[string]any {
		return map[string]any{"last_synced": cursor, "entities": []any{map[string]any{"name": "chat"}}}
	}
	old := d.sync(req("")).LastSynced
	if _, err := e.api.Do(context.Background(), "DELETE", "/v1/channels/chat/user:u1", nil); err != nil {
		t.Fatal(err)
	}
	e.msgs("chat", "u1", 100, 3)
	var next string
	for range 2 {
		a := d.sync(req(old))
		en := a.Entities[0]
		if en.Status != "reset" || len(en.Messages) != 3 || nOf(t, en.Messages[0].Data) != 100 {
			t.Fatalf("the old cursor after a reset: %+v", en)
		}
		next = a.LastSynced
	}
	a := d.sync(req(next))
	if en := a.Entities[0]; en.Status != "ok" || len(en.Messages) != 0 {
		t.Fatalf("the new cursor: %+v", en)
	}
}

// TestOneShotGap: entries trimmed past the cursor give status gap, and the
// changes resume at the first entry kept.
func TestOneShotGap(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	req := func(cursor string) map[string]any {
		return map[string]any{"last_synced": cursor, "entities": []any{map[string]any{"name": "recent"}}}
	}
	e.msgs("recent", "u1", 1, 2)
	cur := d.sync(req("")).LastSynced
	e.msgs("recent", "u1", 3, 10)
	en := d.sync(req(cur)).Entities[0]
	if en.Status != "gap" || len(en.Messages) != 5 || nOf(t, en.Messages[0].Data) != 8 {
		t.Fatalf("after a trim past the cursor: %+v", en)
	}
}

// longPolls reads the server's gauge of one-shot requests waiting.
func (e *env) longPolls() string {
	e.tb.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "syncpoint_httpsync_long_polls "); ok {
			return v
		}
	}
	return ""
}

// TestOneShotLongPollWakes: a sync with nothing new waits, and a publish
// wakes it with the new entry.
func TestOneShotLongPollWakes(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	cursor := d.sync(map[string]any{"entities": []any{map[string]any{"name": "chat"}}}).LastSynced
	got := make(chan syncAnswer, 1)
	go func() {
		got <- d.sync(map[string]any{"last_synced": cursor, "entities": []any{map[string]any{"name": "chat"}}, "wait": "30s"})
	}()
	eventually(t, "the request to wait", func() bool { return e.longPolls() == "1" })
	e.msgs("chat", "u1", 7, 1)
	a := <-got
	if m := a.Entities[0].Messages; len(m) != 1 || nOf(t, m[0].Data) != 7 {
		t.Fatalf("the woken answer: %+v", a.Entities[0])
	}
	// With nothing new, the wait passes: no changes, the same cursor.
	b := d.sync(map[string]any{"last_synced": a.LastSynced, "entities": []any{map[string]any{"name": "chat"}}, "wait": "50ms"})
	if len(b.Entities[0].Messages) != 0 || b.LastSynced != a.LastSynced {
		t.Fatalf("a wait that passed: %+v", b)
	}
}
