package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
)

const testKey = "test-api-key"

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// MustOpenStore opens a pebble store in a temporary directory.
func MustOpenStore(tb testing.TB, clk clock.Clock) *pebble.Store {
	tb.Helper()
	s, err := pebble.Open(tb.TempDir(), pebble.Options{Clock: clk})
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// testServer is the API over a real store on a real listener.
type testServer struct {
	*httptest.Server
	api   *Server
	store *pebble.Store
	reg   *syncpoint.Registry
	clock *clock.Fake
	prom  *prometheus.Registry
	log   *syncBuffer
}

// syncBuffer is a log sink the test can read while the server writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testBizzes are the bizzes every test server starts with.
func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	typing := syncpoint.NewBiz("typing", syncpoint.TargetUser)
	typing.Persistent = false
	small := syncpoint.NewBiz("small", syncpoint.TargetUser)
	small.MaxEntryBytes = 16
	devs := syncpoint.NewBiz("devs", syncpoint.TargetDevice)
	devs.Retention = syncpoint.Duration(time.Hour)
	return []syncpoint.Biz{chat, config, typing, small, devs}
}

// MustStartServer starts the API on 127.0.0.1:0 over a fresh store; opts
// adjust the Config before New.
func MustStartServer(tb testing.TB, opts ...func(*Config)) *testServer {
	tb.Helper()
	ts := &testServer{clock: clock.NewFake(t0), prom: prometheus.NewRegistry(), log: &syncBuffer{}}
	ts.store = MustOpenStore(tb, ts.clock)
	ts.reg = syncpoint.NewRegistry(ts.store)
	if err := ts.reg.Load(context.Background(), testBizzes()); err != nil {
		tb.Fatalf("load bizzes: %v", err)
	}
	broker := local.New()
	tb.Cleanup(func() { broker.Close() })
	cfg := Config{
		Publisher: publish.New(publish.Config{Store: ts.store, Broker: broker, Registry: ts.reg, Clock: ts.clock, Registerer: ts.prom}),
		Store:     ts.store,
		Registry:  ts.reg,
		APIKey:    testKey,
		Logger:    slog.New(slog.NewTextHandler(ts.log, nil)),
		Clock:     ts.clock,
		Gatherer:  ts.prom,
		// Registerer: the API's metrics go to the same registry.
		Registerer: ts.prom,
	}
	for _, o := range opts {
		o(&cfg)
	}
	ts.api = New(cfg)
	mux := http.NewServeMux()
	ts.api.Register(mux)
	ts.Server = httptest.NewServer(Canonical(mux))
	tb.Cleanup(ts.Close)
	return ts
}

// response is what a test request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with the test API key; key "" sends none.
func (ts *testServer) do(tb testing.TB, method, path, body, key string) response {
	tb.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// call sends an authenticated request and decodes a JSON answer into out
// (when not nil), failing unless the status is want.
func (ts *testServer) call(tb testing.TB, method, path, body string, want int, out any) response {
	tb.Helper()
	r := ts.do(tb, method, path, body, testKey)
	if r.status != want {
		tb.Fatalf("%s %s: status %d, want %d; body %s", method, path, r.status, want, r.body)
	}
	if out != nil {
		if err := json.Unmarshal(r.body, out); err != nil {
			tb.Fatalf("%s %s: decode %s: %v", method, path, r.body, err)
		}
	}
	return r
}

// wantError checks an error response: status, JSON shape, code, and a part
// of the message.
func wantError(tb testing.TB, r response, status int, code, contains string) {
	tb.Helper()
	if r.status != status {
		tb.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		tb.Fatalf("Content-Type %q, want application/json", ct)
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil {
		tb.Fatalf("error body %s: %v", r.body, err)
	}
	if e.Error.Code != code || !strings.Contains(e.Error.Message, contains) {
		tb.Fatalf("error %+v, want code %s and a message with %q", e.Error, code, contains)
	}
}

// presenceSet is a Presence of a fixed set of devices.
type presenceSet map[string]bool

func (p presenceSet) Online(id string) bool { return p[id] }
