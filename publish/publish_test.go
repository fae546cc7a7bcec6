package publish_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// MustOpenStore opens a pebble store in a temporary directory.
func MustOpenStore(tb testing.TB, clk clock.Clock) *pebble.Store {
	tb.Helper()
	s, err := pebble.Open(tb.TempDir(), pebble.Options{Clock: clk})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// env is a publisher over a real store and the in-process broker, with a
// subscriber that records every fanned-out entry.
type env struct {
	store *pebble.Store
	reg   *syncpoint.Registry
	pub   *publish.Publisher
	clock *clock.Fake
	prom  *prometheus.Registry

	mu      sync.Mutex
	fanned  []syncpoint.Entry
	batches int
}

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	typing := syncpoint.NewBiz("typing", syncpoint.TargetUser)
	typing.Persistent = false
	small := syncpoint.NewBiz("small", syncpoint.TargetUser)
	small.MaxEntryBytes = 16
	short := syncpoint.NewBiz("short", syncpoint.TargetDevice)
	short.Retention = syncpoint.Duration(time.Hour)
	return []syncpoint.Biz{chat, config, typing, small, short}
}

// MustOpenEnv returns a publisher with the bizzes of testBizzes.
func MustOpenEnv(tb testing.TB, broker syncpoint.Broker) *env {
	tb.Helper()
	e := &env{clock: clock.NewFake(t0), prom: prometheus.NewRegistry()}
	e.store = MustOpenStore(tb, e.clock)
	e.reg = syncpoint.NewRegistry(e.store)
	if err := e.reg.Load(context.Background(), testBizzes()); err != nil {
		tb.Fatalf("load bizzes: %v", err)
	}
	if broker == nil {
		b := local.New()
		tb.Cleanup(func() { b.Close() })
		broker = b
	}
	if b, ok := broker.(*local.Broker); ok {
		unsub, err := b.Subscribe(func(es []syncpoint.Entry) {
			e.mu.Lock()
			e.fanned = append(e.fanned, es...)
			e.batches++
			e.mu.Unlock()
		})
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(unsub)
	}
	e.pub = publish.New(publish.Config{Store: e.store, Broker: broker, Registry: e.reg, Clock: e.clock, Registerer: e.prom})
	return e
}

func (e *env) fannedOut() []syncpoint.Entry {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]syncpoint.Entry(nil), e.fanned...)
}

func wantCode(t *testing.T, err error, code syncpoint.ErrorCode, contains string) {
	t.Helper()
	var se *syncpoint.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *syncpoint.Error with code %s", err, code)
	}
	if se.Code != code || !strings.Contains(se.Message, contains) {
		t.Fatalf("err = %v, want code %s and a message with %q", err, code, contains)
	}
}

