package client_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/client"
)

func oid(i int) string { return fmt.Sprintf("%024x", i) }

func raw(s string) json.RawMessage { return json.RawMessage(s) }

// reports collects what the outbox hands back to the app.
type reports struct {
	mu        sync.Mutex
	conflicts []client.Conflict
	errs      []client.WriteError
}

func (r *reports) onConflict(c client.Conflict) {
	r.mu.Lock()
	r.conflicts = append(r.conflicts, c)
	r.mu.Unlock()
}

func (r *reports) onWriteError(e client.WriteError) {
	r.mu.Lock()
	r.errs = append(r.errs, e)
	r.mu.Unlock()
}

func (r *reports) get() ([]client.Conflict, []client.WriteError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.conflicts), slices.Clone(r.errs)
}

// writer is a client config of user u1 that reports outbox results to rep.
func (n *node) writer(tb testing.TB, device string, rep *reports, bizzes ...string) client.Config {
	tb.Helper()
	cfg := n.config(tb, newSink(), device, bizzes...)
	cfg.OnConflict, cfg.OnWriteError = rep.onConflict, rep.onWriteError
	return cfg
}

// MustOpenClient opens a client that is not run, closing it at cleanup.
func MustOpenClient(tb testing.TB, cfg client.Config) *client.Client {
	tb.Helper()
	c, err := client.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// connectOnce runs a client until it is connected, so that it learns its
// channels, and stops it.
func connectOnce(tb testing.TB, cfg client.Config) {
	tb.Helper()
	r := MustRunClient(tb, cfg)
	waitFor(tb, "connected", func() bool { return r.State() == client.Connected })
	r.shutdown(tb)
}

// serverRecords folds a channel's log on the server into its live records.
func (n *node) serverRecords(tb testing.TB, channel string) (map[string]string, []syncpoint.Entry) {
	tb.Helper()
	ch, err := syncpoint.ParseChannel(channel)
	if err != nil {
		tb.Fatal(err)
	}
	var all []syncpoint.Entry
	for after := uint64(0); ; {
		p, err := n.srv.Store().Read(context.Background(), ch, after, 1000, time.Now())
		if err != nil {
			tb.Fatal(err)
		}
		if len(p.Entries) == 0 {
			break
		}
		all = append(all, p.Entries...)
		after = p.Entries[len(p.Entries)-1].Seq
	}
	recs := map[string]string{}
	for _, e := range all {
		if e.Op == syncpoint.OpDelete {
			delete(recs, e.Key)
		} else {
			recs[e.Key] = string(e.Data)
		}
	}
	return recs, all
}

func mustGet(tb testing.TB, c *client.Client, ch, id string) string {
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

func mustList(tb testing.TB, c *client.Client, ch string) map[string]string {
	tb.Helper()
	m, err := c.List(context.Background(), ch)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// jsonEqual compares JSON texts as values, so member order does not matter.
func jsonEqual(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}

// Changes made while the client is not running, or the server is down,
// show at once, survive a restart of the client, and are sent once it is
// connected again.
func TestOutboxOffline(t *testing.T) {
	n := MustStartNode(t)
	ctx := context.Background()
	rep := &reports{}
	cfg := n.writer(t, "d1", rep, "notes", "tasks")
	const notes, tasks = "notes/user:u1", "tasks/group:g1"

	// Never connected: the default channel is not known yet, a named one is.
	c := MustOpenClient(t, cfg)
	if err := c.Put(ctx, "notes", oid(1), raw(`{"a":1}`)); syncpoint.Code(err) != syncpoint.CodeNotFound {
		t.Fatalf("Put before any session = %v, want not_found", err)
	}
	if err := c.PutTo(ctx, notes, oid(1), raw(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := c.PutTo(ctx, tasks, oid(2), raw(`{"t":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, c, notes, oid(1)); got != `{"a":1}` || c.Pending() != 2 {
		t.Fatalf("local %s, pending %d", got, c.Pending())
	}
	c.Close()

	r := MustRunClient(t, cfg)
	waitFor(t, "the first changes sent", func() bool { return r.Pending() == 0 })

	// The server goes down; the running client keeps taking changes.
	n.stop()
	waitFor(t, "disconnected", func() bool { return r.State() != client.Connected })
	if err := r.Put(ctx, "notes", oid(3), raw(`{"b":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Put(ctx, "notes", oid(1), raw(`{"a":2}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteFrom(ctx, tasks, oid(2)); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{oid(1): `{"a":2}`, oid(3): `{"b":2}`}
	if got := mustList(t, r.Client, notes); !reflect.DeepEqual(got, want) {
		t.Fatalf("local notes = %v, want %v", got, want)
	}
	if got := mustList(t, r.Client, tasks); len(got) != 0 {
		t.Fatalf("local tasks = %v, want none", got)
	}
	r.shutdown(t)

	// A restart of the app: the changes are still there, and still pending.
	c = MustOpenClient(t, cfg)
	if got, err := c.ListBiz(ctx, "notes"); err != nil || len(got) != 2 || string(got[oid(1)]) != `{"a":2}` || c.Pending() != 3 {
		t.Fatalf("after reopening: %v, %v, pending %d", got, err, c.Pending())
	}
	c.Close()

	n.start()
	r = MustRunClient(t, cfg)
	waitFor(t, "the offline changes sent", func() bool { return r.Pending() == 0 })

	// The backend reads what the device wrote.
	req, _ := http.NewRequest(http.MethodGet, n.url()+"/v1/channels/notes/user:u1", nil)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var page struct {
		Entries []struct {
			Seq    uint64          `json:"seq"`
			Op     string          `json:"op"`
			Key    string          `json:"key"`
			Data   json.RawMessage `json:"data"`
			Origin string          `json:"origin"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Entries) != 3 {
		t.Fatalf("GET /v1/channels/notes/user:u1: %s (%v)", body, err)
	}
	for i, w := range []struct{ key, data string }{{oid(1), `{"a":1}`}, {oid(3), `{"b":2}`}, {oid(1), `{"a":2}`}} {
		e := page.Entries[i]
		if e.Op != "put" || e.Key != w.key || string(e.Data) != w.data || e.Origin != "device:d1" || e.Seq != uint64(i+1) {
			t.Fatalf("entry %d = %+v, want put %s %s", i, e, w.key, w.data)
		}
	}
	if recs, log := n.serverRecords(t, tasks); len(recs) != 0 || len(log) != 2 || log[1].Op != syncpoint.OpDelete {
		t.Fatalf("tasks on the server: %v, %+v", recs, log)
	}
	// The pushes of its own changes leave the device where it was.
	waitFor(t, "own entries pushed back", func() bool { return r.Positions()[notes].Seq == 3 })
	if got := mustList(t, r.Client, notes); !reflect.DeepEqual(got, want) {
		t.Fatalf("local notes = %v, want %v", got, want)
	}
	if cs, es := rep.get(); len(cs)+len(es) != 0 {
		t.Fatalf("conflicts %v, errors %v", cs, es)
	}
}

// 10,000 changes made offline are all sent after a reconnect, and each gets
// its result.
func TestOutboxTenThousand(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 uploads")
	}
	n := MustStartNode(t)
	ctx := context.Background()
	rep := &reports{}
	cfg := n.writer(t, "d1", rep, "notes")
	connectOnce(t, cfg)

	total := 10000
	if raceEnabled {
		total = 1000
	}
	c := MustOpenClient(t, cfg)
	start := time.Now()
	for i := range total {
		if err := c.Put(ctx, "notes", oid(i), raw(fmt.Sprintf(`{"i":%d,"text":"note %d"}`, i, i))); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d offline puts in %s", total, time.Since(start).Round(time.Millisecond))
	if c.Pending() != total {
		t.Fatalf("pending %d", c.Pending())
	}
	c.Close()

	start = time.Now()
	r := MustRunClient(t, cfg)
	deadline := time.Now().Add(60 * time.Second)
	for r.Pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes still pending", r.Pending())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("flushed %d changes in %s", total, time.Since(start).Round(time.Millisecond))
	recs, log := n.serverRecords(t, "notes/user:u1")
	if len(log) != total || len(recs) != total {
		t.Fatalf("server has %d entries, %d records; want %d", len(log), len(recs), total)
	}
	for i := range total {
		if want := fmt.Sprintf(`{"i":%d,"text":"note %d"}`, i, i); recs[oid(i)] != want {
			t.Fatalf("server record %d = %s, want %s", i, recs[oid(i)], want)
		}
	}
	if cs, es := rep.get(); len(cs)+len(es) != 0 {
		t.Fatalf("conflicts %d, errors %v", len(cs), es)
	}
	if got := mustList(t, r.Client, "notes/user:u1"); len(got) != total {
		t.Fatalf("local records: %d", len(got))
	}
}

// Two devices of one user change the same record while offline; how the
// server settles it depends on the biz's conflict policy.
func TestOutboxConflictPolicies(t *testing.T) {
	n := MustStartNode(t)
	ctx := context.Background()
	for _, tc := range []struct {
		biz      string
		conflict bool   // device 2's change is refused
		want     string // the record both devices end with
	}{
		{"notes", true, `{"title":"one","done":false}`},
		{"lww", false, `{"title":"draft","done":true}`},
		{"merged", false, `{"title":"one","done":true}`},
	} {
		t.Run(tc.biz, func(t *testing.T) {
			ch, id := tc.biz+"/user:u1", oid(7)
			rep1, rep2 := &reports{}, &reports{}
			cfg1 := n.writer(t, tc.biz+"-d1", rep1, tc.biz)
			cfg2 := n.writer(t, tc.biz+"-d2", rep2, tc.biz)
			r1, r2 := MustRunClient(t, cfg1), MustRunClient(t, cfg2)
			waitFor(t, "connected", func() bool { return r1.State() == client.Connected })
			if err := r1.Put(ctx, tc.biz, id, raw(`{"title":"draft","done":false}`)); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the record on device 2", func() bool { return mustGet(t, r2.Client, ch, id) != "" })
			r1.shutdown(t)
			r2.shutdown(t)

			// Offline, each device changes another field.
			c1, c2 := MustOpenClient(t, cfg1), MustOpenClient(t, cfg2)
			if err := c1.Put(ctx, tc.biz, id, raw(`{"title":"one","done":false}`)); err != nil {
				t.Fatal(err)
			}
			if err := c2.Put(ctx, tc.biz, id, raw(`{"title":"draft","done":true}`)); err != nil {
				t.Fatal(err)
			}
			c1.Close()
			c2.Close()

			r1 = MustRunClient(t, cfg1)
			waitFor(t, "device 1's change", func() bool { return r1.Pending() == 0 })
			r2 = MustRunClient(t, cfg2)
			waitFor(t, "device 2's result", func() bool { return r2.Pending() == 0 })
			for i, r := range []*running{r1, r2} {
				waitFor(t, fmt.Sprintf("device %d converges", i+1), func() bool { return jsonEqual(mustGet(t, r.Client, ch, id), tc.want) })
			}
			recs, _ := n.serverRecords(t, ch)
			if !jsonEqual(recs[id], tc.want) {
				t.Fatalf("server record = %s, want %s", recs[id], tc.want)
			}
			if tc.conflict {
				waitFor(t, "the conflict reported", func() bool { cs, _ := rep2.get(); return len(cs) > 0 })
			}
			cs, es := rep2.get()
			if len(es) != 0 {
				t.Fatalf("write errors: %+v", es)
			}
			if !tc.conflict {
				if len(cs) != 0 {
					t.Fatalf("conflicts: %+v", cs)
				}
				return
			}
			if len(cs) != 1 {
				t.Fatalf("device 2 got %d conflicts, want 1", len(cs))
			}
			cf := cs[0]
			if cf.Channel != ch || cf.ID != id || cf.Code != "conflict" || cf.Op != client.OpPut || string(cf.Data) != `{"title":"draft","done":true}` ||
				cf.Current == nil || cf.Current.Seq != 2 || !jsonEqual(string(cf.Current.Data), tc.want) {
				t.Fatalf("conflict = %+v (current %+v)", cf, cf.Current)
			}
			if cs, _ := rep1.get(); len(cs) != 0 {
				t.Fatalf("device 1 got conflicts: %+v", cs)
			}
		})
	}
}

// A record deleted on one device disappears from the other.
func TestOutboxDeleteReachesOtherDevices(t *testing.T) {
	n := MustStartNode(t)
	ctx := context.Background()
	rep := &reports{}
	// Protobuf on both transports; the other tests speak JSON.
	cfg1, cfg2 := n.writer(t, "d1", rep, "notes"), n.writer(t, "d2", rep, "notes")
	cfg1.Encoding = client.EncodingProto
	cfg2.Server, cfg2.TCP = "", n.tcpAddr
	r1, r2 := MustRunClient(t, cfg1), MustRunClient(t, cfg2)
	waitFor(t, "connected", func() bool { return r1.State() == client.Connected && r2.State() == client.Connected })
	id := oid(5)
	if err := r1.Put(ctx, "notes", id, raw(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the record on device 2", func() bool { v, ok, _ := r2.GetBiz(ctx, "notes", id); return ok && string(v) == `{"x":1}` })
	if err := r2.Delete(ctx, "notes", id); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := r2.GetBiz(ctx, "notes", id); ok {
		t.Fatal("the record is still there locally after Delete")
	}
	waitFor(t, "the delete on device 1", func() bool { _, ok, _ := r1.GetBiz(ctx, "notes", id); return !ok })
	waitFor(t, "device 2's result", func() bool { return r2.Pending() == 0 })
	if _, log := n.serverRecords(t, "notes/user:u1"); len(log) != 2 || log[1].Op != syncpoint.OpDelete || log[1].Origin != "device:d2" {
		t.Fatalf("server log = %+v", log)
	}
	if cs, es := rep.get(); len(cs)+len(es) != 0 {
		t.Fatalf("conflicts %v, errors %v", cs, es)
	}
}

// The connection drops after a write reached the server and before its
// result came back: the write is sent again with the same write_id and
// applied once.
func TestOutboxLostResult(t *testing.T) {
	n := MustStartNode(t)
	ctx := context.Background()
	rep := &reports{}
	cfg := n.writer(t, "d1", rep, "notes")
	connectOnce(t, cfg)

	c, err := client.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sent []string
	dropped := 0
	client.SetTestHooks(c,
		func(id string) { mu.Lock(); sent = append(sent, id); mu.Unlock() },
		func(id string) bool { mu.Lock(); defer mu.Unlock(); dropped++; return dropped == 1 })
	if err := c.Put(ctx, "notes", oid(1), raw(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done; c.Close() })
	waitFor(t, "the change's result", func() bool { return c.Pending() == 0 })

	mu.Lock()
	ids := slices.Clone(sent)
	mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Fatalf("writes sent: %v, want one write_id twice", ids)
	}
	if _, log := n.serverRecords(t, "notes/user:u1"); len(log) != 1 || string(log[0].Data) != `{"v":1}` {
		t.Fatalf("server log = %+v, want the change once", log)
	}
	if got := mustGet(t, c, "notes/user:u1", oid(1)); got != `{"v":1}` {
		t.Fatalf("local = %s", got)
	}
	if cs, es := rep.get(); len(cs)+len(es) != 0 {
		t.Fatalf("conflicts %v, errors %v", cs, es)
	}
}

// Changes the server refuses are reported and rolled back; the outbox goes
// on with the next ones, and the connection stays up.
func TestOutboxRefusedChanges(t *testing.T) {
	n := MustStartNode(t)
	ctx := context.Background()
	rep := &reports{}
	s := newSink()
	cfg := n.writer(t, "d1", rep, "notes")
	cfg.OnState = s.onState
	r := MustRunClient(t, cfg)
	waitFor(t, "connected", func() bool { return r.State() == client.Connected })
	const ch = "notes/user:u1"
	if err := r.Put(ctx, "notes", oid(3), raw(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first record saved", func() bool { return r.Pending() == 0 })

	for _, p := range []struct{ id, data string }{
		{"not-an-id", `{"v":1}`},
		{oid(1), `"just a string"`},
		{oid(3), `[1, 2]`},
		{oid(2), `{"ok":true}`},
	} {
		if err := r.Put(ctx, "notes", p.id, raw(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every result", func() bool { return r.Pending() == 0 })
	waitFor(t, "three write errors", func() bool { _, es := rep.get(); return len(es) == 3 })
	_, es := rep.get()
	var got []string
	for _, e := range es {
		got = append(got, e.ID+":"+e.Code+":"+e.Field)
	}
	if want := []string{"not-an-id:invalid_id:id", oid(1) + ":invalid_data:data", oid(3) + ":invalid_data:data"}; !slices.Equal(got, want) {
		t.Fatalf("write errors = %v, want %v", got, want)
	}
	for id, want := range map[string]string{"not-an-id": "", oid(1): "", oid(3): `{"v":1}`, oid(2): `{"ok":true}`} {
		if got := mustGet(t, r.Client, ch, id); got != want {
			t.Errorf("%s: local %q, want %q", id, got, want)
		}
	}
	recs, _ := n.serverRecords(t, ch)
	if len(recs) != 2 || recs[oid(2)] != `{"ok":true}` {
		t.Fatalf("server records = %v", recs)
	}
	s.mu.Lock()
	states := slices.Clone(s.states)
	s.mu.Unlock()
	if !slices.Equal(states, []client.State{client.Connecting, client.Connected}) {
		t.Fatalf("states = %v, want one connection throughout", states)
	}
}

// BenchmarkOutboxFlush measures a device sending 1000 changes made offline
// to a real server, with every result applied locally.
func BenchmarkOutboxFlush(b *testing.B) {
	n := MustStartNode(b)
	ctx := context.Background()
	const batch = 1000
	i := 0
	for b.Loop() {
		b.StopTimer()
		i++
		cfg := n.writer(b, fmt.Sprintf("bench-%d", i), &reports{}, "notes")
		cfg.Token = n.token(fmt.Sprintf("bench-user-%d", i))
		cfg.Logger = nil
		connectOnce(b, cfg)
		c := MustOpenClient(b, cfg)
		for j := range batch {
			if err := c.Put(ctx, "notes", oid(j), raw(fmt.Sprintf(`{"text":"note %d","done":false}`, j))); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		b.StartTimer()
		r := MustRunClient(b, cfg)
		for r.Pending() != 0 {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		r.shutdown(b)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "changes/s")
}

// helperOutboxEnv starts TestHelperOutboxProcess as the app process of
// TestOutboxAcrossProcessKills.
const helperOutboxEnv = "SYNCPOINT_CLIENT_HELPER_OUTBOX"

// TestHelperOutboxProcess is not a test on its own: it is the app that
// TestOutboxAcrossProcessKills starts and kills while it sends its outbox.
func TestHelperOutboxProcess(t *testing.T) {
	if os.Getenv(helperOutboxEnv) != "1" {
		t.Skip("started by TestOutboxAcrossProcessKills")
	}
	c, err := client.Open(client.Config{
		Server:     os.Getenv(helperServerEnv),
		Token:      os.Getenv(helperTokenEnv),
		DeviceID:   "d1",
		Bizzes:     []string{"notes"},
		DBPath:     os.Getenv(helperDBEnv),
		MinBackoff: 5 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		// Small writes, so that kills land between many sends and results.
		WriteRecords: 20,
		Logger:       testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Fatal(c.Run(context.Background())) // runs until killed
}

// A device killed at random moments while it sends its outbox (between a
// send and its result, in the middle of applying one) still gets every
// change to the server exactly once.
func TestOutboxAcrossProcessKills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills processes")
	}
	n := MustStartNode(t)
	ctx := context.Background()
	cfg := n.writer(t, "d1", &reports{}, "notes")
	connectOnce(t, cfg)
	total := 2000
	if raceEnabled {
		total = 300
	}
	c := MustOpenClient(t, cfg)
	for i := range total {
		if err := c.Put(ctx, "notes", oid(i), raw(fmt.Sprintf(`{"i":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close()

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	start := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOutboxProcess$", "-test.v")
		cmd.Env = append(os.Environ(), helperOutboxEnv+"=1", helperServerEnv+"="+n.url(), helperTokenEnv+"="+n.token("u1"), helperDBEnv+"="+cfg.DBPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}
	db, err := sql.Open("sqlite", cfg.DBPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pending := func() int {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM syncpoint_outbox`).Scan(&n); err != nil {
			return -1
		}
		return n
	}
	for range 5 {
		cmd, _ := start()
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond) // a random moment, not an assertion
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("killed with %d changes pending", pending())
	}
	cmd, out := start()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for pending() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d changes still pending\nclient output:\n%s", pending(), out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	recs, log := n.serverRecords(t, "notes/user:u1")
	if len(log) != total || len(recs) != total {
		t.Fatalf("server has %d entries for %d records, want %d of each", len(log), len(recs), total)
	}
	for i := range total {
		if want := fmt.Sprintf(`{"i":%d}`, i); recs[oid(i)] != want {
			t.Fatalf("record %d = %s, want %s", i, recs[oid(i)], want)
		}
	}
}
