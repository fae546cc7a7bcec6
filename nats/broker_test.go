package nats

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/natstest"
)

// testNATS returns the address of the shared test server, or skips.
func testNATS(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv("SYNCPOINT_TEST_NATS")
	if url == "" {
		tb.Skip("SYNCPOINT_TEST_NATS is not set; set it to a NATS server, e.g. nats://127.0.0.1:4222, to run the NATS broker tests")
	}
	return url
}

// testPrefix keeps concurrent tests on one server apart.
func testPrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "sptest." + hex.EncodeToString(b[:])
}

// MustOpen opens a broker and closes it at the end of the test.
func MustOpen(tb testing.TB, url string, opts Options) *Broker {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Open(ctx, url, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// recorder keeps what a broker delivered to one subscriber and listener.
type recorder struct {
	mu      sync.Mutex
	batches [][]syncpoint.Entry
	events  []syncpoint.Event
}

func record(tb testing.TB, b *Broker) *recorder {
	tb.Helper()
	r := new(recorder)
	if _, err := b.Subscribe(func(es []syncpoint.Entry) {
		r.mu.Lock()
		r.batches = append(r.batches, es)
		r.mu.Unlock()
	}); err != nil {
		tb.Fatal(err)
	}
	if _, err := b.Listen(func(ev syncpoint.Event) {
		r.mu.Lock()
		r.events = append(r.events, ev)
		r.mu.Unlock()
	}); err != nil {
		tb.Fatal(err)
	}
	return r
}

func (r *recorder) Batches() [][]syncpoint.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]syncpoint.Entry(nil), r.batches...)
}

func (r *recorder) Events() []syncpoint.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]syncpoint.Event(nil), r.events...)
}

func (r *recorder) lost() int {
	n := 0
	for _, ev := range r.Events() {
		if ev.Kind == syncpoint.EventLost {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func entry(ch syncpoint.Channel, seq uint64, data string) syncpoint.Entry {
	return syncpoint.Entry{
		Channel:   ch,
		Epoch:     "ep",
		Seq:       seq,
		Op:        syncpoint.OpMsg,
		Data:      json.RawMessage(data),
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, int(seq), time.UTC),
		Origin:    syncpoint.OriginAPI,
	}
}

func mustPublish(tb testing.TB, b *Broker, entries ...syncpoint.Entry) {
	tb.Helper()
	if err := b.Publish(context.Background(), entries); err != nil {
		tb.Fatal(err)
	}
}

func TestEntriesReachOtherNodeInOrder(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	a := MustOpen(t, url, Options{Node: "a", Subject: prefix})
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix})
	ra, rb := record(t, a), record(t, b)

	chans := []syncpoint.Channel{
		{Biz: "chat", Target: syncpoint.UserTarget("u1")},
		{Biz: "chat", Target: syncpoint.GroupTarget("g1")},
		{Biz: "config", Target: syncpoint.GlobalTarget()},
	}
	var sent [][]syncpoint.Entry
	seqs := make([]uint64, len(chans))
	for i := range 30 {
		var batch []syncpoint.Entry
		for j := range 1 + i%3 {
			c := (i + j) % len(chans)
			seqs[c]++
			batch = append(batch, entry(chans[c], seqs[c], fmt.Sprintf(`{"i":%d,"j":%d}`, i, j)))
		}
		mustPublish(t, a, batch...)
		sent = append(sent, batch)
		// The publisher's own subscriber got the batch inside Publish.
		if got := ra.Batches(); len(got) != i+1 || !reflect.DeepEqual(got[i], batch) {
			t.Fatalf("after publish %d node a's subscriber has %d batches, want %d, the last one the batch itself", i, len(got), i+1)
		}
	}
	eventually(t, 10*time.Second, "node b got every batch", func() bool { return len(rb.Batches()) >= len(sent) })

	// A marker from b reaches a after anything the server could have echoed
	// back to a, so a's count is final.
	marker := entry(syncpoint.Channel{Biz: "marker", Target: syncpoint.GlobalTarget()}, 1, `true`)
	mustPublish(t, b, marker)
	eventually(t, 10*time.Second, "node a got b's marker", func() bool { return len(ra.Batches()) == len(sent)+1 })

	if got := rb.Batches(); !reflect.DeepEqual(got[:len(sent)], sent) || len(got) != len(sent)+1 {
		t.Fatalf("node b got %d batches, want the %d sent, in order, and its own marker", len(got), len(sent))
	}
	if got := ra.Batches(); !reflect.DeepEqual(got[:len(sent)], sent) || !reflect.DeepEqual(got[len(sent)], []syncpoint.Entry{marker}) {
		t.Fatal("node a got its own batches twice, or not the marker last")
	}
	if ra.lost()+rb.lost() != 0 {
		t.Fatalf("lost events on a quiet connection: a %v, b %v", ra.Events(), rb.Events())
	}
}

