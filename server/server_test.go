package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/internal/testcert"
	"github.com/syncpoint/syncpoint/server"
)

const (
	testAPIKey      = "test-api-key"
	testTokenSecret = "test-token-secret-0123456789"
)

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	cfg := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	cfg.Compact = true
	return []syncpoint.Biz{chat, cfg}
}

// testConfig is a config on 127.0.0.1:0 in a fresh data dir.
func testConfig(tb testing.TB) server.Config {
	tb.Helper()
	return server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		TCPListen:   "127.0.0.1:0",
		APIKey:      testAPIKey,
		TokenSecret: testTokenSecret,
		Bizzes:      testBizzes(),
	}
}

// runningServer is a server whose Run goroutine the test can stop.
type runningServer struct {
	*server.Server
	URL    string
	cancel context.CancelFunc
	done   chan error
}

// stop cancels Run's context and returns what Run returned.
func (r *runningServer) stop(tb testing.TB) error {
	tb.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(30 * time.Second):
		tb.Fatal("Run did not return after its context was canceled")
		return nil
	}
}

// MustRunServer starts a server for cfg and stops it at cleanup.
func MustRunServer(tb testing.TB, cfg server.Config) *runningServer {
	tb.Helper()
	s, err := server.New(cfg)
	if err != nil {
		tb.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningServer{Server: s, URL: "http://" + s.Addr(), cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		s.Close()
	})
	return r
}

