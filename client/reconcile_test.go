package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/server"
)

// byteCounter counts the request and answer bodies that pass through it.
type byteCounter struct {
	sent, received, requests atomic.Int64
}

func (b *byteCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		b.sent.Add(int64(len(body)))
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	b.requests.Add(1)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	b.received.Add(int64(len(body)))
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// putBiz creates a biz through the API.
func (n *node) putBiz(b map[string]any) {
	n.tb.Helper()
	raw, _ := json.Marshal(b)
	req, _ := http.NewRequest(http.MethodPut, n.url()+"/v1/bizzes/"+b["name"].(string), bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := n.http.Do(req)
	if err != nil {
		n.tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		n.tb.Fatalf("put biz: HTTP %d", resp.StatusCode)
	}
}

// appendRecords writes puts (data) and deletes (data "") of keys straight
// into the node's store, in batches, as a backend's publishes would.
func (n *node) appendRecords(ch syncpoint.Channel, records [][2]string) {
	n.tb.Helper()
	b, ok := n.srv.Registry().Get(ch.Biz)
	if !ok {
		n.tb.Fatalf("no biz %s", ch.Biz)
	}
	pol := b.Policy()
	now := time.Now()
	for start := 0; start < len(records); start += 5000 {
		var reqs []syncpoint.AppendRequest
		for _, r := range records[start:min(start+5000, len(records))] {
			e := syncpoint.Entry{Channel: ch, Op: syncpoint.OpPut, Key: r[0], Data: json.RawMessage(r[1]), CreatedAt: now, ExpiresAt: now.Add(syncpoint.DefaultRetention), Origin: syncpoint.OriginAPI}
			if r[1] == "" {
				e.Op, e.Data = syncpoint.OpDelete, nil
			}
			reqs = append(reqs, syncpoint.AppendRequest{Entry: e, Policy: pol})
		}
		if _, err := n.srv.Store().Append(context.Background(), reqs); err != nil {
			n.tb.Fatal(err)
		}
	}
}

// channelBytes reads a whole channel through the business API, as a full
// re-download would, and returns the bytes of the answers.
func (n *node) channelBytes(ch syncpoint.Channel) (int64, int) {
	n.tb.Helper()
	var total int64
	entries := 0
	after := uint64(0)
	for {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/v1/channels/%s/%s?after=%d&limit=1000", n.url(), ch.Biz, ch.Target, after), nil)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := n.http.Do(req)
		if err != nil {
			n.tb.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			n.tb.Fatalf("read channel: HTTP %d %s", resp.StatusCode, body)
		}
		total += int64(len(body))
		var page struct {
			Entries []struct {
				Seq uint64 `json:"seq"`
			} `json:"entries"`
			More bool `json:"more"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			n.tb.Fatalf("channel page: %v", err)
		}
		entries += len(page.Entries)
		if !page.More || len(page.Entries) == 0 {
			return total, entries
		}
		after = page.Entries[len(page.Entries)-1].Seq
	}
}

// restoreFrom stops the node, puts the backup in its store's place (a new
// incarnation: every channel gets a new epoch) and starts it again.
func (n *node) restoreFrom(backup string) {
	n.tb.Helper()
	n.stop()
	store := filepath.Join(n.dir, server.StoreDir)
	if err := os.RemoveAll(store); err != nil {
		n.tb.Fatal(err)
	}
	if err := pebble.Restore(context.Background(), backup, store, pebble.Options{}); err != nil {
		n.tb.Fatal(err)
	}
	n.start()
}

// waitLong polls cond until it holds, for the big transfers of these tests.
func waitLong(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func item(i int, version string) string {
	return fmt.Sprintf(`{"name":"item %06d","price":%d,"tags":["catalog","demo"],"version":%q}`, i, 100+i%900, version)
}

// TestReconcileAfterRestore: a device holds 100,000 records of a compact
// biz; the server is restored from a backup taken before 1% of them
// changed, so the device is told reset. It reconciles instead of dropping
// everything: it downloads the 1% that differ, and no more. The bytes on
// the wire are logged against a full re-download of the channel.
func TestReconcileAfterRestore(t *testing.T) {
	total := 100_000
	if testing.Short() {
		total = 5_000
	}
	changed := total / 100
	n := MustStartNode(t)
	n.putBiz(map[string]any{"name": "catalog", "target": "user", "compact": true})
	ch := syncpoint.Channel{Biz: "catalog", Target: syncpoint.UserTarget("u1")}
	records := make([][2]string, total)
	for i := range records {
		records[i] = [2]string{fmt.Sprintf("k%06d", i), item(i, "v1")}
	}
	n.appendRecords(ch, records)
	backup := filepath.Join(t.TempDir(), "backup")
	if err := n.srv.Store().(*pebble.Store).Checkpoint(context.Background(), backup); err != nil {
		t.Fatal(err)
	}

	// After the backup, 1% changes: most are updated, a tenth deleted.
	var changes [][2]string
	for i := 0; i < changed; i++ {
		k := i * (total / changed)
		if i%10 == 0 {
			changes = append(changes, [2]string{records[k][0], ""})
		} else {
			changes = append(changes, [2]string{records[k][0], item(k, "v2")})
		}
	}
	n.appendRecords(ch, changes)

	db := filepath.Join(t.TempDir(), "device.db")
	cfg := client.Config{Server: n.url(), Token: n.token("u1"), DeviceID: "d1", DBPath: db, Bizzes: []string{"catalog"}}
	first := MustRunClient(t, cfg)
	last := uint64(total + changed)
	waitLong(t, "the first full sync", func() bool { return first.Positions()[ch.String()].Seq == last })
	first.shutdown(t)

	n.restoreFrom(backup)
	fullBytes, fullEntries := n.channelBytes(ch)
	if fullEntries != total {
		t.Fatalf("the restored channel holds %d entries, want %d", fullEntries, total)
	}

	s := newSink()
	cfg.Handler, cfg.OnReset, cfg.OnGap = s.handler, s.onReset, s.onGap
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wire byteCounter
	client.SetReconcileTransport(c, &wire)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done; c.Close() }()

	info, err := n.srv.Store().Channel(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	want := syncpoint.Position{Epoch: info.Epoch, Seq: uint64(total)}
	waitLong(t, "the reconcile", func() bool { return c.Positions()[ch.String()] == want })
	waitFor(t, "the session after the reconcile", func() bool { return c.State() == client.Connected })

	// The Handler saw exactly the records that differ: the restored
	// versions of those changed after the backup.
	got := s.got()
	if len(got) != changed {
		t.Fatalf("the Handler got %d entries, want the %d that differ", len(got), changed)
	}
	for _, e := range got {
		var k int
		fmt.Sscanf(e.Key, "k%06d", &k)
		if e.Op != client.OpPut || string(e.Data) != item(k, "v1") || e.Seq != uint64(k+1) {
			t.Fatalf("reconciled %+v, want the put of %s at seq %d", e, item(k, "v1"), k+1)
		}
	}
	if len(s.resets) != 0 || len(s.gaps) != 0 {
		t.Fatalf("OnReset %v and OnGap %v were called; nothing was dropped", s.resets, s.gaps)
	}
	local, err := c.List(context.Background(), ch.String())
	if err != nil || len(local) != total {
		t.Fatalf("the device holds %d records (%v), want %d", len(local), err, total)
	}
	for _, k := range []int{0, 1, total / changed, total - 1} {
		if string(local[records[k][0]]) != item(k, "v1") {
			t.Fatalf("record %d is %s, want %s", k, local[records[k][0]], item(k, "v1"))
		}
	}

	sent, received := wire.sent.Load(), wire.received.Load()
	t.Logf("reconcile of %d records, %d differing: %d requests, %d bytes sent + %d received = %d bytes; a full re-download reads %d bytes (%.1f%%)",
		total, changed, wire.requests.Load(), sent, received, sent+received, fullBytes, 100*float64(sent+received)/float64(fullBytes))
	if received > fullBytes/20 {
		t.Fatalf("the answers are %d bytes, more than 5%% of a full download (%d)", received, fullBytes)
	}
}

// TestReconcileOnGap: a device falls behind a compact biz with a
// max_backlog, so its position is trimmed away (gap). The backend had
// published the same records again meanwhile: the reconcile takes their
// new seqs without their data, deletes what is gone, downloads what is new,
// and the Handler sees only the last two.
func TestReconcileOnGap(t *testing.T) {
	n := MustStartNode(t)
	n.putBiz(map[string]any{"name": "prices", "target": "user", "compact": true, "max_backlog": 5})
	ch := syncpoint.Channel{Biz: "prices", Target: syncpoint.UserTarget("u1")}
	n.appendRecords(ch, [][2]string{{"a", `1`}, {"b", `2`}, {"c", `3`}, {"d", `4`}, {"e", `5`}}) // 1-5
	s := newSink()
	var wire byteCounter
	cfg := client.Config{Server: n.url(), Token: n.token("u1"), DeviceID: "d1", DBPath: filepath.Join(t.TempDir(), "d.db"), Bizzes: []string{"prices"}, Handler: s.handler, OnGap: s.onGap}
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReconcileTransport(c, &wire)
	r := runOpened(t, c)
	waitFor(t, "the first sync", func() bool { return c.Positions()[ch.String()].Seq == 5 })
	r.shutdown(t)

	// a goes (6); b-e come again unchanged (7-10); f is new (11). Trimming
	// to the newest 5 keeps 7-11: the device at 5 has a gap.
	n.appendRecords(ch, [][2]string{{"a", ""}, {"b", `2`}, {"c", `3`}, {"d", `4`}, {"e", `5`}, {"f", `6`}}) // 6-11
	info, err := n.srv.Store().Channel(context.Background(), ch)
	if err != nil || info.FirstSeq != 7 {
		t.Fatalf("channel %+v %v: want entries 7-11 kept", info, err)
	}

	s2 := newSink()
	cfg.Handler, cfg.OnGap = s2.handler, s2.onGap
	c, err = client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReconcileTransport(c, &wire)
	runOpened(t, c)
	waitFor(t, "the reconcile", func() bool { return c.Positions()[ch.String()].Seq == 11 && c.State() == client.Connected })
	var got []string
	for _, e := range s2.got() {
		got = append(got, fmt.Sprintf("%s %s@%d %s", e.Op, e.Key, e.Seq, e.Data))
	}
	// a's delete is a tombstone past the trim (seq 6 < first 7), so the
	// server knows only that a is gone: the delete carries the position.
	want := []string{"delete a@11 ", "put f@11 6"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the Handler got %v, want %v", got, want)
	}
	if len(s2.gaps) != 0 {
		t.Fatalf("OnGap was called: %v", s2.gaps)
	}
	local, _ := c.List(context.Background(), ch.String())
	if len(local) != 5 || string(local["b"]) != `2` || string(local["f"]) != `6` {
		t.Fatalf("the device holds %v", local)
	}
	// Nothing comes twice: the session after the reconcile starts at 11.
	// A duplicate would come before the entries that follow it.
	n.publishReq(pubReq{biz: "prices", target: ch.Target, op: syncpoint.OpPut, key: "g", data: `7`})
	n.publishReq(pubReq{biz: "prices", target: ch.Target, op: syncpoint.OpPut, key: "h", data: `8`})
	waitFor(t, "the next entries", func() bool {
		got := s2.got()
		return len(got) > 0 && got[len(got)-1].Key == "h"
	})
	if seqs := s2.channelSeqs()[ch.String()]; fmt.Sprint(seqs) != "[11 11 12 13]" {
		t.Fatalf("the Handler got seqs %v, want the reconcile's two at 11, then 12 and 13", seqs)
	}
}

// TestReconcileOtherBizzesResync: a reset of a biz that does not compact
// is not reconciled (the server says 422 once); the device drops the
// channel and downloads it again, as before.
func TestReconcileOtherBizzesResync(t *testing.T) {
	n := MustStartNode(t)
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	n.publish("chat", ch.Target, `{"n":1}`)
	s := newSink()
	var wire byteCounter
	cfg := client.Config{Server: n.url(), Token: n.token("u1"), DeviceID: "d1", DBPath: filepath.Join(t.TempDir(), "d.db"), Bizzes: []string{"chat"}, Handler: s.handler, OnReset: s.onReset}
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.SetReconcileTransport(c, &wire)
	runOpened(t, c)
	waitFor(t, "the first entry", func() bool { return s.count() == 1 })
	req, _ := http.NewRequest(http.MethodDelete, n.url()+"/v1/channels/chat/user:u1", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n.publish("chat", ch.Target, `{"n":2}`)
	waitFor(t, "the reset", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.resets) == 1 && len(s.entries) == 2
	})
	if got := wire.requests.Load(); got != 1 {
		t.Fatalf("%d reconcile requests, want the one the server refused", got)
	}
	// The next reset of the biz does not ask again.
	resp, err = n.http.Do(req.Clone(context.Background()))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n.publish("chat", ch.Target, `{"n":3}`)
	waitFor(t, "the second reset", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.resets) == 2 && len(s.entries) == 3
	})
	if got := wire.requests.Load(); got != 1 {
		t.Fatalf("%d reconcile requests after another reset, want still 1", got)
	}
}

// runOpened runs an opened client until cleanup.
func runOpened(tb testing.TB, c *client.Client) *running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Client: c, done: make(chan struct{}), stop: cancel}
	go func() { r.err = c.Run(ctx); close(r.done) }()
	tb.Cleanup(func() {
		cancel()
		<-r.done
		c.Close()
	})
	return r
}

// TestReconcileKeepsPendingChanges: a record changed on the device while
// it was offline keeps the change through a reconcile, which only gives
// the record's server version its new seq; the change then goes up based
// on that seq and is saved without a conflict.
func TestReconcileKeepsPendingChanges(t *testing.T) {
	n := MustStartNode(t)
	n.putBiz(map[string]any{"name": "todo", "target": "user", "compact": true, "writable": true, "conflict": "reject"})
	ch := syncpoint.Channel{Biz: "todo", Target: syncpoint.UserTarget("u1")}
	a, b := oid(1), oid(2)
	n.appendRecords(ch, [][2]string{{a, `{"t":"a"}`}, {b, `{"t":"b"}`}}) // a@1 b@2
	s := newSink()
	var conflicts atomic.Int64
	cfg := client.Config{Server: n.url(), Token: n.token("u1"), DeviceID: "d1", DBPath: filepath.Join(t.TempDir(), "d.db"), Bizzes: []string{"todo"},
		Handler: s.handler, OnConflict: func(client.Conflict) { conflicts.Add(1) }, OnWriteError: func(client.WriteError) { conflicts.Add(1) }}
	r := MustRunClient(t, cfg)
	waitFor(t, "the first sync", func() bool { return r.Positions()[ch.String()].Seq == 2 })
	r.shutdown(t)

	// Offline, the device changes a. The server's channel is reset and
	// loaded again in another order: b@1 a@2, with the same data.
	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.PutTo(context.Background(), ch.String(), a, json.RawMessage(`{"t":"a, changed offline"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.srv.Store().ResetChannel(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	n.appendRecords(ch, [][2]string{{b, `{"t":"b"}`}, {a, `{"t":"a"}`}})
	before := s.count()
	runOpened(t, c)
	waitFor(t, "the change to be saved", func() bool {
		e, err := n.srv.Store().KeyEntry(context.Background(), ch, a)
		return err == nil && string(e.Data) == `{"t":"a, changed offline"}`
	})
	if e, _ := n.srv.Store().KeyEntry(context.Background(), ch, a); e.Seq != 3 {
		t.Fatalf("the change was saved at seq %d, want 3 (based on a's new seq 2)", e.Seq)
	}
	if conflicts.Load() != 0 {
		t.Fatal("the change met a conflict: it was based on the old epoch's seq")
	}
	local, _ := c.List(context.Background(), ch.String())
	if string(local[a]) != `{"t":"a, changed offline"}` || string(local[b]) != `{"t":"b"}` {
		t.Fatalf("the device holds %v", local)
	}
	// The reconcile handed the Handler nothing: the device had all data.
	// Then the device's own write comes back.
	waitFor(t, "the device's own write", func() bool { return s.count() > before })
	for _, e := range s.got()[before:] {
		if e.Key != a || e.Seq != 3 {
			t.Fatalf("after the reconcile the Handler got %+v, want only the device's own write at seq 3", e)
		}
	}
}
