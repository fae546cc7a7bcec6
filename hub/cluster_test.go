package hub_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/ws"
)

// newPair is two hubs, nodes "a" and "b", over one store, one broker and
// one directory: a cluster in one process, so the hub's cluster paths run
// under the race detector. Publishes through the pair's publisher reach
// both nodes; publishes through onlyA's never reach b, as when b lost a
// broker message. pushed reads a node's count of entries sent to devices.
func newPair(t *testing.T) (a, b *env, onlyA *publish.Publisher, pushed func(node string) float64) {
	t.Helper()
	store, reg, verifier := openStore(t)
	broker, aOnly, dir := local.New(), local.New(), local.NewDirectory()
	pushedOn := map[string]*prometheus.Registry{}
	node := func(name string) *env {
		metrics := prometheus.NewRegistry()
		h := hub.New(hub.Config{
			Store: store, Registry: reg, Verifier: verifier, HeartbeatInterval: 5 * time.Second, FlushInterval: 20 * time.Millisecond,
			Node: name, Broker: broker, Directory: dir, Registerer: metrics,
		})
		pushedOn[name] = metrics
		unsub, _ := broker.Subscribe(h.Deliver)
		stopListen, _ := broker.Listen(h.HandleEvent)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		mux := http.NewServeMux()
		mux.Handle("GET /v1/connect", &ws.Handler{Hub: h})
		srv := httptest.NewServer(mux)
		t.Cleanup(func() {
			h.Close()
			cancel()
			<-done
			srv.Close()
			unsub()
			stopListen()
		})
		return &env{t: t, store: store, reg: reg, hub: h, http: srv}
	}
	a, b = node("a"), node("b")
	if unsub, err := aOnly.Subscribe(a.hub.Deliver); err == nil {
		t.Cleanup(unsub)
	}
	pub := publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})
	a.pub, b.pub = pub, pub
	t.Cleanup(func() { store.Close() })
	pushed = func(node string) float64 {
		t.Helper()
		families, err := pushedOn[node].Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "syncpoint_pushed_entries_total" {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	return a, b, publish.New(publish.Config{Store: store, Broker: aOnly, Registry: reg}), pushed
}

// The newest session of the user wins a multi_device: false channel across
// nodes and starts after what the older one, on the other node, acked; the
// older one receives nothing more.
func TestClusterSingleDeviceMovesToTheNewestNode(t *testing.T) {
	a, b, _, pushed := newPair(t)
	older := a.dial(wsJSON)
	older.mustHello(a.token("u1"), "phone", "pay")
	for range 3 {
		a.publish("pay", u1, `"early"`)
	}
	older.collect(3, 5*time.Second) // acks 1…3
	newer := b.dial(wsJSON)
	newer.mustHello(b.token("u1"), "tablet", "pay")
	a.publish("pay", u1, `"late"`)
	// The tablet's channel starts once node a has handed it over, from
	// the position the phone reached.
	got := newer.collect(1, 5*time.Second)
	if got[0].Seq != 4 || string(got[0].Data) != `"late"` {
		t.Fatalf("the tablet on node b got seq %d %s first; want seq 4: the phone on node a acked 1…3", got[0].Seq, got[0].Data)
	}
	// Node a let go before node b took over: from now on it sends the
	// phone nothing. (Seq 4 may have reached the phone too, published as
	// node a was hearing of the tablet.)
	before := pushed("a")
	for range 3 {
		a.publish("pay", u1, `"after"`)
	}
	newer.collect(3, 5*time.Second)
	if after := pushed("a"); after != before {
		t.Fatalf("node a pushed %v more entries after the tablet took the channel", after-before)
	}
}

// A device that connects to node b closes its session on node a.
func TestClusterKickAcrossNodes(t *testing.T) {
	a, b, _, _ := newPair(t)
	first := a.dial(wsJSON)
	first.mustHello(a.token("u1"), "d1", "chat")
	second := b.dial(wsJSON)
	second.mustHello(b.token("u1"), "d1", "chat")
	if e := first.waitClose(5 * time.Second); e == nil || e.Code != wire.CloseNormal {
		t.Fatalf("the session on node a ended with %+v; want a close with %d", e, wire.CloseNormal)
	}
	waitFor(t, "node a drops the device", func() bool { return !a.hub.Online("d1") })
	if !b.hub.Online("d1") {
		t.Fatal("the newer session on node b is gone too")
	}
}

// An entry whose broker message node b never got reaches b's device once b
// is told the channel's head (the periodic check, or after EventLost).
func TestClusterNudgeReadsWhatTheBrokerLost(t *testing.T) {
	a, b, onlyA, pushed := newPair(t)
	c := b.dial(wsJSON)
	c.mustHello(b.token("u1"), "d1", "chat")
	res, err := onlyA.Publish(context.Background(), publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}, Data: []byte(`"lost"`)})
	if err != nil || res[0].Err != nil {
		t.Fatalf("publish: %v %v", err, res)
	}
	time.Sleep(100 * time.Millisecond)
	if n := pushed("b"); n != 0 {
		t.Fatalf("node b pushed %v entries without having been told of any", n)
	}
	ch := syncpoint.Channel{Biz: "chat", Target: u1}
	info, err := a.store.Channel(context.Background(), ch)
	if err != nil {
		t.Fatal(err)
	}
	info.Channel = ch
	b.hub.Nudge(info)
	got := c.collect(1, 5*time.Second)
	if got[0].Seq != 1 || string(got[0].Data) != `"lost"` {
		t.Fatalf("after the nudge node b delivered seq %d %s; want seq 1", got[0].Seq, got[0].Data)
	}
}
