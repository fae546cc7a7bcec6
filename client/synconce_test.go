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