func TestEventsReachOtherNode(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	a := MustOpen(t, url, Options{Node: "a", Subject: prefix})
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix})
	ra, rb := record(t, a), record(t, b)
	ctx := context.Background()

	at := time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC)
	sent := []syncpoint.Event{
		{Kind: syncpoint.EventHead, Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}, Epoch: "e1", Seq: 5},
		{Kind: syncpoint.EventConnect, DeviceID: "d1", UserID: "u1", Session: "s1", At: at},
		{Kind: syncpoint.EventRevoke, TokenID: "t1"},
		{Kind: syncpoint.EventReset, Node: "someone-else", Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.GroupTarget("g1")}},
	}
	for i, ev := range sent {
		if err := a.Announce(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if ev.Node == "" {
			sent[i].Node = "a"
		}
		if got := ra.Events(); len(got) != i+1 || !sameEvent(got[i], sent[i]) {
			t.Fatalf("after announce %d node a's listener has %+v, want the event last", i, got)
		}
	}
	if err := a.Announce(ctx, syncpoint.Event{Kind: syncpoint.EventLost}); err == nil {
		t.Fatal("announced EventLost")
	}

	eventually(t, 10*time.Second, "node b got every event", func() bool { return len(rb.Events()) >= len(sent) })
	marker := syncpoint.Event{Kind: syncpoint.EventBiz, Biz: "marker"}
	if err := b.Announce(ctx, marker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "node a got b's marker", func() bool { return len(ra.Events()) == len(sent)+1 })

	for name, got := range map[string][]syncpoint.Event{"a": ra.Events(), "b": rb.Events()} {
		if len(got) != len(sent)+1 {
			t.Fatalf("node %s got %d events, want %d: %+v", name, len(got), len(sent)+1, got)
		}
		for i := range sent {
			if !sameEvent(got[i], sent[i]) {
				t.Fatalf("node %s event %d: %+v, want %+v", name, i, got[i], sent[i])
			}
		}
		if last := got[len(sent)]; last.Biz != "marker" || last.Node != "b" {
			t.Fatalf("node %s's last event is %+v, want b's marker", name, last)
		}
	}
}

func sameEvent(a, b syncpoint.Event) bool {
	if !a.At.Equal(b.At) {
		return false
	}
	a.At, b.At = time.Time{}, time.Time{}
	return a == b
}

func TestLargeBatchIsSplit(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	reg := prometheus.NewRegistry()
	a := MustOpen(t, url, Options{Node: "a", Subject: prefix, Registerer: reg})
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix})
	rb := record(t, b)

	max := int(a.nc.MaxPayload())
	ch := syncpoint.Channel{Biz: "files", Target: syncpoint.DeviceTarget("d1")}
	var big []syncpoint.Entry
	for seq := uint64(1); seq <= 30; seq++ {
		big = append(big, entry(ch, seq, `"`+strings.Repeat(strconv.Itoa(int(seq%10)), max/10)+`"`))
	}
	// One entry alone is larger than a message may be.
	big = append(big, entry(ch, 31, `"`+strings.Repeat("z", max+max/2)+`"`))
	small := []syncpoint.Entry{entry(ch, 32, `{}`)}
	mustPublish(t, a, big...)
	mustPublish(t, a, small...)

	eventually(t, 20*time.Second, "node b got both batches", func() bool { return len(rb.Batches()) == 2 })
	got := rb.Batches()
	if !reflect.DeepEqual(got[0], big) || !reflect.DeepEqual(got[1], small) {
		t.Fatalf("node b got batches of %d and %d entries, want %d and %d, whole and in order", len(got[0]), len(got[1]), len(big), len(small))
	}
	if n := testutil.ToFloat64(a.m.published.WithLabelValues(labelEntries)); n < 6 {
		t.Fatalf("%v messages for about %d bytes; the batch was not split", n, 4*max+max/2)
	}
	if rb.lost() != 0 {
		t.Fatalf("lost events: %+v", rb.Events())
	}
	if n, err := testutil.GatherAndCount(reg, "syncpoint_nats_messages_published_total"); err != nil || n != 1 {
		t.Fatalf("registry has %d published series (%v), want 1", n, err)
	}
}

