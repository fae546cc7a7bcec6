package httpsync_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/httpsync"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/server"
)

// TestQueueStopMidDrain: a client that stops mid-drain without acking gets
// the rest in its next session, and nothing is lost; the old session, once
// superseded, says so.
func TestQueueStopMidDrain(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 250)

	s := d.mustStart("chat")
	if q := s.Queues[0]; q.Name != "main" || q.TotalCount != 250 || q.Pages != 3 {
		t.Fatalf("queue %+v, want main with 250 items in 3 pages", q)
	}
	items, left, _ := d.page(s.ID, 100)
	if len(items) != 100 || left != 150 {
		t.Fatalf("first page: %d items, %d left", len(items), left)
	}
	for i, it := range items {
		if n := nOf(t, it.Data); n != i+1 || it.Meta.Sync.Revision != uint64(i+1) || it.Meta.Sync.EventType != "msg" || it.Meta.Type != "chat" || it.Meta.Channel != "chat/user:u1" {
			t.Fatalf("item %d: %+v %s", i, it.Meta, it.Data)
		}
	}
	d.ack(keysOf(items)...)
	// The second page is read but not acked: the client stops here.
	if items, _, _ = d.page(s.ID, 100); len(items) != 100 || nOf(t, items[0].Data) != 101 {
		t.Fatalf("second page starts at %s", items[0].Data)
	}

	s2 := d.mustStart("chat")
	if _, _, a := d.page(s.ID, 100); a.status != 409 || a.errorCode() != "session_superseded" {
		t.Fatalf("superseded session: %s, want 409 session_superseded", a)
	}
	if s2.Queues[0].TotalCount != 150 {
		t.Fatalf("next session holds %d, want 150", s2.Queues[0].TotalCount)
	}
	got := []int{}
	for {
		items, _, a := d.page(s2.ID, 0)
		if a.status == 204 {
			break
		}
		for _, it := range items {
			got = append(got, nOf(t, it.Data))
		}
		d.ack(keysOf(items)...)
	}
	if len(got) != 150 || got[0] != 101 || got[149] != 250 {
		t.Fatalf("next session delivered %d items, %v...", len(got), got[:min(3, len(got))])
	}
	if _, a := d.start("chat"); a.status != 204 || len(a.body) != 0 || a.header.Get("Content-Type") != "" {
		t.Fatalf("start after everything was acked: %s %q, want 204 with no body and no content type", a, a.header.Get("Content-Type"))
	}
	eventually(t, "the sync point at 250", func() bool { return e.syncPoint("d1", "chat/user:u1") == 250 })
}

// TestQueueNackKeepsOrder: an item not acked comes again next session with
// everything after it in its channel, in order, even what was acked.
func TestQueueNackKeepsOrder(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 10)
	s := d.mustStart("chat")
	items, _, _ := d.page(s.ID, 0)
	keys := keysOf(items)
	// Acked out of order, all but the fourth.
	d.ack(keys[9], keys[0], keys[5])
	d.ack(keys[1], keys[2], keys[4], keys[6], keys[7], keys[8])
	s = d.mustStart("chat")
	items, _, _ = d.page(s.ID, 0)
	var got []int
	for _, it := range items {
		got = append(got, nOf(t, it.Data))
	}
	if len(got) != 7 || got[0] != 4 || got[6] != 10 {
		t.Fatalf("after a nack of item 4: %v, want 4..10", got)
	}
	// The fourth acked now closes the hole: the acks kept above it count.
	d.ack(items[0].Meta.Sync.AckKey)
	if _, a := d.start("chat"); a.status != 204 {
		t.Fatalf("start after the hole was acked: %s, want 204", a)
	}
}

// TestQueueExactlyOnce10000 drains 10,000 items in pages of 1,000 and
// applies each exactly once.
func TestQueueExactlyOnce10000(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	const n = 10000
	e.msgs("chat", "u1", 1, n)
	applied := make(map[int]int)
	s := d.mustStart("chat")
	pages := 0
	for {
		items, _, a := d.page(s.ID, 1000)
		if a.status == 204 {
			break
		}
		pages++
		last := 0
		for _, it := range items {
			v := nOf(t, it.Data)
			if v <= last {
				t.Fatalf("item %d after %d", v, last)
			}
			last = v
			applied[v]++
		}
		d.ack(keysOf(items)...)
	}
	if pages != 10 || len(applied) != n {
		t.Fatalf("%d pages, %d distinct items; want 10 and %d", pages, len(applied), n)
	}
	for v, c := range applied {
		if c != 1 {
			t.Fatalf("item %d applied %d times", v, c)
		}
	}
	if _, a := d.start("chat"); a.status != 204 {
		t.Fatalf("start after the drain: %s, want 204", a)
	}
}

