package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/internal/faultnet"
)

// TestBadNetworks: SDK devices on WebSocket (JSON and protobuf) and raw
// TCP sync through proxies whose faults change every second or so, half of
// them uploading records they wrote offline and go on writing, while a
// backend, through a faulty proxy of its own, publishes to user, group and
// global channels with idempotency keys. Once the faults stop, every
// device has every entry exactly once and in order, every upload is
// stored once, and the devices' records equal the server's.
func TestBadNetworks(t *testing.T) {
	bizzes := []biz{
		{name: "chat", target: "user"},
		{name: "news", target: "global"},
		{name: "team", target: "group", compact: true},
		{name: "config", target: "global", compact: true},
		{name: "notes", target: "user", writable: true, compact: true},
		{name: "log", target: "user", writable: true},
	}
	e := newEnv(t, bizzes, "--heartbeat-interval", "1s")
	wsProxy, tcpProxy, backProxy := e.proxy(e.srv.HTTPAddr()), e.proxy(e.srv.TCPAddr()), e.proxy(e.srv.HTTPAddr())
	n := size(*flagDevices, 30, 100)
	d := faultTime(20 * time.Second)
	t.Logf("%d devices, faults for %s", n, d)

	users := max(n/3, 1)
	groups := []string{"g0", "g1", "g2", "g3"}
	var devs []*device
	targets := []target{{biz: "news", target: "global"}, {biz: "config", target: "global", keys: 10}}
	for u := range users {
		targets = append(targets, target{biz: "chat", target: fmt.Sprintf("user:u%d", u)})
	}
	for _, g := range groups {
		targets = append(targets, target{biz: "team", target: "group:" + g, keys: 20})
	}
	ctx := context.Background()
	for i := range n {
		o := devOpts{id: fmt.Sprintf("d%03d", i), user: fmt.Sprintf("u%d", i%users), groups: []string{groups[i%len(groups)]},
			bizzes: []string{"chat", "news", "team", "config", "notes", "log"}}
		if i%5 == 0 {
			o.groups = append(o.groups, groups[(i+1)%len(groups)])
		}
		switch i % 3 {
		case 0:
			o.tcp = tcpProxy.Addr()
		case 1:
			o.server = "http://" + wsProxy.Addr()
		default:
			o.server, o.proto = "http://"+wsProxy.Addr(), true
		}
		dv := e.openDevice(o)
		if i%2 == 0 {
			// Written offline, before the first connection.
			for range 3 {
				for _, b := range []string{"notes", "log"} {
					if err := dv.put(ctx, b); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		devs = append(devs, dv)
	}
	for _, dv := range devs {
		dv.run()
	}

	netFaults := e.chaos(faultnet.Chaos{Proxies: []*faultnet.Proxy{wsProxy, tcpProxy}, Every: time.Second, Calm: 0.2, MaxCut: 16 << 10})
	backFaults := e.chaos(faultnet.Chaos{Proxies: []*faultnet.Proxy{backProxy}, Every: 2 * time.Second, Calm: 0.4,
		Kinds: []faultnet.Kind{faultnet.Latency, faultnet.Cut, faultnet.Reset, faultnet.SlowClose, faultnet.Slice}})
	publish := e.backend("", e.apiClient("http://"+backProxy.Addr()), 4, 0, 30*time.Second, targets)
	run, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		netFaults(run, d)
		stop()
	})
	wg.Go(func() { backFaults(run, d) })
	var published int
	wg.Go(func() { published = publish(run) })
	for i, dv := range devs {
		if i%2 == 0 {
			wg.Go(func() { dv.uploading(run, 700*time.Millisecond, "notes", "log") })
		}
	}
	wg.Wait()
	t.Logf("%d publishes sent", published)

	var cs []caughtUp
	for _, dv := range devs {
		cs = append(cs, dv)
	}
	e.converge(e.api, 2*time.Minute, cs...)
	e.check(e.api, devs...)
}