func TestDropIncomingIsNoticedAsAGap(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	var seen, dropped atomic.Int32
	a := MustOpen(t, url, Options{Node: "a", Subject: prefix})
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix, DropIncoming: func(subject string) bool {
		if subject != prefix+".entries" || seen.Add(1) != 2 {
			return false
		}
		dropped.Add(1)
		return true
	}})
	rb := record(t, b)
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	for seq := uint64(1); seq <= 3; seq++ {
		mustPublish(t, a, entry(ch, seq, `1`))
	}
	eventually(t, 10*time.Second, "node b got two batches and a lost event", func() bool {
		return len(rb.Batches()) == 2 && rb.lost() == 1
	})
	if dropped.Load() != 1 {
		t.Fatalf("DropIncoming dropped %d messages, want 1", dropped.Load())
	}
	got := rb.Batches()
	if got[0][0].Seq != 1 || got[1][0].Seq != 3 {
		t.Fatalf("node b got seqs %d and %d, want 1 and 3", got[0][0].Seq, got[1][0].Seq)
	}
	if ev := rb.Events()[0]; ev != (syncpoint.Event{Kind: syncpoint.EventLost, Node: "b"}) {
		t.Fatalf("event %+v, want EventLost of node b", ev)
	}
	if n := testutil.ToFloat64(b.m.lost.WithLabelValues(lostGap)); n != 1 {
		t.Fatalf("%v gaps counted, want 1", n)
	}
}

func TestSlowConsumerMakesEventLost(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	a := MustOpen(t, url, Options{Node: "a", Subject: prefix})
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix, PendingLimit: 1})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before b closes: Close waits for delivery
	var delivered atomic.Int32
	var last atomic.Uint64
	if _, err := b.Subscribe(func(es []syncpoint.Entry) {
		if delivered.Add(1) == 1 {
			<-release // a subscriber that blocks, against the rules
		}
		last.Store(es[0].Seq)
	}); err != nil {
		t.Fatal(err)
	}
	var lost atomic.Int32
	if _, err := b.Listen(func(ev syncpoint.Event) {
		if ev.Kind == syncpoint.EventLost {
			lost.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}

	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	for seq := uint64(1); seq <= 50; seq++ {
		mustPublish(t, a, entry(ch, seq, `1`))
	}
	if err := a.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a slow consumer was noticed", func() bool {
		return testutil.ToFloat64(b.m.lost.WithLabelValues(lostSlowConsumer)) >= 1 && lost.Load() >= 1
	})
	unblock()
	// Batches one at a time get through, even with a queue of one; the
	// first to arrive shows the gap.
	seq := uint64(50)
	eventually(t, 10*time.Second, "a later batch arrived and showed the gap", func() bool {
		if last.Load() == seq {
			return testutil.ToFloat64(b.m.lost.WithLabelValues(lostGap)) >= 1
		}
		seq++
		mustPublish(t, a, entry(ch, seq, `1`))
		return false
	})
	if n := delivered.Load(); uint64(n) >= seq {
		t.Fatalf("%d batches delivered of %d; none was dropped", n, seq)
	}
}

