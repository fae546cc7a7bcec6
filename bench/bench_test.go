package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

const (
	testAPIKey      = "bench-test-key"
	testTokenSecret = "bench-test-token-secret-0123456789"
)

// MustRunServer starts a real node in-process on 127.0.0.1:0, with a TCP
// listener, and returns a Target for it that creates its bizzes.
func MustRunServer(tb testing.TB) Target {
	tb.Helper()
	s, err := server.New(server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		TCPListen:   "127.0.0.1:0",
		APIKey:      testAPIKey,
		TokenSecret: testTokenSecret,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	return Target{
		Server:      "http://" + s.Addr(),
		TCP:         s.TCPAddr(),
		APIKey:      testAPIKey,
		TokenSecret: testTokenSecret,
		CreateBiz:   true,
	}
}

// transports are the device connections every scenario is tried over.
var transports = []struct{ transport, encoding string }{
	{TransportWS, EncodingJSON},
	{TransportWS, EncodingProto},
	{TransportTCP, EncodingProto},
}

// checkClean fails unless the report has no failures at all.
func checkClean(t *testing.T, rep Report, errs Errors) {
	t.Helper()
	if errs.Total() != 0 || rep.Failures() != 0 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Fatalf("failures %d, errors %+v\n%s", rep.Failures(), errs, b.String())
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "FAILED") {
		t.Fatalf("a clean report is marked failed:\n%s", b.String())
	}
}

func TestLatency(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.transport+"-"+tr.encoding, func(t *testing.T) {
			target := MustRunServer(t)
			target.Transport, target.Encoding = tr.transport, tr.encoding
			rep, err := Latency(t.Context(), LatencyConfig{Target: target, Paced: Paced{Devices: 10, Rate: 400, Duration: 500 * time.Millisecond, Publishers: 8, Size: 300}})
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, rep, rep.Errors)
			if rep.Connected != 10 || rep.Published != 200 {
				t.Fatalf("connected %d, published %d; want 10 and 200", rep.Connected, rep.Published)
			}
			d := rep.Delivery
			if d.Expected != 200 || d.Received != 200 || d.Unexpected != 0 || rep.Delivered != 200 {
				t.Fatalf("delivery %+v, delivered %d; want all 200", d, rep.Delivered)
			}
			if rep.Latency.Count != 200 || rep.PublishLatency.Count != 200 {
				t.Fatalf("latency samples %d, publish latency samples %d; want 200", rep.Latency.Count, rep.PublishLatency.Count)
			}
		})
	}
}

func TestFanout(t *testing.T) {
	target := MustRunServer(t)
	// Entries of an earlier run stay in the channel; devices start after them.
	for i, tr := range transports {
		target.Transport, target.Encoding = tr.transport, tr.encoding
		rep, err := Fanout(t.Context(), FanoutConfig{Target: target, Devices: 10, Entries: 20, Interval: time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, rep, rep.Errors)
		if rep.Connected != 10 || rep.Published != 20 || rep.Complete != 20 {
			t.Fatalf("run %d: connected %d, published %d, complete %d", i, rep.Connected, rep.Published, rep.Complete)
		}
		if d := rep.Delivery; d.Expected != 200 || d.Received != 200 || d.Unexpected != 0 {
			t.Fatalf("run %d: delivery %+v", i, d)
		}
		if rep.LastDevice.Count != 20 || rep.PerDevice.Count != 200 {
			t.Fatalf("run %d: samples %d last-device, %d per-device", i, rep.LastDevice.Count, rep.PerDevice.Count)
		}
	}
}

// A pipelined fanout publishes without waiting, back to back or at a rate,
// and every entry still reaches every device once and in order.
func TestFanoutPipeline(t *testing.T) {
	target := MustRunServer(t)
	for i, rate := range []float64{0, 500} {
		rep, err := Fanout(t.Context(), FanoutConfig{Target: target, Devices: 10, Entries: 50, Pipeline: true, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, rep, rep.Errors)
		if rep.Connected != 10 || rep.Published != 50 || rep.Complete != 50 || !rep.Pipeline || rep.TargetRate != rate {
			t.Fatalf("run %d: connected %d, published %d, complete %d, pipeline %v at %v", i, rep.Connected, rep.Published, rep.Complete, rep.Pipeline, rep.TargetRate)
		}
		if d := rep.Delivery; d.Expected != 500 || d.Received != 500 || d.Unexpected != 0 {
			t.Fatalf("run %d: delivery %+v", i, d)
		}
		if rep.LastDevice.Count != 50 || rep.PerDevice.Count != 500 || rep.CompleteRate <= 0 || rep.DeliveredRate <= 0 || rep.PublishRate <= 0 {
			t.Fatalf("run %d: samples %d last-device, %d per-device; rates %v complete, %v delivered, %v published",
				i, rep.LastDevice.Count, rep.PerDevice.Count, rep.CompleteRate, rep.DeliveredRate, rep.PublishRate)
		}
		// Fifty entries at 500/s take at least 98 ms to publish.
		if rate > 0 && rep.PublishRate > 1.05*rate {
			t.Fatalf("run %d: published at %v/s; want at most %v/s", i, rep.PublishRate, rate)
		}
		var b strings.Builder
		rep.WriteText(&b)
		for _, want := range []string{"pipelined", "complete         50 reached every device", "delivered        500 deliveries", "µs per delivery"} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("run %d: report lacks %q:\n%s", i, want, b.String())
			}
		}
	}
}