// TestQueueCompact: a compact biz delivers only the newest version of each
// key, and a delete carries the id alone.
func TestQueueCompact(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	put := func(key, data string) {
		e.publish(apiclient.PublishRequest{Biz: "config", Global: true, Op: "put", Key: key, Data: json.RawMessage(data)})
	}
	put("k1", `{"v":1}`)
	put("k2", `{"v":1}`)
	put("k1", `{"v":2,"id":"ignored"}`)
	e.publish(apiclient.PublishRequest{Biz: "config", Global: true, Op: "delete", Key: "k2"})
	put("k3", `"plain"`)
	s := d.mustStart("config")
	items, _, _ := d.page(s.ID, 0)
	var got []string
	for _, it := range items {
		got = append(got, it.Meta.Sync.EventType+" "+string(it.Data))
	}
	want := []string{`created {"id":"k1","v":2}`, `deleted {"id":"k2"}`, `created {"id":"k3","value":"plain"}`}
	if len(got) != len(want) {
		t.Fatalf("items %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("items %q, want %q", got, want)
		}
	}
}

// TestQueueRestartKeepsAcks: acks are kept before they are answered, and a
// session lives in the store, so a restart loses neither.
func TestQueueRestartKeepsAcks(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 30)
	s := d.mustStart("chat")
	items, _, _ := d.page(s.ID, 10)
	d.ack(keysOf(items)...)
	e.restart()
	items, _, a := d.page(s.ID, 10)
	if a.status != 200 || nOf(t, items[0].Data) != 11 {
		t.Fatalf("the session after a restart: %s", a)
	}
	e.restart()
	s = d.mustStart("chat")
	if s.Queues[0].TotalCount != 20 {
		t.Fatalf("after a restart the device starts with %d items, want the 20 not acked", s.Queues[0].TotalCount)
	}
}

// TestQueueSessionRules: a session idle past its setting is unknown, and a
// token has at most its setting of open sessions.
func TestQueueSessionRules(t *testing.T) {
	clk := clock.NewFake(time.Now())
	e := mustStart(t, func(c *server.Config) {
		c.Clock = clk
		c.SyncSessionIdle = time.Minute
		c.SyncSessionsPerToken = 2
	})
	e.msgs("chat", "u1", 1, 3)
	tok := e.token("u1")
	s1 := e.device("d1", tok).mustStart("chat")
	e.device("d2", tok).mustStart("chat")
	if _, a := e.device("d3", tok).start("chat"); a.status != 429 || a.errorCode() != "rate_limited" {
		t.Fatalf("a third session of the token: %s, want 429", a)
	}
	// A new start of d1 replaces its session rather than adding one.
	s1 = e.device("d1", tok).mustStart("chat")
	clk.Advance(2 * time.Minute)
	if _, _, a := e.device("d1", tok).page(s1.ID, 0); a.status != 404 || a.errorCode() != "unknown_session" {
		t.Fatalf("an idle session: %s, want 404 unknown_session", a)
	}
	// Expired sessions no longer count against the token.
	e.device("d3", tok).mustStart("chat")
}

// TestHandWrittenPagesMatchTypes holds the queue pages, which are encoded
// by hand, to the types the OpenAPI document is checked against: each
// decodes into its type with no member left over.
func TestHandWrittenPagesMatchTypes(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 2)
	e.publish(apiclient.PublishRequest{Biz: "notes", Users: []string{"u1"}, Op: "put", Key: "k", Data: json.RawMessage(`{"a":1}`)})
	strictly := func(b []byte, v any) {
		t.Helper()
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("%s does not decode into %T: %v", b, v, err)
		}
	}
	s := d.mustStart()
	var p httpsync.QueuePage
	strictly(d.do("GET", "/v1/sync/"+s.ID+"/queue?limit=2", nil).body, &p)
	if len(p.Items) != 2 || p.CountLeft != 1 || p.Items[0].Meta.Channel == "" {
		t.Fatalf("v1 page %+v", p)
	}
	var v2 httpsync.V2QueuePage
	strictly(d.do("GET", "/v2/sync/"+s.ID+"/queues/main", nil).body, &v2)
	if len(v2.Items) != 1 || v2.Meta.Count != 1 || v2.Meta.Type != "collection" {
		t.Fatalf("v2 page %+v", v2)
	}
	var sr httpsync.SyncResponse
	strictly(d.do("POST", "/v1/sync", nil).body, &sr)
}