func TestMalformedMessageMakesEventLost(t *testing.T) {
	url, prefix := testNATS(t), testPrefix()
	b := MustOpen(t, url, Options{Node: "b", Subject: prefix})
	rb := record(t, b)
	raw, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Publish(prefix+".entries", []byte("not a syncpoint message")); err != nil {
		t.Fatal(err)
	}
	// A well-formed event on the entries subject is malformed too.
	h := appendHeader(nil, header{kind: kindEvent, flags: flagFirst | flagLast, node: "x", instance: 1, seq: 1})
	if err := raw.Publish(prefix+".entries", append(h, `{"kind":"biz"}`...)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two lost events", func() bool { return rb.lost() == 2 })
	if n := testutil.ToFloat64(b.m.lost.WithLabelValues(lostMalformed)); n != 2 {
		t.Fatalf("%v malformed messages counted, want 2", n)
	}
	if len(rb.Batches()) != 0 {
		t.Fatalf("delivered %+v", rb.Batches())
	}
}

func TestClosedBrokerRefuses(t *testing.T) {
	url := testNATS(t)
	b := MustOpen(t, url, Options{Node: "a", Subject: testPrefix()})
	ctx := context.Background()
	if err := b.Health(ctx); err != nil {
		t.Fatalf("health of an open broker: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := b.Publish(ctx, []syncpoint.Entry{entry(syncpoint.Channel{Biz: "chat", Target: syncpoint.GlobalTarget()}, 1, `1`)}); !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("publish after close: %v, want ErrClosed", err)
	}
	if err := b.Announce(ctx, syncpoint.Event{Kind: syncpoint.EventBiz, Biz: "chat"}); !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("announce after close: %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(func([]syncpoint.Entry) {}); !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("subscribe after close: %v, want ErrClosed", err)
	}
	if err := b.Health(ctx); err == nil {
		t.Fatal("a closed broker is healthy")
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	for name, opts := range map[string]Options{
		"no node":       {},
		"long node":     {Node: strings.Repeat("n", MaxNodeLen+1)},
		"wildcard":      {Node: "a", Subject: "sync.*"},
		"empty token":   {Node: "a", Subject: "sync..point"},
		"space":         {Node: "a", Subject: "sync point"},
		"trailing dot.": {Node: "a", Subject: "sync."},
	} {
		if b, err := Open(ctx, "nats://127.0.0.1:1", opts); err == nil {
			b.Close()
			t.Errorf("%s: opened", name)
		}
	}
	// Nothing listens on the port: Open fails rather than waiting.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := Open(ctx, "nats://"+addr, Options{Node: "a"}); err == nil {
		t.Fatal("opened with no server")
	}
}

func TestMetricsRegisterOnce(t *testing.T) {
	url := testNATS(t)
	reg := prometheus.NewRegistry()
	MustOpen(t, url, Options{Node: "a", Subject: testPrefix(), Registerer: reg})
	if _, err := Open(context.Background(), url, Options{Node: "b", Subject: testPrefix(), Registerer: reg}); err == nil {
		t.Fatal("a second broker registered the same series")
	}
}

func TestReconnectAfterServerRestart(t *testing.T) {
	srv := natstest.Start(t)
	opts := func(node string) Options {
		return Options{Node: node, Subject: testPrefix(), ReconnectWait: 20 * time.Millisecond, MaxReconnectWait: 200 * time.Millisecond, Registerer: prometheus.NewRegistry()}
	}
	oa, ob := opts("a"), opts("b")
	ob.Subject = oa.Subject
	a, b := MustOpen(t, srv.URL(), oa), MustOpen(t, srv.URL(), ob)
	ra, rb := record(t, a), record(t, b)
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	ctx := context.Background()

	mustPublish(t, a, entry(ch, 1, `1`))
	eventually(t, 10*time.Second, "the first batch arrived", func() bool { return len(rb.Batches()) == 1 })

	srv.Stop()
	eventually(t, 10*time.Second, "both brokers are unhealthy", func() bool {
		return a.Health(ctx) != nil && b.Health(ctx) != nil
	})
	// While reconnecting, publishes are buffered or refused, never stuck.
	start := time.Now()
	if err := a.Publish(ctx, []syncpoint.Entry{entry(ch, 2, `2`)}); err != nil {
		t.Logf("publish while disconnected: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("publish while disconnected took %v", d)
	}
	if n := len(ra.Batches()); n != 2 {
		t.Fatalf("node a's own subscriber has %d batches, want 2: local delivery needs no NATS", n)
	}

	srv.Start()
	eventually(t, 20*time.Second, "both brokers reconnected and made EventLost", func() bool {
		return a.Health(ctx) == nil && b.Health(ctx) == nil && ra.lost() >= 1 && rb.lost() >= 1
	})
	for _, x := range []*Broker{a, b} {
		if n := testutil.ToFloat64(x.m.reconnects); n != 1 {
			t.Fatalf("node %s counted %v reconnects, want 1", x.node, n)
		}
		if n := testutil.ToFloat64(x.m.lost.WithLabelValues(lostReconnect)); n != 1 {
			t.Fatalf("node %s counted %v lost events for reconnects, want 1", x.node, n)
		}
	}
	for _, ev := range rb.Events() {
		if ev != (syncpoint.Event{Kind: syncpoint.EventLost, Node: "b"}) {
			t.Fatalf("node b got %+v, want only its own EventLost", ev)
		}
	}

	// Publishes flow again; the batch buffered while disconnected may or
	// may not have reached b, which is what EventLost is for.
	mustPublish(t, a, entry(ch, 3, `3`))
	eventually(t, 10*time.Second, "the batch after the restart arrived", func() bool {
		got := rb.Batches()
		return len(got) > 0 && got[len(got)-1][0].Seq == 3
	})
	if err := b.Announce(ctx, syncpoint.Event{Kind: syncpoint.EventBiz, Biz: "after"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the event after the restart arrived", func() bool {
		evs := ra.Events()
		return len(evs) > 0 && evs[len(evs)-1].Biz == "after"
	})
}
