package client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/internal/testcert"
	"github.com/syncpoint/syncpoint/server"
)

var testSecret = []byte("client-test-secret-0123456789")

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	inbox := syncpoint.NewBiz("inbox", syncpoint.TargetDevice)
	team := syncpoint.NewBiz("team", syncpoint.TargetGroup)
	short := syncpoint.NewBiz("short", syncpoint.TargetUser)
	short.MaxBacklog = 5
	presence := syncpoint.NewBiz("presence", syncpoint.TargetUser)
	presence.Persistent = false
	// Writable bizzes for the outbox, one per conflict policy.
	notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
	notes.Writable, notes.Conflict = true, syncpoint.ConflictReject
	lww := syncpoint.NewBiz("lww", syncpoint.TargetUser)
	lww.Writable, lww.Conflict = true, syncpoint.ConflictServerOrder
	merged := syncpoint.NewBiz("merged", syncpoint.TargetUser)
	merged.Writable, merged.Conflict = true, syncpoint.ConflictMerge
	tasks := syncpoint.NewBiz("tasks", syncpoint.TargetGroup)
	tasks.Writable = true
	return []syncpoint.Biz{chat, config, inbox, team, short, presence, notes, lww, merged, tasks}
}

const testAPIKey = "client-test-api-key"

// node is a real syncpoint server (server.New) in-process on 127.0.0.1,
// serving WebSocket and raw TCP (TLS with withTLS). It can be restarted on
// the same data dir and the same ports.
type node struct {
	tb        testing.TB
	dir       string
	heartbeat time.Duration
	tls       bool

	httpAddr, tcpAddr string
	certFile, keyFile string
	clientTLS         *tls.Config
	srv               *server.Server
	done              chan struct{}
	http              *http.Client
}

type nodeOption func(*node)

func withHeartbeat(d time.Duration) nodeOption { return func(n *node) { n.heartbeat = d } }

// withTLS makes the TCP listener speak TLS; n.clientTLS trusts it.
func withTLS() nodeOption { return func(n *node) { n.tls = true } }

// MustStartNode starts a server on a fresh data dir and stops it at cleanup.
func MustStartNode(tb testing.TB, opts ...nodeOption) *node {
	tb.Helper()
	n := &node{tb: tb, dir: tb.TempDir(), httpAddr: "127.0.0.1:0", tcpAddr: "127.0.0.1:0", http: &http.Client{Timeout: 10 * time.Second}}
	for _, o := range opts {
		o(n)
	}
	if n.tls {
		cert := testcert.New(tb)
		n.certFile, n.keyFile, n.clientTLS = cert.CertFile, cert.KeyFile, cert.Client
	}
	n.start()
	tb.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	tb := n.tb
	tb.Helper()
	cfg := server.Config{
		DataDir:           n.dir,
		Listen:            n.httpAddr,
		TCPListen:         n.tcpAddr,
		TLSCert:           n.certFile,
		TLSKey:            n.keyFile,
		PlainHTTP:         true, // withTLS is about TCP+TLS; wss:// is tested in server/
		APIKey:            testAPIKey,
		TokenSecret:       string(testSecret),
		Bizzes:            testBizzes(),
		HeartbeatInterval: n.heartbeat,
		ShutdownTimeout:   5 * time.Second,
	}
	var srv *server.Server
	var err error
	// After a restart the old ports can take a moment to be free again.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if srv, err = server.New(cfg); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	n.srv, n.httpAddr, n.tcpAddr = srv, srv.Addr(), srv.TCPAddr()
	n.done = make(chan struct{})
	go func() { srv.Run(context.Background()); close(n.done) }()
}

func (n *node) stop() {
	if n.srv == nil {
		return
	}
	n.srv.Close()
	<-n.done
	n.srv = nil
}

// restart stops the server and starts it again on the same data and ports;
// every session is cut.
func (n *node) restart() {
	n.tb.Helper()
	n.stop()
	n.start()
}

func (n *node) url() string { return "http://" + n.httpAddr }

func (n *node) token(user string, groups ...string) string {
	n.tb.Helper()
	return mintToken(n.tb, testSecret, user, time.Now().Add(time.Hour), groups...)
}

