package bench

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBenchPlacement(t *testing.T) {
	for _, tc := range []struct {
		p         placement
		devices   []int // the servers of devices 0, 1, 2, ...
		publishes []int // the servers of publish requests 0, 1, 2, ...
	}{
		{placement{servers: 1}, []int{0, 0, 0}, []int{0, 0, 0}},
		{placement{servers: 2}, []int{0, 1, 0, 1}, []int{0, 1, 0, 1}},
		{placement{servers: 3}, []int{0, 1, 2, 0, 1, 2, 0}, []int{0, 1, 2, 0, 1, 2, 0}},
		{placement{servers: 2, cross: true}, []int{1, 1, 1}, []int{0, 0, 0}},
		{placement{servers: 3, cross: true}, []int{1, 2, 1, 2, 1}, []int{0, 0, 0, 0}},
	} {
		for i, want := range tc.devices {
			if got := tc.p.device(i); got != want {
				t.Errorf("%+v: device %d on server %d; want %d", tc.p, i, got, want)
			}
		}
		for k, want := range tc.publishes {
			if got := tc.p.publish(int64(k)); got != want {
				t.Errorf("%+v: publish %d to server %d; want %d", tc.p, k, got, want)
			}
		}
	}
}

// The paced scenarios' rotation sends each channel's entries through every
// server, even when the servers divide the channels, and keeps the load even.
func TestBenchRotate(t *testing.T) {
	for _, servers := range []int{2, 3, 4} {
		p := placement{servers: servers}
		for _, channels := range []int{1, 2, 3, 4, 6, 10, 12} {
			seen := make([]map[int]bool, channels)
			for c := range seen {
				seen[c] = make(map[int]bool)
			}
			load := make([]int, servers)
			entries := channels * servers
			for k := range int64(entries) {
				s := p.publish(rotate(k, channels))
				seen[k%int64(channels)][s] = true
				load[s]++
			}
			for c := range seen {
				if len(seen[c]) != servers {
					t.Errorf("%d servers, %d channels: channel %d published through %d servers", servers, channels, c, len(seen[c]))
				}
			}
			for s, n := range load {
				if n != channels {
					t.Errorf("%d servers, %d channels: server %d got %d of %d publishes", servers, channels, s, n, entries)
				}
			}
		}
	}
}

// A runner sends each device and each publish to the server its placement
// names, and refuses lists that do not fit together.
func TestBenchTargetServers(t *testing.T) {
	target := Target{
		Servers:     []string{"http://a:1/", "http://b:1", "https://c:1"},
		TCPs:        []string{"a:2", "b:2", "c:2"},
		APIKey:      "k",
		TokenSecret: testTokenSecret,
		Transport:   TransportTCP,
	}
	r, err := newRunner(target, true)
	if err != nil {
		t.Fatal(err)
	}
	if r.t.Server != "http://a:1" || r.t.TCP != "a:2" {
		t.Fatalf("server %q, tcp %q; want the first of each list", r.t.Server, r.t.TCP)
	}
	for i, want := range []string{"a", "b", "c", "a", "b"} {
		if got := r.deviceServer(i); !strings.Contains(got, "//"+want+":1") {
			t.Errorf("device %d on %s; want %s", i, got, want)
		}
		if got := r.deviceTCP(i); got != want+":2" {
			t.Errorf("device %d over TCP to %s; want %s:2", i, got, want)
		}
		if got := r.publisher(int64(i)).BaseURL; !strings.Contains(got, "//"+want+":1") {
			t.Errorf("publish %d to %s; want %s", i, got, want)
		}
	}

	target.CrossNode = true
	if r, err = newRunner(target, true); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"b", "c", "b", "c"} {
		if got := r.deviceTCP(i); got != want+":2" {
			t.Errorf("cross-node: device %d over TCP to %s; want %s:2", i, got, want)
		}
		if got := r.publisher(int64(i)).BaseURL; got != "http://a:1" {
			t.Errorf("cross-node: publish %d to %s; want a", i, got)
		}
	}

	// Server and TCP alone are a list of one, as before.
	if r, err = newRunner(Target{Server: "http://a:1/", TCP: "a:2", APIKey: "k"}, false); err != nil {
		t.Fatal(err)
	}
	if len(r.t.Servers) != 1 || r.t.Servers[0] != "http://a:1" || len(r.t.TCPs) != 1 || r.t.TCPs[0] != "a:2" || len(r.clients) != 1 {
		t.Fatalf("servers %v, tcps %v", r.t.Servers, r.t.TCPs)
	}

	for _, tc := range []struct {
		edit func(*Target)
		want string
	}{
		{func(t *Target) { t.Server = "http://b:1" }, "not the first"},
		{func(t *Target) { t.TCP = "b:2" }, "not the first"},
		{func(t *Target) { t.TCPs = t.TCPs[:2] }, "3 servers but 2 TCP addresses"},
		{func(t *Target) { t.Servers = t.Servers[:1]; t.TCPs = t.TCPs[:1]; t.CrossNode = true }, "two servers"},
		{func(t *Target) { t.Servers[1] = "ftp://b" }, "want an http"},
	} {
		bad := target
		bad.Servers = append([]string(nil), target.Servers...)
		tc.edit(&bad)
		if _, err := newRunner(bad, true); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want an error saying %q", bad, err, tc.want)
		}
	}
}

