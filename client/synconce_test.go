package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/client"
)

// TestSyncOnce: passes of SyncOnce over HTTP bring a backlog in pages and
// new entries after it, each to the Handler exactly once and in order;
// send the outbox; and leave positions that a socket session resumes from.
func TestSyncOnce(t *testing.T) {
	n := MustStartNode(t)
	u1 := syncpoint.UserTarget("u1")
	var batch []pubReq
	for i := range 2500 {
		batch = append(batch, pubReq{biz: "chat", target: u1, data: fmt.Sprint(i)})
		if len(batch) == 1000 || i == 2499 {
			n.publishBatch(batch)
			batch = nil
		}
	}
	s := newSink()
	cfg := n.config(t, s, "d1", "chat", "notes")
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatalf("SyncOnce: %v", err)
	}
	checkSeqs(t, s, "chat/user:u1", 2500)
	for i := range 10 {
		n.publish("chat", u1, fmt.Sprint(2500+i))
	}
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatalf("second SyncOnce: %v", err)
	}
	checkSeqs(t, s, "chat/user:u1", 2510)
	if p := c.Positions()["chat/user:u1"]; p.Seq != 2510 {
		t.Fatalf("position %+v", p)
	}

	// A change made offline goes out with the next pass, and its saved
	// version comes back.
	if err := c.Put(ctx, "notes", "01HZX5N0000000000000000007", json.RawMessage(`{"title":"offline"}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatalf("SyncOnce with a change: %v", err)
	}
	if p := c.Pending(); p != 0 {
		t.Fatalf("%d changes still pending", p)
	}
	if p := c.Positions()["notes/user:u1"]; p.Seq != 1 {
		t.Fatalf("notes position %+v; want past the device's own write", p)
	}
	other := newSink()
	o, err := client.Open(n.config(t, other, "d2", "notes"))
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := o.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := o.Get(ctx, "notes/user:u1", "01HZX5N0000000000000000007"); !ok || string(got) != `{"title":"offline"}` {
		t.Fatalf("the other device holds %s (%v)", got, ok)
	}

	// The server keeps the pass's positions as the device's sync points.
	waitFor(t, "the sync point of d1", func() bool { return n.syncPoint("d1", "chat/user:u1") == 2510 })

	// A socket session goes on from the pass: nothing again.
	n.publish("chat", u1, `"after"`)
	c.Close()
	r := MustRunClient(t, cfg)
	waitFor(t, "the entry after the passes", func() bool { return len(s.channelSeqs()["chat/user:u1"]) == 2511 })
	r.shutdown(t)
	checkSeqs(t, s, "chat/user:u1", 2511)
}

// TestSyncOnceReset: a channel reset between passes is reported, its local
// records dropped, and its new history applied.
func TestSyncOnceReset(t *testing.T) {
	n := MustStartNode(t)
	u1 := syncpoint.UserTarget("u1")
	n.publishReq(putReq("notes", u1, "01HZX5N0000000000000000001", `{"v":1}`))
	s := newSink()
	c, err := client.Open(n.config(t, s, "d1", "notes"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	n.delete("/v1/channels/notes/user:u1")
	n.publishReq(putReq("notes", u1, "01HZX5N0000000000000000002", `{"v":2}`))
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	resets := s.resets
	s.mu.Unlock()
	if len(resets) != 1 || resets[0] != "notes/user:u1" {
		t.Fatalf("resets %v", resets)
	}
	recs, err := c.List(ctx, "notes/user:u1")
	if err != nil || len(recs) != 1 || string(recs["01HZX5N0000000000000000002"]) != `{"v":2}` {
		t.Fatalf("records after the reset: %v, %v", recs, err)
	}
}

// TestSyncOnceNeedsHTTP: a TCP client cannot sync over HTTP.
func TestSyncOnceNeedsHTTP(t *testing.T) {
	n := MustStartNode(t)
	cfg := n.config(t, newSink(), "d1", "chat")
	cfg.Server, cfg.TCP = "", n.tcpAddr
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SyncOnce(context.Background()); err == nil {
		t.Fatal("SyncOnce over TCP passed")
	}
}

// syncPoint is the device's stored seq in ch, from the business API.
func (n *node) syncPoint(device, ch string) uint64 {
	n.tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, n.url()+"/v1/devices/"+device, nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := n.http.Do(req)
	if err != nil {
		n.tb.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Channels []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
		} `json:"channels"`
	}
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &d)
	for _, c := range d.Channels {
		if c.Channel == ch {
			return c.Seq
		}
	}
	return 0
}

// delete sends DELETE path with the API key.
func (n *node) delete(path string) {
	n.tb.Helper()
	req, _ := http.NewRequest(http.MethodDelete, n.url()+path, nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := n.http.Do(req)
	if err != nil {
		n.tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.tb.Fatalf("DELETE %s: %d", path, resp.StatusCode)
	}
}

// TestSyncOnceReconcilesGap: a pass that finds a gap in a compact biz
// reconciles by manifest, as a socket session does: the Handler gets only
// what differs, OnGap is not called, and the next pass goes on from the
// reconciled position with nothing twice.
func TestSyncOnceReconcilesGap(t *testing.T) {
	n := MustStartNode(t)
	n.putBiz(map[string]any{"name": "prices", "target": "user", "compact": true, "max_backlog": 5})
	ch := syncpoint.Channel{Biz: "prices", Target: syncpoint.UserTarget("u1")}
	n.appendRecords(ch, [][2]string{{"a", `1`}, {"b", `2`}, {"c", `3`}, {"d", `4`}, {"e", `5`}}) // 1-5
	s := newSink()
	c, err := client.Open(n.config(t, s, "d1", "prices"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rec byteCounter
	client.SetReconcileTransport(c, &rec)
	ctx := context.Background()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if p := c.Positions()[ch.String()]; p.Seq != 5 {
		t.Fatalf("position after the first pass %+v", p)
	}

	// a goes (6), b-e come again unchanged (7-10), f is new (11); the trim
	// to 5 keeps 7-11, so the device at 5 has a gap.
	n.appendRecords(ch, [][2]string{{"a", ""}, {"b", `2`}, {"c", `3`}, {"d", `4`}, {"e", `5`}, {"f", `6`}})
	before := len(s.got())
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.got()[before:] {
		got = append(got, fmt.Sprintf("%s %s@%d %s", e.Op, e.Key, e.Seq, e.Data))
	}
	if want := []string{"delete a@11 ", "put f@11 6"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the Handler got %v, want %v", got, want)
	}
	if rec.requests.Load() == 0 {
		t.Fatal("the pass sent no reconcile request")
	}
	s.mu.Lock()
	gaps, resets := s.gaps, s.resets
	s.mu.Unlock()
	if len(gaps) != 0 || len(resets) != 0 {
		t.Fatalf("OnGap %v, OnReset %v: nothing was skipped or dropped", gaps, resets)
	}
	local, _ := c.List(ctx, ch.String())
	if len(local) != 5 || local["a"] != nil || string(local["f"]) != `6` {
		t.Fatalf("the device holds %v", local)
	}

	n.publishReq(pubReq{biz: "prices", target: ch.Target, op: syncpoint.OpPut, key: "g", data: `7`})
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if seqs := s.channelSeqs()[ch.String()]; fmt.Sprint(seqs) != "[1 2 3 4 5 11 11 12]" {
		t.Fatalf("the Handler got seqs %v, want 1-5, the reconcile's two at 11, then 12", seqs)
	}
}

// TestSyncOnceReconcilesReset: a compact channel deleted and written again
// between passes is reconciled rather than dropped: the record that stayed
// is not handed over again, the one gone is deleted, the new one put.
func TestSyncOnceReconcilesReset(t *testing.T) {
	n := MustStartNode(t)
	n.putBiz(map[string]any{"name": "prices", "target": "user", "compact": true})
	u1 := syncpoint.UserTarget("u1")
	ch := syncpoint.Channel{Biz: "prices", Target: u1}
	n.appendRecords(ch, [][2]string{{"a", `1`}, {"b", `2`}})
	s := newSink()
	c, err := client.Open(n.config(t, s, "d1", "prices"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	n.delete("/v1/channels/prices/user:u1")
	n.appendRecords(ch, [][2]string{{"b", `2`}, {"c", `3`}})
	before := len(s.got())
	if err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range s.got()[before:] {
		got = append(got, fmt.Sprintf("%s %s %s", e.Op, e.Key, e.Data))
	}
	if want := []string{"delete a ", "put c 3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the Handler got %v, want %v", got, want)
	}
	s.mu.Lock()
	resets := s.resets
	s.mu.Unlock()
	if len(resets) != 0 {
		t.Fatalf("OnReset %v: nothing was dropped", resets)
	}
	local, _ := c.List(ctx, ch.String())
	if len(local) != 2 || string(local["b"]) != `2` || string(local["c"]) != `3` {
		t.Fatalf("the device holds %v", local)
	}
}