func TestPublishAppendsAndFansOut(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	res, err := e.pub.Publish(ctx, publish.Request{
		Biz:     "chat",
		Targets: []syncpoint.Target{syncpoint.UserTarget("u1"), syncpoint.UserTarget("u2"), syncpoint.UserTarget("u1")},
		Data:    json.RawMessage(`{"text":"hi"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("got %d results, want 2 (u1 repeated)", len(res))
	}
	for i, u := range []string{"u1", "u2"} {
		r := res[i]
		if r.Channel.String() != "chat/user:"+u || r.Seq != 1 || r.Epoch == "" || r.Duplicate || r.Ephemeral || r.Err != nil {
			t.Errorf("result %d = %+v", i, r)
		}
	}
	res2, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}, Op: syncpoint.OpPut, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if res2[0].Seq != 2 || res2[0].Epoch != res[0].Epoch {
		t.Fatalf("second publish = %+v, want seq 2 in epoch %s", res2[0], res[0].Epoch)
	}

	page, err := e.store.Read(ctx, res[0].Channel, 0, 10, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 {
		t.Fatalf("read %d entries, want 2", len(page.Entries))
	}
	got := page.Entries[0]
	if got.Op != syncpoint.OpMsg || got.Origin != syncpoint.OriginAPI || string(got.Data) != `{"text":"hi"}` ||
		!got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(syncpoint.DefaultRetention)) {
		t.Fatalf("stored entry = %+v", got)
	}

	fanned := e.fannedOut()
	if len(fanned) != 3 {
		t.Fatalf("fanned out %d entries, want 3", len(fanned))
	}
	if fanned[0].Seq != 1 || fanned[0].Channel.Target.ID != "u1" || fanned[1].Channel.Target.ID != "u2" || fanned[2].Seq != 2 {
		t.Fatalf("fanned out %+v", fanned)
	}
}

func TestPublishIdempotent(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	req := publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}, Data: json.RawMessage(`1`), IdempotencyKey: "once"}
	first, err := e.pub.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: req.Targets}); err != nil {
		t.Fatal(err)
	}
	again, err := e.pub.Publish(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Duplicate || again[0].Seq != first[0].Seq {
		t.Fatalf("republish = %+v, want duplicate of seq %d", again[0], first[0].Seq)
	}
	if n := len(e.fannedOut()); n != 2 {
		t.Fatalf("fanned out %d entries, want 2: a duplicate is not sent again", n)
	}
	if v := counterValue(t, e.prom, "chat", "duplicate"); v != 1 {
		t.Fatalf("duplicate counter = %v, want 1", v)
	}
}

// TestPublishIdempotencyMismatch reuses a key for other data: the publish
// fails with CodeIdempotencyMismatch and the original seq, nothing is
// stored or fanned out in that channel, and the same data is a duplicate.
func TestPublishIdempotencyMismatch(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	u1, u2, u3 := syncpoint.UserTarget("u1"), syncpoint.UserTarget("u2"), syncpoint.UserTarget("u3")
	req := publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1, u2}, Data: json.RawMessage(`{"v":1}`), IdempotencyKey: "k"}
	if _, err := e.pub.Publish(ctx, req); err != nil {
		t.Fatal(err)
	}
	e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}}) // u1 at 2
	other := req
	other.Data = json.RawMessage(`{"v":2}`)
	_, err := e.pub.Publish(ctx, other)
	var se *syncpoint.Error
	if !errors.As(err, &se) || se.Code != syncpoint.CodeIdempotencyMismatch || se.Seq != 1 || !strings.Contains(se.Message, "chat/user:u1") {
		t.Fatalf("reuse with other data: %v (%+v), want idempotency_mismatch naming chat/user:u1 seq 1", err, se)
	}
	if n := len(e.fannedOut()); n != 3 {
		t.Fatalf("fanned out %d entries, want 3: a refused reuse sends nothing", n)
	}
	for _, tg := range []syncpoint.Target{u1, u2} {
		info, err := e.store.Channel(ctx, syncpoint.Channel{Biz: "chat", Target: tg})
		if err != nil || info.LastSeq != map[string]uint64{"u1": 2, "u2": 1}[tg.ID] {
			t.Fatalf("%s after the refused reuse: %+v %v", tg, info, err)
		}
	}
	if v := counterValue(t, e.prom, "chat", "idempotency_mismatch"); v != 2 {
		t.Fatalf("mismatch counter = %v, want 2 (one per channel)", v)
	}
	again, err := e.pub.Publish(ctx, req)
	if err != nil || !again[0].Duplicate || !again[1].Duplicate || again[0].Seq != 1 {
		t.Fatalf("identical retry: %+v %v, want duplicates", again, err)
	}
	// A new target under a spent key is stored; the spent channels refuse.
	wider := other
	wider.Targets = []syncpoint.Target{u3, u1}
	if _, err := e.pub.Publish(ctx, wider); syncpoint.Code(err) != syncpoint.CodeIdempotencyMismatch {
		t.Fatalf("wider reuse: %v, want idempotency_mismatch", err)
	}
	if info, err := e.store.Channel(ctx, syncpoint.Channel{Biz: "chat", Target: u3}); err != nil || info.LastSeq != 1 {
		t.Fatalf("the new target of a refused request: %+v %v, want its entry stored", info, err)
	}
}

// counterValue reads syncpoint_publishes_total{biz, outcome} from reg.
func counterValue(t *testing.T, reg *prometheus.Registry, biz, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "syncpoint_publishes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["biz"] == biz && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestPublishRejects(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	u1 := []syncpoint.Target{syncpoint.UserTarget("u1")}
	for _, tc := range []struct {
		name     string
		req      publish.Request
		code     syncpoint.ErrorCode
		contains string
	}{
		{"unknown biz", publish.Request{Biz: "nope", Targets: u1}, syncpoint.CodeNotFound, `unknown biz "nope"`},
		{"no target", publish.Request{Biz: "chat"}, syncpoint.CodeInvalid, "at least one user target"},
		{"wrong kind", publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.DeviceTarget("d1")}}, syncpoint.CodeInvalid, "biz chat takes user targets, not device"},
		{"global biz", publish.Request{Biz: "config", Targets: u1}, syncpoint.CodeInvalid, "takes global targets"},
		{"bad id", publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.UserTarget("a b")}}, syncpoint.CodeInvalid, "user id"},
		{"bad op", publish.Request{Biz: "chat", Targets: u1, Op: "patch"}, syncpoint.CodeInvalid, `op "patch"`},
		{"put without key", publish.Request{Biz: "chat", Targets: u1, Op: syncpoint.OpPut}, syncpoint.CodeInvalid, "needs a key"},
		{"bad data", publish.Request{Biz: "chat", Targets: u1, Data: json.RawMessage(`{`)}, syncpoint.CodeInvalid, "not valid JSON"},
		{"negative ttl", publish.Request{Biz: "chat", Targets: u1, TTL: -time.Second}, syncpoint.CodeInvalid, "negative"},
		{"ttl over retention", publish.Request{Biz: "short", Targets: []syncpoint.Target{syncpoint.DeviceTarget("d1")}, TTL: 2 * time.Hour}, syncpoint.CodeInvalid, "retention of 1h0m0s"},
		{"too large", publish.Request{Biz: "small", Targets: u1, Data: json.RawMessage(`"0123456789abcdefghij"`)}, syncpoint.CodeTooLarge, "allows 16"},
		{"bad version", publish.Request{Biz: "chat", Targets: u1, Conditions: syncpoint.Conditions{MinAppVersion: "one"}}, syncpoint.CodeInvalid, "min_app_version"},
		{"conditional ephemeral", publish.Request{Biz: "typing", Targets: u1, IfKeySeq: new(uint64)}, syncpoint.CodeInvalid, "not persistent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.pub.Publish(ctx, tc.req)
			wantCode(t, err, tc.code, tc.contains)
		})
	}
	if n := len(e.fannedOut()); n != 0 {
		t.Fatalf("rejected publishes fanned out %d entries", n)
	}
	if v := counterValue(t, e.prom, "_unknown", "not_found"); v != 1 {
		t.Fatalf("unknown-biz counter = %v, want 1", v)
	}
}

func TestPublishTTL(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	res, err := e.pub.Publish(ctx, publish.Request{Biz: "config", Targets: []syncpoint.Target{syncpoint.GlobalTarget()}, TTL: time.Minute, Origin: "device:d9"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.store.Entry(ctx, res[0].Channel, res[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if !got.ExpiresAt.Equal(t0.Add(time.Minute)) || got.Origin != "device:d9" {
		t.Fatalf("entry = %+v, want expiry in a minute and origin device:d9", got)
	}
}

func TestPublishEphemeral(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	res, err := e.pub.Publish(ctx, publish.Request{Biz: "typing", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}, Data: json.RawMessage(`true`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || !res[0].Ephemeral || res[0].Seq != 0 || res[0].Epoch != "" {
		t.Fatalf("results = %+v, want one ephemeral with seq 0", res)
	}
	page, err := e.store.Read(ctx, res[0].Channel, 0, 10, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 0 || page.Info.LastSeq != 0 {
		t.Fatalf("an ephemeral entry was stored: %+v", page)
	}
	fanned := e.fannedOut()
	if len(fanned) != 1 || fanned[0].Seq != 0 || string(fanned[0].Data) != "true" {
		t.Fatalf("fanned out %+v, want the entry with seq 0", fanned)
	}
}

func TestPublishBatch(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	u := func(id string) []syncpoint.Target { return []syncpoint.Target{syncpoint.UserTarget(id)} }
	reqs := []publish.Request{
		{Biz: "chat", Targets: u("u1"), Data: json.RawMessage(`1`)},
		{Biz: "nope", Targets: u("u1")},
		{Biz: "chat", Targets: u("u1"), Data: json.RawMessage(`2`)},
		{Biz: "typing", Targets: u("u1")},
		{Biz: "small", Targets: u("u1"), Data: json.RawMessage(`"far too long for sixteen bytes"`)},
		{Biz: "chat", Targets: append(u("u1"), syncpoint.UserTarget("u2")), Data: json.RawMessage(`3`)},
	}
	results, errs, err := e.pub.PublishBatch(ctx, reqs)
	if err != nil {
		t.Fatal(err)
	}
	if syncpoint.Code(errs[1]) != syncpoint.CodeNotFound || syncpoint.Code(errs[4]) != syncpoint.CodeTooLarge {
		t.Fatalf("errs = %v", errs)
	}
	for _, i := range []int{0, 2, 3, 5} {
		if errs[i] != nil || results[i] == nil {
			t.Fatalf("request %d: err %v, results %v", i, errs[i], results[i])
		}
	}
	if results[1] != nil || results[4] != nil {
		t.Fatalf("failed requests have results: %v %v", results[1], results[4])
	}
	// Seqs follow request order within a channel.
	if results[0][0].Seq != 1 || results[2][0].Seq != 2 || results[5][0].Seq != 3 || results[5][1].Seq != 1 {
		t.Fatalf("seqs: %v %v %v", results[0], results[2], results[5])
	}
	if !results[3][0].Ephemeral {
		t.Fatalf("typing result = %+v, want ephemeral", results[3][0])
	}
	e.mu.Lock()
	batches, n := e.batches, len(e.fanned)
	e.mu.Unlock()
	if batches != 1 || n != 5 {
		t.Fatalf("fan-out: %d batches of %d entries in all, want 1 of 5", batches, n)
	}
}

func TestPublishIfKeySeq(t *testing.T) {
	e := MustOpenEnv(t, nil)
	ctx := context.Background()
	u1 := []syncpoint.Target{syncpoint.UserTarget("u1")}
	zero := uint64(0)
	res, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: u1, Op: syncpoint.OpPut, Key: "r1", Data: json.RawMessage(`{}`), IfKeySeq: &zero})
	if err != nil || res[0].Err != nil || res[0].Seq != 1 {
		t.Fatalf("first conditional put: %+v, %v", res, err)
	}
	res, err = e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: u1, Op: syncpoint.OpPut, Key: "r1", Data: json.RawMessage(`{}`), IfKeySeq: &zero})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res[0].Err, syncpoint.ErrKeyChanged) || res[0].KeySeq != 1 {
		t.Fatalf("stale conditional put = %+v, want ErrKeyChanged at key seq 1", res[0])
	}
	if n := len(e.fannedOut()); n != 1 {
		t.Fatalf("fanned out %d entries, want 1: a refused put is not sent", n)
	}
}

// failingBroker refuses every publish.
type failingBroker struct{ calls atomic.Int32 }

func (b *failingBroker) Publish(ctx context.Context, entries []syncpoint.Entry) error {
	b.calls.Add(1)
	return fmt.Errorf("broker down")
}
func (b *failingBroker) Subscribe(fn func([]syncpoint.Entry)) (func(), error) { return func() {}, nil }
func (b *failingBroker) Announce(ctx context.Context, ev syncpoint.Event) error {
	return fmt.Errorf("broker down")
}
func (b *failingBroker) Listen(fn func(syncpoint.Event)) (func(), error) { return func() {}, nil }
func (b *failingBroker) Close() error                                    { return nil }

func TestPublishBrokerDown(t *testing.T) {
	b := &failingBroker{}
	e := MustOpenEnv(t, b)
	ctx := context.Background()
	u1 := []syncpoint.Target{syncpoint.UserTarget("u1")}
	// A stored entry still counts as published: devices read it from the log.
	if res, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: u1}); err != nil || res[0].Seq != 1 {
		t.Fatalf("persistent publish with the broker down: %+v, %v", res, err)
	}
	_, err := e.pub.Publish(ctx, publish.Request{Biz: "typing", Targets: u1})
	wantCode(t, err, syncpoint.CodeUnavailable, "not persistent")
	if b.calls.Load() != 2 {
		t.Fatalf("broker called %d times, want 2", b.calls.Load())
	}
}

func TestPublishNoBroker(t *testing.T) {
	clk := clock.NewFake(t0)
	store := MustOpenStore(t, clk)
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		t.Fatal(err)
	}
	pub := publish.New(publish.Config{Store: store, Registry: reg})
	res, err := pub.Publish(context.Background(), publish.Request{Biz: "typing", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}})
	if err != nil || !res[0].Ephemeral {
		t.Fatalf("ephemeral publish without a broker: %+v, %v", res, err)
	}
}

func TestPublishStoreClosed(t *testing.T) {
	e := MustOpenEnv(t, nil)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := e.pub.Publish(context.Background(), publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.UserTarget("u1")}})
	if !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("publish to a closed store: %v, want ErrClosed", err)
	}
	if n := len(e.fannedOut()); n != 0 {
		t.Fatalf("a failed append fanned out %d entries", n)
	}
}

func BenchmarkPublish(b *testing.B) {
	e := MustOpenEnv(b, nil)
	ctx := context.Background()
	data := json.RawMessage(`{"text":"hello there"}`)
	var n atomic.Int64
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			_, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: []syncpoint.Target{syncpoint.UserTarget(fmt.Sprintf("u%d", i%1000))}, Data: data})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

func TestPublishDedupesManyTargets(t *testing.T) {
	e := MustOpenEnv(t, nil)
	var targets []syncpoint.Target
	for i := 0; i < 40; i++ {
		targets = append(targets, syncpoint.UserTarget(fmt.Sprintf("u%d", i%25)))
	}
	res, err := e.pub.Publish(context.Background(), publish.Request{Biz: "chat", Targets: targets})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 25 {
		t.Fatalf("%d results, want 25 distinct targets", len(res))
	}
	for i, r := range res {
		if r.Channel.Target.ID != fmt.Sprintf("u%d", i) || r.Seq != 1 {
			t.Fatalf("result %d = %+v, want u%d at seq 1 in first-seen order", i, r, i)
		}
	}
}

func TestPublishMaxTargets(t *testing.T) {
	e := MustOpenEnv(t, nil)
	targets := func(n int) []syncpoint.Target {
		ts := make([]syncpoint.Target, n)
		for i := range ts {
			ts[i] = syncpoint.UserTarget(fmt.Sprintf("u%d", i))
		}
		return ts
	}
	ctx := context.Background()
	if res, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: targets(publish.DefaultMaxTargets)}); err != nil || len(res) != publish.DefaultMaxTargets {
		t.Fatalf("%d targets: %d results, %v", publish.DefaultMaxTargets, len(res), err)
	}
	_, err := e.pub.Publish(ctx, publish.Request{Biz: "chat", Targets: targets(publish.DefaultMaxTargets + 1)})
	wantCode(t, err, syncpoint.CodeInvalid, "at most 1000")

	small := publish.New(publish.Config{Store: e.store, Registry: e.reg, Clock: e.clock, MaxTargets: 2})
	_, errs, err := small.PublishBatch(ctx, []publish.Request{{Biz: "chat", Targets: targets(2)}, {Biz: "chat", Targets: targets(3)}})
	if err != nil || errs[0] != nil {
		t.Fatalf("two targets: %v, %v", err, errs[0])
	}
	wantCode(t, errs[1], syncpoint.CodeInvalid, "3 targets; a publish takes at most 2")
}