// do sends a request with the API key and decodes a JSON answer into out.
func do(tb testing.TB, method, url string, body any, out any) int {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			tb.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

type publishAnswer struct {
	Entries []struct {
		Channel string `json:"channel"`
		Seq     uint64 `json:"seq"`
		Epoch   string `json:"epoch"`
	} `json:"entries"`
}

type channelPage struct {
	Epoch    string `json:"epoch"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Entries  []struct {
		Seq  uint64          `json:"seq"`
		Data json.RawMessage `json:"data"`
	} `json:"entries"`
}

func publishText(tb testing.TB, base, user, text string) publishAnswer {
	tb.Helper()
	var a publishAnswer
	body := map[string]any{"biz": "chat", "users": []string{user}, "data": map[string]string{"text": text}}
	if code := do(tb, "POST", base+"/v1/publish", body, &a); code != http.StatusOK {
		tb.Fatalf("publish: HTTP %d", code)
	}
	if len(a.Entries) != 1 {
		tb.Fatalf("publish answered %+v", a)
	}
	return a
}

func TestPublishAndRead(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	for i := 1; i <= 3; i++ {
		a := publishText(t, r.URL, "u1", fmt.Sprint("hi ", i))
		if a.Entries[0].Seq != uint64(i) || a.Entries[0].Channel != "chat/user:u1" {
			t.Fatalf("publish %d answered %+v", i, a)
		}
	}
	var p channelPage
	if code := do(t, "GET", r.URL+"/v1/channels/chat/user:u1?after=1", nil, &p); code != http.StatusOK {
		t.Fatalf("read: HTTP %d", code)
	}
	if p.LastSeq != 3 || len(p.Entries) != 2 || p.Entries[0].Seq != 2 || string(p.Entries[1].Data) != `{"text":"hi 3"}` {
		t.Fatalf("read = %+v", p)
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRestartKeepsEntries(t *testing.T) {
	cfg := testConfig(t)
	r := MustRunServer(t, cfg)
	first := publishText(t, r.URL, "u1", "before restart")
	if err := r.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after Run: %v", err)
	}

	// The same data dir, a new port.
	r2 := MustRunServer(t, cfg)
	var p channelPage
	do(t, "GET", r2.URL+"/v1/channels/chat/user:u1", nil, &p)
	if p.LastSeq != 1 || p.Epoch != first.Entries[0].Epoch || string(p.Entries[0].Data) != `{"text":"before restart"}` {
		t.Fatalf("after restart read = %+v", p)
	}
	if a := publishText(t, r2.URL, "u1", "after restart"); a.Entries[0].Seq != 2 {
		t.Fatalf("publish after restart = %+v", a)
	}
}

func TestBizzesSurviveWithoutConfig(t *testing.T) {
	cfg := testConfig(t)
	r := MustRunServer(t, cfg)
	r.stop(t)
	cfg.Bizzes = nil
	r2 := MustRunServer(t, cfg)
	if _, ok := r2.Registry().Get("config"); !ok {
		t.Fatal("biz config is gone after a restart without a config file")
	}
}

func TestCloseWithoutRun(t *testing.T) {
	cfg := testConfig(t)
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("listener %s still accepts after Close", addr)
	}
	// The store's lock is released: the data dir opens again.
	s2, err := server.New(cfg)
	if err != nil {
		t.Fatalf("New after Close: %v", err)
	}
	s2.Close()
	if err := s2.Run(context.Background()); err != nil {
		t.Fatalf("Run after Close = %v; want nil at once", err)
	}
}

func TestCloseStopsRun(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	publishText(t, r.URL, "u1", "x")
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(r.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
	}
	publishText(t, r.URL, "u1", "count me")
	body := get(t, r.URL+"/metrics")
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total", "syncpoint_sweeps_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func get(tb testing.TB, url string) string {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

func TestSweepDeletesExpired(t *testing.T) {
	cfg := testConfig(t)
	fc := clock.NewFake(time.Now())
	cfg.Clock = fc
	cfg.SweepInterval = 5 * time.Millisecond
	r := MustRunServer(t, cfg)
	var a publishAnswer
	body := map[string]any{"biz": "chat", "users": []string{"u1"}, "data": 1, "ttl": "1s"}
	if code := do(t, "POST", r.URL+"/v1/publish", body, &a); code != http.StatusOK {
		t.Fatalf("publish: HTTP %d", code)
	}
	var p channelPage
	do(t, "GET", r.URL+"/v1/channels/chat/user:u1", nil, &p)
	if p.FirstSeq != 1 {
		t.Fatalf("first_seq = %d before the entry expired", p.FirstSeq)
	}
	fc.Advance(time.Hour)
	// Once swept, the channel's retained range starts after the entry.
	deadline := time.Now().Add(20 * time.Second)
	for p.FirstSeq != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the sweeper did not delete the expired entry: %+v", p)
		}
		time.Sleep(5 * time.Millisecond)
		do(t, "GET", r.URL+"/v1/channels/chat/user:u1", nil, &p)
	}
}

func TestNewRejects(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	badBiz := syncpoint.NewBiz("Bad Name", syncpoint.TargetUser)
	for name, tc := range map[string]struct {
		mod  func(*server.Config)
		want string
	}{
		"postgres down":         {func(c *server.Config) { c.StoreURL = "postgres://u:secret@127.0.0.1:1/db?sslmode=disable" }, "store unavailable"},
		"postgres bad url":      {func(c *server.Config) { c.StoreURL = "postgresql://u:secret@127.0.0.1/db?sslmode=bogus" }, "PostgreSQL connection string"},
		"unknown url":           {func(c *server.Config) { c.StoreURL = "mysql://x" }, "mysql"},
		"nats without postgres": {func(c *server.Config) { c.NATSURL = "nats://127.0.0.1:4222" }, "needs a store its nodes share"},
		"no api key":            {func(c *server.Config) { c.APIKey = "" }, "API key"},
		"no secret":             {func(c *server.Config) { c.TokenSecret = "" }, "token secret"},
		"short secret":          {func(c *server.Config) { c.TokenSecret = "short" }, "token secret"},
		"half tls":              {func(c *server.Config) { c.TLSCert = "cert.pem" }, "TLS"},
		"missing tls":           {func(c *server.Config) { c.TLSCert, c.TLSKey = "nope.pem", "nope.key" }, "TLS"},
		"port in use":           {func(c *server.Config) { c.Listen = busy.Addr().String() }, "listen"},
		"bad biz":               {func(c *server.Config) { c.Bizzes = []syncpoint.Biz{badBiz} }, "biz name"},
		"no data dir":           {func(c *server.Config) { c.DataDir = "" }, "data dir"},
		"negative heartbeat":    {func(c *server.Config) { c.HeartbeatInterval = -time.Second }, "negative"},
		"negative queue":        {func(c *server.Config) { c.SendQueue = -1 }, "negative"},
		"negative frame":        {func(c *server.Config) { c.MaxFrameBytes = -1 }, "negative"},
		"negative shutdown":     {func(c *server.Config) { c.ShutdownTimeout = -time.Second }, "negative"},
		"negative targets":      {func(c *server.Config) { c.MaxTargets = -1 }, "negative"},
		"origin with a path":    {func(c *server.Config) { c.AllowedOrigins = []string{"https://app.example.com/"} }, "allowed origins"},
	} {
		cfg := testConfig(t)
		tc.mod(&cfg)
		s, err := server.New(cfg)
		if err == nil {
			s.Close()
			t.Errorf("%s: New succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v; want it to mention %q", name, err, tc.want)
		}
		if strings.Contains(err.Error(), "secret@") {
			t.Errorf("%s: the error shows the store URL's password: %v", name, err)
		}
	}
}

func TestFailedNewReleasesDataDir(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := testConfig(t)
	bad := cfg
	bad.Listen = busy.Addr().String()
	if _, err := server.New(bad); err == nil {
		t.Fatal("New on a busy port succeeded")
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatalf("New after a failed New on the same data dir: %v", err)
	}
	s.Close()
}

func TestDataDirInUse(t *testing.T) {
	cfg := testConfig(t)
	MustRunServer(t, cfg)
	s, err := server.New(cfg)
	if err == nil {
		s.Close()
		t.Fatal("a second server opened the same data dir")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("New = %v; want it to say the data dir is in use", err)
	}
}

func TestTLSConfig(t *testing.T) {
	cfg := testConfig(t)
	cert := testcert.New(t)
	cfg.TLSCert, cfg.TLSKey = cert.CertFile, cert.KeyFile
	r := MustRunServer(t, cfg)
	if r.TCPAddr() == "" {
		t.Fatal("no TCP listener")
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
}

func TestNoTCPListener(t *testing.T) {
	cfg := testConfig(t)
	cfg.TCPListen = ""
	r := MustRunServer(t, cfg)
	if r.TCPAddr() != "" {
		t.Fatalf("TCPAddr = %q; want none", r.TCPAddr())
	}
}

// BenchmarkPublishHTTP publishes over a real socket into the embedded
// store, from parallel clients, so group commit shares the fsyncs.
func BenchmarkPublishHTTP(b *testing.B) {
	cfg := testConfig(b)
	cfg.TCPListen = ""
	r := MustRunServer(b, cfg)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	var n atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Sprintf(`{"biz":"chat","users":["u%d"],"data":{"i":%d}}`, i%8, i)
			req, err := http.NewRequest("POST", r.URL+"/v1/publish", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testAPIKey)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("HTTP %d", resp.StatusCode)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
}

// TestEveryV1AnswerIsJSON checks error answers that come from outside the
// API's handlers: the mux's redirects of unclean paths, its 404 and 405,
// and the WebSocket endpoint's refusal of a request that is no upgrade.
func TestEveryV1AnswerIsJSON(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	for _, tc := range []struct {
		method, path string
		header       map[string]string
		status       int
		code         string
	}{
		{"GET", "/v1/users//devices", nil, 404, "not_found"},
		{"GET", "/v1/bizzes/../bizzes", nil, 404, "not_found"},
		{"GET", "/v1/nothing", nil, 404, "not_found"},
		{"PATCH", "/v1/bizzes/chat", nil, 405, "method_not_allowed"},
		{"POST", "/v1/connect", nil, 405, "method_not_allowed"},
		{"GET", "/v1/connect", nil, 426, "malformed"},
		{"GET", "/v1/connect", map[string]string{"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "12"}, 400, "malformed"},
	} {
		req, err := http.NewRequest(tc.method, r.URL+tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		// No redirect is followed: the answer itself is checked.
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &e) != nil || e.Error.Code != tc.code || e.Error.Message == "" {
			t.Errorf("%s %s: %d %q %s; want %d with a JSON %s error", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code)
		}
	}
}

// TestSlowBodyCut trickles a publish body at the assembled server, with a
// short body timeout: the connection is answered 408 and closed, long
// before the body would be complete.
func TestSlowBodyCut(t *testing.T) {
	cfg := testConfig(t)
	cfg.BodyTimeout = 300 * time.Millisecond
	r := MustRunServer(t, cfg)
	c, err := net.Dial("tcp", r.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n{", testAPIKey)
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408", resp.StatusCode)
	}
}
