package chaos

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/internal/faultnet"
)

// TestHTTPSyncFaults: devices that sync without a socket, through a
// proxy that cuts responses part way (small cut budgets land inside
// bodies), resets, black-holes and slows them. SyncOnce clients pull pages
// and send their outboxes; SSE readers resume with Last-Event-ID; raw
// writers send POST /v1/write again with the same write_id after every
// cut. Once the faults stop, every client has every entry exactly once
// and in order, and every upload is stored once.
func TestHTTPSyncFaults(t *testing.T) {
	bizzes := []biz{
		{name: "chat", target: "user"},
		{name: "news", target: "global"},
		{name: "config", target: "global", compact: true},
		{name: "notes", target: "user", writable: true, compact: true},
		{name: "log", target: "user", writable: true},
	}
	e := newEnv(t, bizzes)
	px := e.proxy(e.srv.HTTPAddr())
	base := "http://" + px.Addr()
	d := faultTime(15 * time.Second)
	const users = 3
	nSync, nSSE := size(0, 6, 20), size(0, 6, 20)
	t.Logf("%d SyncOnce clients, %d SSE readers, 2 raw writers; faults for %s", nSync, nSSE, d)

	var devs []*device
	for i := range nSync {
		devs = append(devs, e.openDevice(devOpts{id: fmt.Sprintf("s%02d", i), user: fmt.Sprintf("u%d", i%users), server: base,
			bizzes: []string{"chat", "news", "config", "notes", "log"}}))
	}
	var readers []*sseReader
	for i := range nSSE {
		readers = append(readers, e.sseReader(fmt.Sprintf("e%02d", i), fmt.Sprintf("u%d", i%users), nil, base, "chat", "news", "config", "notes", "log"))
	}
	targets := []target{{biz: "news", target: "global"}, {biz: "config", target: "global", keys: 8}}
	for u := range users {
		targets = append(targets, target{biz: "chat", target: fmt.Sprintf("user:u%d", u)})
	}

	faults, stopFaults := context.WithCancel(context.Background())
	load, stopLoad := context.WithCancel(context.Background())
	clients, stopClients := context.WithCancel(context.Background())
	var wg, cwg sync.WaitGroup
	// Mostly cuts and resets: those are what land inside responses.
	kinds := []faultnet.Kind{faultnet.Cut, faultnet.Cut, faultnet.Cut, faultnet.Reset, faultnet.Reset,
		faultnet.HalfOpen, faultnet.Latency, faultnet.Slice, faultnet.SlowClose, faultnet.Bandwidth}
	runFaults := e.chaos(faultnet.Chaos{Proxies: []*faultnet.Proxy{px}, Every: 700 * time.Millisecond, Calm: 0.1, MaxFaults: 2, Kinds: kinds, MaxCut: 4 << 10})
	publish := e.backend("", e.api, 3, 10*time.Millisecond, time.Minute, targets)
	wg.Go(func() {
		runFaults(faults, d)
		stopLoad()
	})
	wg.Go(func() { publish(load) })
	for i := range 2 {
		w := e.rawWriter(fmt.Sprintf("raw%d", i), fmt.Sprintf("u%d", i), base)
		wg.Go(func() { w.writing(load, 50*time.Millisecond, time.Minute) })
	}
	var passes, failed atomic.Int64
	for _, dv := range devs {
		rng := newRand(e.rng)
		cwg.Go(func() {
			for clients.Err() == nil {
				if load.Err() == nil && rng.IntN(2) == 0 {
					if err := dv.put(clients, []string{"notes", "log"}[rng.IntN(2)]); err != nil {
						t.Errorf("put: %v", err)
						return
					}
				}
				ctx, cancel := context.WithTimeout(clients, 4*time.Second)
				if err := dv.cl.SyncOnce(ctx); err != nil {
					failed.Add(1)
				}
				cancel()
				passes.Add(1)
				time.Sleep(time.Duration(50+rng.IntN(200)) * time.Millisecond)
			}
		})
	}
	for _, r := range readers {
		cwg.Go(func() { r.run(clients) })
	}
	wg.Wait()
	stopFaults()

	var cs []caughtUp
	for _, dv := range devs {
		cs = append(cs, dv)
	}
	for _, r := range readers {
		cs = append(cs, r)
	}
	e.converge(e.api, 2*time.Minute, cs...)
	stopClients()
	cwg.Wait()
	t.Logf("%d SyncOnce passes, %d of them cut short", passes.Load(), failed.Load())
	for _, r := range readers {
		t.Logf("SSE %s", r)
	}
	e.check(e.api, devs...)
}
