package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// benchDataDir writes the server.json and secrets.json a local server would
// leave, so bench finds the server and its secrets from --data alone.
func benchDataDir(t *testing.T, url, apiKey, tokenSecret string) string {
	t.Helper()
	dir := t.TempDir()
	if err := writeJSONFile(filepath.Join(dir, serverFile), serverInfo{HTTP: strings.TrimPrefix(url, "http://")}, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeJSONFile(filepath.Join(dir, secretsFile), secrets{APIKey: apiKey, TokenSecret: tokenSecret}, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBenchPublishCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"bench", "publish", "--server", url, "--api-key", "k1",
		"--concurrency", "2", "--duration", "200ms", "--channels", "5", "--json"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	var rep struct {
		Scenario string  `json:"scenario"`
		Entries  int64   `json:"entries"`
		Rate     float64 `json:"entries_per_s"`
		Latency  struct {
			Count int64   `json:"count"`
			P99   float64 `json:"p99_ms"`
		} `json:"latency"`
		Errors struct {
			Publish int64 `json:"publish"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(e.out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, e.out)
	}
	if rep.Scenario != "publish" || rep.Entries == 0 || rep.Latency.Count != rep.Entries || rep.Errors.Publish != 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestBenchLatencyCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	data := benchDataDir(t, url, "k1", "0123456789abcdef0123")
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"bench", "latency", "--data", data,
		"--devices", "5", "--rate", "100", "--duration", "300ms", "--encoding", "proto"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	out := e.out.String()
	for _, want := range []string{"latency: 5 devices (ws/proto)", "connected        5 of 5", "lost 0, duplicated 0, reordered 0", "errors           none"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAILED") {
		t.Errorf("a clean run is marked failed:\n%s", out)
	}

	// Devices that cannot authenticate fail the command, and the report says so.
	e = newTestEnv(nil)
	code = run(t.Context(), e.env, []string{"bench", "latency", "--server", url, "--api-key", "k1",
		"--token-secret", "some-other-secret-0123456789", "--devices", "2", "--duration", "100ms"})
	if code != 1 || !strings.Contains(e.out.String(), "FAILED") || !strings.Contains(e.err.String(), "failures") {
		t.Fatalf("exit %d; want 1 with a failed report:\n%s\n%s", code, e.out, e.err)
	}
}

// --server takes several nodes; here two URLs of one node, so that the
// devices on the second get what is published to the first.
func TestBenchCrossNodeCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	other := "http://localhost" + url[strings.LastIndex(url, ":"):]
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"bench", "latency", "--server", url + "," + other, "--api-key", "k1",
		"--token-secret", "0123456789abcdef0123", "--cross-node", "--devices", "4", "--rate", "100", "--duration", "300ms"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	out := e.out.String()
	for _, want := range []string{"latency: 4 devices (ws/json) on other servers than the publishes", "connected        4 of 4",
		"lost 0, duplicated 0, reordered 0", "cpu              servers ", "\n    " + url + "  ", "\n    " + other + "  ", "errors           none"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// bench pubsub against two URLs of one node, devices on the second and
// every publish to the first, with acks held back: the counts agree.
func TestBenchPubSubCommand(t *testing.T) {
	url := MustRunServer(t, "k1")
	other := "http://localhost" + url[strings.LastIndex(url, ":"):]
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, []string{"bench", "pubsub", "--server", url + "," + other, "--api-key", "k1",
		"--token-secret", "0123456789abcdef0123", "--cross-node", "--devices", "5", "--publishers", "2", "--entries", "60",
		"--ack-interval", "50ms", "--json"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	var rep struct {
		Scenario    string  `json:"scenario"`
		CrossNode   bool    `json:"cross_node"`
		AckInterval float64 `json:"ack_interval_s"`
		Publishers  int     `json:"publishers"`
		Published   int64   `json:"published"`
		Delivered   int64   `json:"delivered"`
		Rate        float64 `json:"delivered_per_s"`
		Delivery    struct {
			Expected, Lost, Duplicated, Reordered int64
		} `json:"delivery"`
		CPU struct {
			Servers []struct{} `json:"servers"`
		} `json:"cpu"`
	}
	if err := json.Unmarshal(e.out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, e.out)
	}
	d := rep.Delivery
	if rep.Scenario != "pubsub" || !rep.CrossNode || rep.AckInterval != 0.05 || rep.Publishers != 2 || rep.Published != 60 ||
		rep.Delivered != 300 || d.Expected != 300 || d.Lost+d.Duplicated+d.Reordered != 0 || rep.Rate <= 0 || len(rep.CPU.Servers) != 2 {
		t.Fatalf("report %+v\n%s", rep, e.out)
	}

	// The text report of a pipelined fanout says how it ran.
	e = newTestEnv(nil)
	code = run(t.Context(), e.env, []string{"bench", "fanout", "--server", url, "--api-key", "k1",
		"--token-secret", "0123456789abcdef0123", "--devices", "3", "--entries", "20", "--pipeline"})
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, e.err, e.out)
	}
	for _, want := range []string{"pipelined back to back", "complete         20 reached every device", "lost 0, duplicated 0, reordered 0"} {
		if !strings.Contains(e.out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, e.out)
		}
	}
}

func TestBenchCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench"}, "name a scenario"},
		{[]string{"bench", "latency", "--transport", "udp"}, "--transport"},
		{[]string{"bench", "latency", "--transport", "tcp", "--encoding", "json"}, "only proto"},
		{[]string{"bench", "latency", "--source-ips", "127.0.0.9-127.0.0.2"}, "ends before it starts"},
		{[]string{"bench", "latency", "--devices", "0"}, "must be positive"},
		{[]string{"bench", "publish", "--run-id", "a b"}, "--run-id"},
		{[]string{"bench", "publish", "--batch", "1001"}, "at most 1000"},
		{[]string{"bench", "latency", "--transport", "tcp", "--data", "/nonexistent", "--api-key", "k", "--token-secret", "0123456789abcdef0123"}, "--tcp"},
		{[]string{"bench", "latency", "--server", "http://a:1", "--cross-node"}, "--cross-node"},
		{[]string{"bench", "latency", "--server", "http://a:1,http://b:1", "--transport", "tcp", "--api-key", "k", "--token-secret", "0123456789abcdef0123"}, "--tcp"},
		{[]string{"bench", "latency", "--server", "http://a:1,http://b:1", "--tcp", "a:2,b:2,c:2", "--transport", "tcp", "--api-key", "k", "--token-secret", "0123456789abcdef0123"}, "2 --server nodes but 3 --tcp"},
		{[]string{"bench", "publish", "--server", "http://a:1,ftp://b"}, "want a URL"},
		{[]string{"bench", "pubsub", "--publishers", "0"}, "must be positive"},
		{[]string{"bench", "pubsub", "--entries", "0"}, "must be positive"},
		{[]string{"bench", "pubsub", "--devices", "0"}, "must be positive"},
		{[]string{"bench", "pubsub", "--ack-interval", "-1s"}, "must not be negative"},
		{[]string{"bench", "pubsub", "--ack-interval", "soon"}, "--ack-interval"},
		{[]string{"bench", "pubsub", "--server", "http://a:1", "--cross-node"}, "--cross-node"},
		{[]string{"bench", "fanout", "--rate", "100"}, "add --pipeline"},
		{[]string{"bench", "fanout", "--pipeline", "--interval", "1s"}, "--pipeline does not wait"},
		{[]string{"bench", "fanout", "--pipeline", "--rate", "-5"}, "must not be negative"},
	} {
		e := newTestEnv(nil)
		if code := run(t.Context(), e.env, tc.args); code != 2 || !strings.Contains(e.err.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 mentioning %q", tc.args, code, e.err, tc.want)
		}
	}
}
