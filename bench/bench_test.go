package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/server"
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