// Two URLs of one node stand for two servers: deliveries work wherever the
// devices are, and the CPU is read from each.
func TestBenchTwoServersOneNode(t *testing.T) {
	target := MustRunServer(t)
	port := target.Server[strings.LastIndex(target.Server, ":"):]
	target.Servers = []string{target.Server, "http://localhost" + port}
	target.TCPs = []string{target.TCP, "localhost" + target.TCP[strings.LastIndex(target.TCP, ":"):]}
	for _, tc := range []struct {
		transport string
		cross     bool
	}{{TransportWS, false}, {TransportTCP, true}} {
		target.Transport, target.Encoding, target.CrossNode = tc.transport, "", tc.cross
		rep, err := Latency(t.Context(), LatencyConfig{Target: target, Paced: Paced{Devices: 6, Rate: 200, Duration: 300 * time.Millisecond, Publishers: 4}})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, rep, rep.Errors)
		if rep.Connected != 6 || rep.Published != 60 || rep.Delivery.Received != 60 || rep.CrossNode != tc.cross {
			t.Fatalf("%s: connected %d, published %d, delivery %+v, cross-node %v", tc.transport, rep.Connected, rep.Published, rep.Delivery, rep.CrossNode)
		}
		c := rep.CPU
		if len(c.Servers) != 2 || c.Servers[0].Server != target.Servers[0] || c.Servers[1].Server != target.Servers[1] {
			t.Fatalf("%s: cpu %+v: want one entry for each server", tc.transport, c)
		}
		if c.Servers[0].Seconds < 0 || c.Servers[1].Seconds < 0 || math.Abs(c.Servers[0].Seconds+c.Servers[1].Seconds-c.Server) > 1e-9 {
			t.Fatalf("%s: cpu %+v: want the sum of both", tc.transport, c)
		}
		var b strings.Builder
		rep.WriteText(&b)
		for _, s := range target.Servers {
			if !strings.Contains(b.String(), "    "+s+"  ") {
				t.Errorf("%s: the report lists no CPU of %s:\n%s", tc.transport, s, b.String())
			}
		}
		if tc.cross && !strings.Contains(b.String(), "on other servers than the publishes") {
			t.Errorf("the report does not say it was cross-node:\n%s", b.String())
		}
	}
}

// Against two independent nodes, which share nothing, every node gets the
// biz, its share of the publishes and its share of the devices.
func TestBenchTwoNodes(t *testing.T) {
	a, b := MustRunServer(t), MustRunServer(t)
	target := a
	target.Servers = []string{a.Server, b.Server}
	target.RunID = "two"
	rep, err := Publish(t.Context(), PublishConfig{Target: target, Concurrency: 2, Duration: 200 * time.Millisecond, Channels: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	var stored [2]uint64
	for n, node := range []Target{a, b} {
		for i := range 3 {
			stored[n] += readChannel(t, node, fmt.Sprintf("%s/user:bench-two-u%d", DefaultBiz, i)).LastSeq
		}
	}
	// Requests alternate, so the nodes differ by at most the one in flight
	// on each client when the time ran out.
	if stored[0]+stored[1] != uint64(rep.Entries) || stored[0] == 0 || stored[1] == 0 || diff(stored[0], stored[1]) > 2 {
		t.Fatalf("%d entries counted; the nodes stored %v", rep.Entries, stored)
	}

	target.RunID = "idle"
	idle, err := Idle(t.Context(), IdleConfig{Target: target, Devices: 4, Hold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, idle, idle.Errors)
	if idle.StillConnected != 4 || idle.ServerSessions != 4 || len(idle.CPU.Servers) != 2 {
		t.Fatalf("still connected %d, the servers count %v sessions, cpu %+v", idle.StillConnected, idle.ServerSessions, idle.CPU)
	}
	// Devices alternate too: each node knows only its own.
	for i := range 4 {
		id := fmt.Sprintf("bench-idle-d%d", i)
		on, off := a, b
		if i%2 == 1 {
			on, off = b, a
		}
		deadline := time.Now().Add(5 * time.Second)
		for deviceStatus(t, on, id) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("device %s is unknown to %s", id, on.Server)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if got := deviceStatus(t, off, id); got != http.StatusNotFound {
			t.Fatalf("device %s: %s answers %d; it was on the other node", id, off.Server, got)
		}
	}
}

// deviceStatus is the status of GET /v1/devices/ID on node.
func deviceStatus(t *testing.T, node Target, id string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", node.Server+"/v1/devices/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+node.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func diff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