func TestPubSub(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport string
		encoding  string
		ackEvery  time.Duration
	}{
		{"ws-json", TransportWS, EncodingJSON, 0},
		{"ws-proto-acks-20ms", TransportWS, EncodingProto, 20 * time.Millisecond},
		{"tcp-proto", TransportTCP, EncodingProto, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := MustRunServer(t)
			target.Transport, target.Encoding, target.AckInterval = tc.transport, tc.encoding, tc.ackEvery
			rep, err := PubSub(t.Context(), PubSubConfig{Target: target, Devices: 10, Publishers: 3, Entries: 100, Size: 200})
			if err != nil {
				t.Fatal(err)
			}
			checkPubSub(t, rep, 10, 100)
			if rep.AckInterval != tc.ackEvery.Seconds() {
				t.Fatalf("ack interval %v; want %v", rep.AckInterval, tc.ackEvery)
			}
		})
	}
}

// checkPubSub checks that a clean run's counts agree: every entry
// published, delivered to every device, and every delivery timed.
func checkPubSub(t *testing.T, rep *PubSubReport, devices, entries int64) {
	t.Helper()
	checkClean(t, rep, rep.Errors)
	d := rep.Delivery
	if rep.Connected != int(devices) || rep.Published != entries || rep.Complete != entries {
		t.Fatalf("connected %d, published %d, complete %d; want %d devices and %d entries", rep.Connected, rep.Published, rep.Complete, devices, entries)
	}
	if d.Expected != devices*entries || d.Received != d.Expected || rep.Delivered != d.Expected || d.Lost != 0 || d.Unexpected != 0 {
		t.Fatalf("delivery %+v, delivered %d; want %d", d, rep.Delivered, devices*entries)
	}
	if rep.Latency.Count != devices*entries || rep.LastDevice.Count != entries || rep.PublishLatency.Count != entries {
		t.Fatalf("samples: %d latency, %d last-device, %d publish", rep.Latency.Count, rep.LastDevice.Count, rep.PublishLatency.Count)
	}
	if rep.DeliveredRate <= 0 || rep.RunSeconds <= 0 || rep.PublishRate <= 0 || rep.CPU.Server <= 0 {
		t.Fatalf("rates %v delivered over %vs, %v published; cpu %+v", rep.DeliveredRate, rep.RunSeconds, rep.PublishRate, rep.CPU)
	}
	if got := float64(rep.Delivered) / rep.RunSeconds; got < 0.99*rep.DeliveredRate || got > 1.01*rep.DeliveredRate {
		t.Fatalf("delivered %d in %vs is not %v/s", rep.Delivered, rep.RunSeconds, rep.DeliveredRate)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "µs per delivered entry") {
		t.Fatalf("the report gives no CPU per delivered entry:\n%s", b.String())
	}
}