func mintToken(tb testing.TB, secret []byte, user string, exp time.Time, groups ...string) string {
	tb.Helper()
	tok, err := auth.Mint(secret, auth.Claims{User: user, Groups: groups, ExpiresAt: exp}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// pubReq is one publish through the business API.
type pubReq struct {
	biz    string
	target syncpoint.Target
	op     syncpoint.Op
	key    string
	data   string
}

// publish stores one msg entry and returns its seq.
func (n *node) publish(biz string, target syncpoint.Target, data string) uint64 {
	n.tb.Helper()
	return n.publishReq(pubReq{biz: biz, target: target, data: data})
}

// publishReq publishes through POST /v1/publish and returns the seq.
func (n *node) publishReq(r pubReq) uint64 {
	n.tb.Helper()
	raw := n.post("/v1/publish", r.body())
	var out struct {
		Entries []struct {
			Seq   uint64          `json:"seq"`
			Error json.RawMessage `json:"error"`
		} `json:"entries"`
	}
	if json.Unmarshal(raw, &out) != nil || len(out.Entries) != 1 || out.Entries[0].Error != nil {
		n.tb.Fatalf("publish: %s", raw)
	}
	return out.Entries[0].Seq
}

// publishBatch publishes many entries in one POST /v1/publish/batch.
func (n *node) publishBatch(rs []pubReq) {
	n.tb.Helper()
	items := make([]map[string]any, len(rs))
	for i, r := range rs {
		items[i] = r.body()
	}
	raw := n.post("/v1/publish/batch", map[string]any{"publishes": items})
	if bytes.Contains(raw, []byte(`"error"`)) {
		n.tb.Fatalf("publish batch: %s", raw)
	}
}

func (n *node) post(path string, body any) []byte {
	n.tb.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		n.tb.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, n.url()+path, bytes.NewReader(b))
	if err != nil {
		n.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		n.tb.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		n.tb.Fatalf("POST %s: HTTP %d: %s", path, resp.StatusCode, raw)
	}
	return raw
}

func (r pubReq) body() map[string]any {
	body := map[string]any{"biz": r.biz}
	switch r.target.Kind {
	case syncpoint.TargetUser:
		body["users"] = []string{r.target.ID}
	case syncpoint.TargetDevice:
		body["devices"] = []string{r.target.ID}
	case syncpoint.TargetGroup:
		body["groups"] = []string{r.target.ID}
	case syncpoint.TargetGlobal:
		body["global"] = true
	}
	if r.op != "" {
		body["op"], body["key"] = r.op, r.key
	}
	if r.data != "" {
		body["data"] = json.RawMessage(r.data)
	}
	return body
}

// sink collects what a Handler receives.
type sink struct {
	mu      sync.Mutex
	entries []client.Entry
	resets  []string
	gaps    map[string]uint64
	states  []client.State
}

func newSink() *sink { return &sink{gaps: map[string]uint64{}} }

func (s *sink) handler(tx *sql.Tx, batch []client.Entry) error {
	s.mu.Lock()
	s.entries = append(s.entries, batch...)
	s.mu.Unlock()
	return nil
}

func (s *sink) got() []client.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.entries)
}

func (s *sink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

func (s *sink) onReset(ch string) {
	s.mu.Lock()
	s.resets = append(s.resets, ch)
	s.mu.Unlock()
}

func (s *sink) onGap(ch string, first uint64) {
	s.mu.Lock()
	s.gaps[ch] = first
	s.mu.Unlock()
}

func (s *sink) onState(st client.State) {
	s.mu.Lock()
	s.states = append(s.states, st)
	s.mu.Unlock()
}

// channelSeqs returns the seqs received per channel, in arrival order.
func (s *sink) channelSeqs() map[string][]uint64 {
	out := map[string][]uint64{}
	for _, e := range s.got() {
		out[e.Channel] = append(out[e.Channel], e.Seq)
	}
	return out
}

// checkSeqs fails unless channel ch got exactly 1..n, in order.
func checkSeqs(tb testing.TB, s *sink, ch string, n uint64) {
	tb.Helper()
	got := s.channelSeqs()[ch]
	if uint64(len(got)) != n {
		tb.Fatalf("%s: got %d entries %v, want seqs 1..%d", ch, len(got), got, n)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			tb.Fatalf("%s: entry %d has seq %d, want %d (all: %v)", ch, i, seq, i+1, got)
		}
	}
}

// running is a Client with Run going in the background.
type running struct {
	*client.Client
	done chan struct{}
	err  error
	stop context.CancelFunc
}

// MustRunClient opens a client on cfg and runs it until cleanup.
func MustRunClient(tb testing.TB, cfg client.Config) *running {
	tb.Helper()
	c, err := client.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Client: c, done: make(chan struct{}), stop: cancel}
	go func() { r.err = c.Run(ctx); close(r.done) }()
	tb.Cleanup(func() {
		cancel()
		<-r.done
		c.Close()
	})
	return r
}

// wait waits for Run to return and gives its error.
func (r *running) wait(tb testing.TB) error {
	tb.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(10 * time.Second):
		tb.Fatal("Run did not return")
		return nil
	}
}

// shutdown stops Run and closes the client.
func (r *running) shutdown(tb testing.TB) {
	tb.Helper()
	r.stop()
	if err := r.wait(tb); err != nil && !errors.Is(err, client.ErrClosed) {
		tb.Fatalf("Run: %v", err)
	}
	r.Close()
}

// waitFor polls cond until it holds, failing after a deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
