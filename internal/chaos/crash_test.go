package chaos

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestCrashesUnderLoad SIGKILLs the server again and again while devices
// are connected, uploads are in flight (from the SDK's outbox and from raw
// POST /v1/write with write_ids), a backend publishes with idempotency
// keys, and compaction, trimming (max_backlog) and sweeps of expired
// entries (every 200ms) run. Each restart is on the same data dir. Every
// acknowledged publish and every upload result survives, nothing is
// applied twice, and order holds.
func TestCrashesUnderLoad(t *testing.T) {
	bizzes := []biz{
		{name: "chat", target: "user"},
		{name: "news", target: "global"},
		{name: "config", target: "global", compact: true},
		{name: "notes", target: "user", writable: true, compact: true},
		{name: "log", target: "user", writable: true},
		{name: "feed", target: "global", trimmed: true, extra: []string{"max_backlog: 50"}},
		{name: "blip", target: "user", trimmed: true, extra: []string{"retention: 2s"}},
	}
	e := newEnv(t, bizzes, "--sweep-interval", "200ms", "--heartbeat-interval", "1s")
	rounds := size(*flagRounds, 5, 20)
	between := 1500 * time.Millisecond
	if soak() {
		between = *flagSoak / time.Duration(rounds)
	}
	const users = 4
	n := 12
	t.Logf("%d kill -9 rounds, about %s apart; %d devices", rounds, between, n)

	var devs []*device
	for i := range n {
		o := devOpts{id: fmt.Sprintf("c%02d", i), user: fmt.Sprintf("u%d", i%users), bizzes: []string{"chat", "news", "config", "notes", "log", "feed", "blip"}}
		if i%2 == 0 {
			o.tcp = e.srv.TCPAddr()
		} else {
			o.server, o.proto = e.srv.URL(), i%4 == 1
		}
		devs = append(devs, e.openDevice(o))
	}
	for _, d := range devs {
		d.run()
	}
	targets := []target{{biz: "news", target: "global"}, {biz: "config", target: "global", keys: 8}, {biz: "feed", target: "global"}}
	for u := range users {
		targets = append(targets, target{biz: "chat", target: fmt.Sprintf("user:u%d", u)}, target{biz: "blip", target: fmt.Sprintf("user:u%d", u)})
	}

	load, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var published int
	publish := e.backend("", e.api, 4, 5*time.Millisecond, time.Minute, targets)
	wg.Go(func() { published = publish(load) })
	for i, d := range devs {
		if i%2 == 0 {
			wg.Go(func() { d.uploading(load, 300*time.Millisecond, "notes", "log") })
		}
	}
	for i := range 2 {
		w := e.rawWriter(fmt.Sprintf("raw%d", i), fmt.Sprintf("u%d", i), e.srv.URL())
		wg.Go(func() { w.writing(load, 20*time.Millisecond, time.Minute) })
	}
	for r := range rounds {
		time.Sleep(between/2 + time.Duration(e.rng.Int64N(int64(between))))
		e.srv.Kill()
		time.Sleep(time.Duration(e.rng.Int64N(int64(300 * time.Millisecond))))
		start := time.Now()
		e.srv.Restart()
		t.Logf("round %d: killed and restarted in %s", r, time.Since(start).Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	stopLoad()
	wg.Wait()
	t.Logf("%d publishes sent", published)

	var cs []caughtUp
	for _, d := range devs {
		cs = append(cs, d)
	}
	e.converge(e.api, 2*time.Minute, cs...)
	e.check(e.api, devs...)
}