// Against two servers the publishes alternate, or with CrossNode all go to
// the first while the devices are on the second; the CPU is read from each.
func TestPubSubTwoServers(t *testing.T) {
	target := MustRunServer(t)
	port := target.Server[strings.LastIndex(target.Server, ":"):]
	target.Servers = []string{target.Server, "http://localhost" + port}
	for _, cross := range []bool{false, true} {
		target.CrossNode = cross
		rep, err := PubSub(t.Context(), PubSubConfig{Target: target, Devices: 4, Publishers: 2, Entries: 40})
		if err != nil {
			t.Fatal(err)
		}
		checkPubSub(t, rep, 4, 40)
		if rep.CrossNode != cross || len(rep.CPU.Servers) != 2 {
			t.Fatalf("cross-node %v, cpu %+v", rep.CrossNode, rep.CPU)
		}
	}
}

// Acks held back by an interval go out as one, with the latest position.
func TestBenchDeviceAckInterval(t *testing.T) {
	r := &runner{t: Target{AckInterval: 100 * time.Millisecond, Timeout: time.Second}, clock: clock.Real{}, errs: newErrCounter()}
	conn := &recordConn{}
	d := &device{r: r, id: "d", conn: conn}
	for seq := uint64(1); seq <= 50; seq++ {
		d.ack(t.Context(), []wire.Position{{Channel: "a/global", Seq: seq}})
		if seq%10 == 0 {
			d.ack(t.Context(), []wire.Position{{Channel: "b/global", Seq: seq / 10}})
		}
	}
	// The first ack goes at once; the rest wait for the interval.
	deadline := time.Now().Add(2 * time.Second)
	for len(conn.acks()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	acks := conn.acks()
	want := [][]wire.Position{
		{{Channel: "a/global", Seq: 1}},
		{{Channel: "a/global", Seq: 50}, {Channel: "b/global", Seq: 5}},
	}
	if fmt.Sprint(acks) != fmt.Sprint(want) {
		t.Fatalf("acks %v; want %v", acks, want)
	}
	d.close()
}

// recordConn is a frameConn that keeps the acks written to it.
type recordConn struct {
	mu     sync.Mutex
	frames [][]wire.Position
}

func (c *recordConn) Read(ctx context.Context) (*wire.Frame, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (c *recordConn) Write(ctx context.Context, f *wire.Frame) error {
	if f.Ack != nil {
		c.mu.Lock()
		c.frames = append(c.frames, slices.Clone(f.Ack.Positions))
		c.mu.Unlock()
	}
	return nil
}

func (c *recordConn) Close(wire.CloseCode, string) error { return nil }

func (c *recordConn) acks() [][]wire.Position {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

func TestIdle(t *testing.T) {
	target := MustRunServer(t)
	rep, err := Idle(t.Context(), IdleConfig{Target: target, Devices: 20, Hold: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	if rep.Connected != 20 || rep.StillConnected != 20 || rep.ConnectLatency.Count != 20 {
		t.Fatalf("connected %d, still %d, samples %d", rep.Connected, rep.StillConnected, rep.ConnectLatency.Count)
	}
	m := rep.Memory
	if m.RSSBefore <= 0 || m.RSSAfter <= 0 || m.HeapInuseAfter <= 0 || m.StackInuseAfter <= 0 || m.GoroutinesAfter <= 0 {
		t.Fatalf("memory %+v: a reading is missing", m)
	}
	if rep.ServerSessions >= 0 && rep.ServerSessions != 20 {
		t.Fatalf("the server counts %v sessions; want 20", rep.ServerSessions)
	}

	// With WaitGC the readings follow collections; the server runs in this
	// process, so the test can run them.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				runtime.GC()
			}
		}
	}()
	rep, err = Idle(t.Context(), IdleConfig{Target: target, Devices: 20, Hold: 100 * time.Millisecond, WaitGC: true, GCWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkClean(t, rep, rep.Errors)
	if m := rep.Memory; !m.BaselineAfterGC || !m.HeldAfterGC || m.HeapAllocAfter <= 0 {
		t.Fatalf("memory %+v: want readings after a GC", m)
	}
}

func TestCatchup(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.transport+"-"+tr.encoding, func(t *testing.T) {
			target := MustRunServer(t)
			target.Transport, target.Encoding = tr.transport, tr.encoding
			rep, err := Catchup(t.Context(), CatchupConfig{Target: target, Backlog: 2500, Concurrency: 3})
			if err != nil {
				t.Fatal(err)
			}
			checkClean(t, rep, rep.Errors)
			if rep.Published != 2500 || rep.Received != 2500 || rep.Delivery.Expected != 2500 {
				t.Fatalf("published %d, received %d, delivery %+v", rep.Published, rep.Received, rep.Delivery)
			}
			if rep.CatchupSeconds <= 0 || rep.Pushes == 0 {
				t.Fatalf("catch-up took %vs in %d pushes", rep.CatchupSeconds, rep.Pushes)
			}
		})
	}
}

func TestPublish(t *testing.T) {
	target := MustRunServer(t)
	for _, batch := range []int{1, 10} {
		target.RunID = fmt.Sprintf("pub%d", batch)
		rep, err := Publish(t.Context(), PublishConfig{Target: target, Concurrency: 4, Duration: 300 * time.Millisecond, Batch: batch, Channels: 7})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, rep, rep.Errors)
		if rep.Requests == 0 || rep.Entries != rep.Requests*int64(batch) || rep.Latency.Count != rep.Requests {
			t.Fatalf("batch %d: %d requests, %d entries, %d latency samples", batch, rep.Requests, rep.Entries, rep.Latency.Count)
		}
		if rep.CPU.Server < 0 || (runtime.GOOS == "linux" && rep.CPU.Generator < 0) {
			t.Errorf("batch %d: cpu %+v: a reading is missing", batch, rep.CPU)
		}
		// Every entry counted is in the store.
		var stored uint64
		for i := range 7 {
			info := readChannel(t, target, fmt.Sprintf("%s/user:bench-%s-u%d", DefaultBiz, target.RunID, i))
			stored += info.LastSeq
		}
		if stored != uint64(rep.Entries) {
			t.Fatalf("batch %d: %d entries counted, %d stored", batch, rep.Entries, stored)
		}
	}
}

func TestUpload(t *testing.T) {
	target := MustRunServer(t)
	rep, err := Upload(t.Context(), UploadConfig{Target: target, Devices: 3, Duration: 300 * time.Millisecond, Records: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 3 {
		t.Fatalf("connected %d of 3: %+v", rep.Connected, rep.Errors)
	}
	var b strings.Builder
	rep.WriteText(&b)
	if rep.Errors.Write > 0 {
		// Record uploads are not served (yet): that is errors, not figures.
		if rep.Latency.Count != 0 || !strings.Contains(b.String(), "FAILED") || rep.Failures() == 0 {
			t.Fatalf("refused writes must fail the report:\n%s", b.String())
		}
		t.Logf("the server refused writes:\n%s", b.String())
		return
	}
	checkClean(t, rep, rep.Errors)
	if rep.Saved == 0 || rep.Saved != rep.Writes*2 || rep.Latency.Count != rep.Writes {
		t.Fatalf("saved %d in %d writes, %d latency samples", rep.Saved, rep.Writes, rep.Latency.Count)
	}
}

// A run whose devices cannot connect reports the errors and no figures.
func TestFailuresAreReported(t *testing.T) {
	target := MustRunServer(t)
	target.TokenSecret = "not-the-server-secret-0123456789"
	rep, err := Latency(t.Context(), LatencyConfig{Target: target, Paced: Paced{Devices: 3, Rate: 100, Duration: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 0 || rep.Errors.Connect != 3 || rep.Failures() != 3 || len(rep.Errors.Samples) == 0 {
		t.Fatalf("connected %d, errors %+v", rep.Connected, rep.Errors)
	}
	if !strings.Contains(rep.Errors.Samples[0], "unauthorized") {
		t.Errorf("sample %q does not say why", rep.Errors.Samples[0])
	}
	var b strings.Builder
	rep.WriteText(&b)
	if !strings.Contains(b.String(), "FAILED") {
		t.Fatalf("the report does not say it failed:\n%s", b.String())
	}

	// A biz of the wrong kind is refused before anything runs.
	target = MustRunServer(t)
	if _, err := Publish(t.Context(), PublishConfig{Target: target, Duration: time.Millisecond, Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	target.Biz = DefaultBiz
	if _, err := Fanout(t.Context(), FanoutConfig{Target: target, Devices: 1, Entries: 1}); err == nil || !strings.Contains(err.Error(), "global") {
		t.Fatalf("fanout on a user biz: %v", err)
	}
	// Without CreateBiz a missing biz is an error too.
	target.Biz, target.CreateBiz = "nope", false
	if _, err := Publish(t.Context(), PublishConfig{Target: target, Duration: time.Millisecond}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("publish to a missing biz: %v", err)
	}
}

func TestSourceIPs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("only Linux routes all of 127.0.0.0/8 to loopback by default")
	}
	target := MustRunServer(t)
	ips, err := ParseSourceIPs("127.0.0.2-127.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	target.SourceIPs = ips
	for _, tr := range []string{TransportWS, TransportTCP} {
		target.Transport, target.Encoding = tr, ""
		rep, err := Latency(t.Context(), LatencyConfig{Target: target, Paced: Paced{Devices: 4, Rate: 100, Duration: 100 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		checkClean(t, rep, rep.Errors)
		if rep.Connected != 4 {
			t.Fatalf("%s: connected %d of 4", tr, rep.Connected)
		}
	}
}

func readChannel(t *testing.T, target Target, ch string) syncpoint.ChannelInfo {
	t.Helper()
	c, err := syncpoint.ParseChannel(ch)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", target.Server+"/v1/channels/"+c.Biz+"/"+c.Target.String()+"?limit=1", nil)
	req.Header.Set("Authorization", "Bearer "+target.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var info syncpoint.ChannelInfo
	if resp.StatusCode != 200 || json.Unmarshal(body, &info) != nil {
		t.Fatalf("read %s: %d %s", ch, resp.StatusCode, body)
	}
	return info
}

func TestReportJSON(t *testing.T) {
	rep := &LatencyReport{
		Scenario: "latency", Devices: 2, Connected: 2,
		Latency:  Percentiles{Count: 3, P50: 1.5, P99: 4, Max: 5},
		Delivery: Delivery{Expected: 10, Received: 8, Lost: 2, Duplicated: 1, Reordered: 3},
		Errors:   Errors{Publish: 1, Samples: []string{"publish: HTTP 503"}},
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	d := m["delivery"].(map[string]any)
	if d["lost"] != 2.0 || d["duplicated"] != 1.0 || d["reordered"] != 3.0 {
		t.Errorf("delivery = %v", d)
	}
	if l := m["latency"].(map[string]any); l["p99_ms"] != 4.0 || l["p99_9_ms"] != 0.0 || l["count"] != 3.0 {
		t.Errorf("latency = %v", l)
	}
	if e := m["errors"].(map[string]any); e["publish"] != 1.0 || e["samples"].([]any)[0] != "publish: HTTP 503" {
		t.Errorf("errors = %v", e)
	}
	if rep.Failures() != 1+2+1+3 {
		t.Errorf("Failures() = %d", rep.Failures())
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	for _, line := range strings.Split(text.String(), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "latency ") && !strings.Contains(line, "FAILED") {
			t.Errorf("figure line without its failure: %q", line)
		}
	}
}

func TestSeqTrack(t *testing.T) {
	tr := seqTrack{after: 10}
	for _, s := range []uint64{11, 12, 14, 13, 13, 9, 200} {
		tr.add(s)
	}
	d := tr.tally([]uint64{11, 12, 13, 14, 15})
	want := Delivery{Expected: 5, Received: 4, Lost: 1, Duplicated: 2, Reordered: 1, Unexpected: 1, DevicesFailed: 1}
	if d != want {
		t.Fatalf("tally = %+v; want %+v", d, want)
	}
}
