package chaos

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/internal/faultnet"
	"github.com/syncpoint/syncpoint/internal/pgtest"
	"github.com/syncpoint/syncpoint/internal/servetest"
)

// TestClusterPartition runs three nodes on one PostgreSQL schema and one
// NATS, with node 2 reaching NATS only through a proxy. Devices are spread
// over the nodes, uploading records, while a backend publishes through
// nodes 0 and 1. Node 2 is cut off from NATS for a while (the proxy
// black-holes both ways, a partition: neither side hears that the other
// is gone), then the connection is torn down and comes back; later it is
// reset outright. Devices on node 2 must still get everything, from the
// store, once each and in order. It needs SYNCPOINT_TEST_POSTGRES and
// SYNCPOINT_TEST_NATS, and skips without.
func TestClusterPartition(t *testing.T) {
	mustBinary(t)
	natsURL := os.Getenv("SYNCPOINT_TEST_NATS")
	if natsURL == "" {
		t.Skip("SYNCPOINT_TEST_NATS is not set: set it to a NATS URL (nats://127.0.0.1:4222) to run the cluster scenario")
	}
	store := pgtest.Schema(t, 6)
	nu, err := url.Parse(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	bizzes := []biz{
		{name: "chat", target: "user"},
		{name: "news", target: "global"},
		{name: "notes", target: "user", writable: true, compact: true},
	}
	e := newEnvNoServer(t, bizzes)
	natsProxy := e.proxy(nu.Host)
	prefix := fmt.Sprintf("spchaos%08x", e.rng.Uint32())
	var nodes []*servetest.Server
	for i := range 3 {
		nats := natsURL
		if i == 2 {
			nats = "nats://" + natsProxy.Addr()
		}
		nodes = append(nodes, servetest.Start(t, servetest.Config{
			Bin: mustBinary(t), Data: filepath.Join(t.TempDir(), fmt.Sprintf("node%d", i)), YAML: configYAML(bizzes),
			APIKey: e.apiKey, TokenSecret: e.secret,
			Args: []string{"--log-level", "warn", "--store", store, "--nats", nats, "--cluster", prefix,
				"--node-id", fmt.Sprintf("node%d", i), "--head-check-interval", "500ms", "--heartbeat-interval", "1s"},
		}))
	}
	e.srv = nodes[0]
	e.api = e.apiClient(nodes[0].URL())
	apis := []*apiclient.Client{e.api, e.apiClient(nodes[1].URL())}
	urls := func(first int) []string {
		var out []string
		for k := range nodes {
			out = append(out, nodes[(first+k)%len(nodes)].URL())
		}
		return out
	}

	const users = 3
	var devs []*device
	for i := range 9 {
		servers := urls(i % 3)
		devs = append(devs, e.openDevice(devOpts{id: fmt.Sprintf("n%d", i), user: fmt.Sprintf("u%d", i%users), server: servers[0],
			bizzes: []string{"chat", "news", "notes"}, proto: i%2 == 0,
			mod: func(c *client.Config) { c.Fallbacks = servers[1:] }}))
	}
	// Node 2's devices say how late entries reach them while NATS is cut.
	var lat latencies
	for i, d := range devs {
		if i%3 == 2 {
			d.onEntry = func(en client.Entry) {
				if at, ok := sentAt(en.Data); ok {
					lat.add(time.Since(at))
				}
			}
		}
		d.run()
	}
	targets := []target{{biz: "news", target: "global"}}
	for u := range users {
		targets = append(targets, target{biz: "chat", target: fmt.Sprintf("user:u%d", u)})
	}
	load, stopLoad := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, api := range apis {
		publish := e.backend(fmt.Sprintf("n%d-", i), api, 2, 10*time.Millisecond, time.Minute, targets)
		wg.Go(func() { publish(load) })
	}
	for _, d := range devs {
		wg.Go(func() { d.uploading(load, 500*time.Millisecond, "notes") })
	}

	partition := faultTime(5 * time.Second)
	time.Sleep(2 * time.Second)
	if n := natsProxy.Conns(); n == 0 {
		t.Fatal("node 2 has no connection through the NATS proxy")
	}
	t.Logf("before: node 2's devices got %s", lat.take())
	natsProxy.Set([]faultnet.Fault{{Kind: faultnet.HalfOpen}, {Kind: faultnet.HalfOpen, Upstream: true}})
	time.Sleep(partition)
	t.Logf("node 2 cut off from NATS for %s: its devices got %s", partition, lat.take())
	natsProxy.Heal() // tears down the black-holed connection
	time.Sleep(3 * time.Second)
	t.Logf("partition over: %s", lat.take())
	natsProxy.KillAll(true)
	time.Sleep(3 * time.Second)
	t.Logf("node 2's NATS connection reset: %s", lat.take())
	stopLoad()
	wg.Wait()

	var cs []caughtUp
	for _, d := range devs {
		cs = append(cs, d)
	}
	e.converge(e.api, 2*time.Minute, cs...)
	e.check(e.api, devs...)
}
