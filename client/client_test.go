package client_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/client"
	"github.com/syncpoint/syncpoint/wire"
)

var (
	u1     = syncpoint.UserTarget("u1")
	global = syncpoint.GlobalTarget()
)

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// config is a client of user u1 (group g1) on the node's WebSocket, with
// short backoff and ack delays, reporting to s.
func (n *node) config(tb testing.TB, s *sink, device string, bizzes ...string) client.Config {
	tb.Helper()
	return client.Config{
		Server:      n.url(),
		Token:       n.token("u1", "g1"),
		DeviceID:    device,
		Platform:    "ios",
		AppVersion:  "2.0.0",
		Bizzes:      bizzes,
		DBPath:      filepath.Join(tb.TempDir(), device+".db"),
		Handler:     s.handler,
		OnReset:     s.onReset,
		OnGap:       s.onGap,
		OnState:     s.onState,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  100 * time.Millisecond,
		AckInterval: 20 * time.Millisecond,
		Logger:      testLogger(tb),
	}
}

func putReq(biz string, target syncpoint.Target, key, data string) pubReq {
	return pubReq{biz: biz, target: target, op: syncpoint.OpPut, key: key, data: data}
}

func TestBacklogThenLiveAcrossRestart(t *testing.T) {
	n := MustStartNode(t)
	d1, g1 := syncpoint.DeviceTarget("d1"), syncpoint.GroupTarget("g1")
	round := func(from, to int) {
		for i := from; i < to; i++ {
			n.publish("chat", u1, fmt.Sprintf(`{"i":%d}`, i))
			n.publishReq(putReq("config", global, fmt.Sprintf("k%d", i%10), fmt.Sprintf(`{"v":%d}`, i)))
			n.publish("inbox", d1, fmt.Sprintf(`{"i":%d}`, i))
			n.publish("team", g1, fmt.Sprintf(`{"i":%d}`, i))
		}
	}
	round(0, 20) // backlog
	s := newSink()
	r := MustRunClient(t, n.config(t, s, "d1", "chat", "config", "inbox", "team"))
	waitFor(t, "backlog", func() bool { return s.count() >= 80 })
	round(20, 30) // live
	waitFor(t, "live entries", func() bool { return s.count() >= 120 })

	n.restart()
	round(30, 35)
	n.publishReq(pubReq{biz: "config", target: global, op: syncpoint.OpDelete, key: "k0"})
	// The Handler sees entries before they commit; wait for the commit too.
	waitFor(t, "entries after the restart", func() bool { return s.count() >= 141 && r.Positions()["config/global"].Seq == 36 })

	for _, ch := range []string{"chat/user:u1", "inbox/device:d1", "team/group:g1"} {
		checkSeqs(t, s, ch, 35)
	}
	checkSeqs(t, s, "config/global", 36)
	ctx := context.Background()
	recs, err := r.List(ctx, "config/global")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 9 || string(recs["k3"]) != `{"v":33}` || string(recs["k9"]) != `{"v":29}` {
		t.Fatalf("config records = %v, want k1..k9 at their newest values", recs)
	}
	if _, ok, err := r.Get(ctx, "config/global", "k0"); ok || err != nil {
		t.Fatalf("Get(k0) after its delete = %v, %v; want absent", ok, err)
	}
	if v, ok, err := r.Get(ctx, "config/global", "k4"); !ok || err != nil || string(v) != `{"v":34}` {
		t.Fatalf("Get(k4) = %s, %v, %v", v, ok, err)
	}
	pos := r.Positions()
	if pos["chat/user:u1"].Seq != 35 || pos["config/global"].Seq != 36 || pos["chat/user:u1"].Epoch == "" {
		t.Fatalf("positions = %v", pos)
	}
	waitFor(t, "no lag", func() bool {
		lag := r.Lag()
		return len(lag) == 4 && lag["chat/user:u1"] == 0 && lag["config/global"] == 0
	})
	waitFor(t, "acks stored as the device's sync points", func() bool {
		points, err := n.srv.Store().SyncPoints(ctx, "d1")
		if err != nil || len(points) != 4 {
			return false
		}
		for _, p := range points {
			if p.Position.Seq < 35 {
				return false
			}
		}
		return true
	})
	s.mu.Lock()
	states := slices.Clone(s.states)
	s.mu.Unlock()
	if !slices.Contains(states, client.Disconnected) || states[len(states)-1] != client.Connected {
		t.Fatalf("states = %v, want a disconnect and Connected at the end", states)
	}
	if r.State() != client.Connected {
		t.Fatalf("State = %v", r.State())
	}
}

func TestEveryTransport(t *testing.T) {
	plain, tlsNode := MustStartNode(t), MustStartNode(t, withTLS())
	for _, tc := range []struct {
		name string
		n    *node
		mod  func(*client.Config)
	}{
		{"ws-json", plain, func(c *client.Config) {}},
		{"ws-proto", plain, func(c *client.Config) { c.Encoding = client.EncodingProto }},
		{"tcp", plain, func(c *client.Config) { c.Server, c.TCP = "", plain.tcpAddr }},
		{"tcp-tls", tlsNode, func(c *client.Config) { c.Server, c.TCP, c.TLS = "", tlsNode.tcpAddr, tlsNode.clientTLS }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			user := syncpoint.UserTarget("u-" + tc.name)
			for i := range 5 {
				n.publish("chat", user, fmt.Sprintf(`{"i":%d,"s":"é\"\\"}`, i))
			}
			s := newSink()
			cfg := n.config(t, s, "dev-"+tc.name, "chat")
			cfg.Token = n.token(user.ID)
			tc.mod(&cfg)
			MustRunClient(t, cfg)
			waitFor(t, "backlog", func() bool { return s.count() >= 5 })
			for i := 5; i < 10; i++ {
				n.publish("chat", user, fmt.Sprintf(`{"i":%d,"s":"é\"\\"}`, i))
			}
			waitFor(t, "live", func() bool { return s.count() >= 10 })
			checkSeqs(t, s, "chat/"+user.String(), 10)
			e := s.got()[7]
			if string(e.Data) != `{"i":7,"s":"é\"\\"}` || e.Op != "msg" || e.Origin != "api" || e.CreatedAt.IsZero() {
				t.Fatalf("entry = %+v", e)
			}
		})
	}
}

func TestResetWhileConnected(t *testing.T) {
	n := MustStartNode(t)
	for _, k := range []string{"a", "b", "c"} {
		n.publishReq(putReq("config", global, k, `{"k":"`+k+`"}`))
	}
	s := newSink()
	r := MustRunClient(t, n.config(t, s, "d1", "config"))
	waitFor(t, "backlog", func() bool { return s.count() >= 3 })
	ctx := context.Background()
	waitFor(t, "records", func() bool { m, _ := r.List(ctx, "config/global"); return len(m) == 3 })
	old := r.Positions()["config/global"]

	ch := syncpoint.Channel{Biz: "config", Target: global}
	if _, err := n.srv.Store().ResetChannel(ctx, ch); err != nil {
		t.Fatal(err)
	}
	n.srv.Hub().ResetChannel(ch)
	waitFor(t, "OnReset", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.Equal(s.resets, []string{"config/global"})
	})
	n.publishReq(putReq("config", global, "d", `{"k":"d"}`))
	waitFor(t, "the new epoch's entry", func() bool { return s.count() >= 4 && r.Positions()["config/global"].Seq == 1 })
	m, err := r.List(ctx, "config/global")
	if err != nil || len(m) != 1 || string(m["d"]) != `{"k":"d"}` {
		t.Fatalf("records after reset = %v, %v; want only d", m, err)
	}
	p := r.Positions()["config/global"]
	if p.Seq != 1 || p.Epoch == old.Epoch || p.Epoch == "" {
		t.Fatalf("position after reset = %+v (before: %+v)", p, old)
	}
	if got := s.got()[3]; got.Seq != 1 || got.Key != "d" {
		t.Fatalf("entry after reset = %+v", got)
	}
}

func TestGapIsReported(t *testing.T) {
	n := MustStartNode(t)
	for i := range 3 {
		n.publish("short", u1, fmt.Sprintf(`{"i":%d}`, i))
	}
	s := newSink()
	cfg := n.config(t, s, "d1", "short")
	r := MustRunClient(t, cfg)
	waitFor(t, "first entries", func() bool { return s.count() >= 3 })
	r.shutdown(t)

	for i := 3; i < 13; i++ { // the biz keeps only the newest 5: seqs 9..13
		n.publish("short", u1, fmt.Sprintf(`{"i":%d}`, i))
	}
	MustRunClient(t, cfg)
	waitFor(t, "entries after the gap", func() bool { return s.count() >= 8 })
	s.mu.Lock()
	first := s.gaps["short/user:u1"]
	s.mu.Unlock()
	if first != 9 {
		t.Fatalf("OnGap first seq = %d, want 9", first)
	}
	if got := s.channelSeqs()["short/user:u1"]; !slices.Equal(got, []uint64{1, 2, 3, 9, 10, 11, 12, 13}) {
		t.Fatalf("seqs = %v", got)
	}
}

func TestFatalCloseStops(t *testing.T) {
	n := MustStartNode(t)
	forged := mintToken(t, []byte("not-the-server-secret-xyz"), "u1", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		mod  func(*client.Config)
		code wire.CloseCode
	}{
		{"bad token ws", func(c *client.Config) { c.Token = forged }, wire.CloseUnauthorized},
		{"bad token tcp", func(c *client.Config) { c.Token, c.Server, c.TCP = forged, "", n.tcpAddr }, wire.CloseUnauthorized},
		{"unknown biz", func(c *client.Config) { c.Bizzes = []string{"chat", "nope"} }, wire.CloseForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink()
			cfg := n.config(t, s, "d1", "chat")
			tc.mod(&cfg)
			r := MustRunClient(t, cfg)
			err := r.wait(t)
			var we *wire.Error
			if !errors.As(err, &we) || we.Code != tc.code {
				t.Fatalf("Run = %v, want a *wire.Error with code %d", err, tc.code)
			}
			if r.State() != client.Stopped {
				t.Fatalf("State = %v, want stopped", r.State())
			}
		})
	}
}

// A failure to connect that every retry would repeat ends Run with a
// PermanentError saying why; the client does not retry forever.
func TestPermanentConnectFailureStops(t *testing.T) {
	tlsNode, plainNode := MustStartNode(t, withTLS()), MustStartNode(t)
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	for _, tc := range []struct {
		name string
		mod  func(*client.Config)
		want string
	}{
		{"untrusted certificate", func(c *client.Config) {
			c.Server, c.TCP, c.TLS = "", tlsNode.tcpAddr, &tls.Config{MinVersion: tls.VersionTLS12} // system roots only
		}, "certificate is not trusted"},
		{"no TLS on the other side", func(c *client.Config) {
			c.Server, c.TCP, c.TLS = "", plainNode.tcpAddr, tlsNode.clientTLS
		}, "does not speak TLS"},
		{"upgrade refused", func(c *client.Config) { c.Server = notFound.URL }, "HTTP 404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := plainNode.config(t, newSink(), "d1", "chat")
			tc.mod(&cfg)
			r := MustRunClient(t, cfg)
			err := r.wait(t)
			var pe *client.PermanentError
			if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want a PermanentError saying %q", err, tc.want)
			}
			if r.State() != client.Stopped {
				t.Fatalf("State = %v, want stopped", r.State())
			}
		})
	}
}

// A refused connection is temporary: the client keeps trying, and connects
// once the server is there.
func TestRefusedConnectionIsRetried(t *testing.T) {
	n := MustStartNode(t)
	s := newSink()
	cfg := n.config(t, s, "d1", "chat")
	n.stop()
	var tries atomic.Int32
	cfg.OnState = func(st client.State) {
		if st == client.Connecting {
			tries.Add(1)
		}
	}
	r := MustRunClient(t, cfg)
	waitFor(t, "three tries", func() bool { return tries.Load() >= 3 })
	n.start()
	waitFor(t, "connected", func() bool { return r.State() == client.Connected })
}

// A token that expires during a session gets the session closed with 4001;
// with a TokenFunc the client fetches a new one and carries on.
func TestTokenRefresh(t *testing.T) {
	n := MustStartNode(t, withHeartbeat(100*time.Millisecond))
	var calls atomic.Int32
	s := newSink()
	cfg := n.config(t, s, "d1", "chat")
	cfg.Token = ""
	cfg.TokenFunc = func(ctx context.Context) (string, error) {
		ttl := time.Hour
		if calls.Add(1) == 1 {
			ttl = 2*time.Second - auth.DefaultLeeway // the session ends 2 s from now
		}
		return mintToken(t, testSecret, "u1", time.Now().Add(ttl)), nil
	}
	n.publish("chat", u1, `{}`)
	r := MustRunClient(t, cfg)
	waitFor(t, "first entry", func() bool { return s.count() >= 1 })
	waitFor(t, "a second token", func() bool { return calls.Load() >= 2 && r.State() == client.Connected })
	n.publish("chat", u1, `{}`)
	waitFor(t, "entry on the new token", func() bool { return s.count() >= 2 })
	checkSeqs(t, s, "chat/user:u1", 2)
}

// fakeServer accepts TCP connections, answers the hello with a welcome (or
// not at all), then says nothing more.
func fakeServer(t *testing.T, welcome bool) (addr string, accepted *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = new(atomic.Int32)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Go(func() {
				defer nc.Close()
				c := wire.NewTCPConn(nc, 0)
				ctx := context.Background()
				if _, err := c.Read(ctx); err != nil || !welcome {
					io := make([]byte, 1)
					nc.Read(io) // hold the connection until the client drops it
					return
				}
				c.Write(ctx, &wire.Frame{Welcome: &wire.Welcome{Version: 1, SessionID: "fake", HeartbeatInterval: 50 * time.Millisecond}})
				for {
					if _, err := c.Read(ctx); err != nil {
						return
					}
				}
			})
		}
	})
	return ln.Addr().String(), accepted
}

func TestSilentServerIsDropped(t *testing.T) {
	t.Run("after welcome", func(t *testing.T) {
		addr, accepted := fakeServer(t, true)
		s := newSink()
		cfg := client.Config{TCP: addr, Token: "t", DeviceID: "d1", Bizzes: []string{"chat"}, DBPath: filepath.Join(t.TempDir(), "db"),
			OnState: s.onState, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: testLogger(t)}
		MustRunClient(t, cfg)
		waitFor(t, "a reconnect", func() bool { return accepted.Load() >= 2 })
		s.mu.Lock()
		defer s.mu.Unlock()
		if !slices.Contains(s.states, client.Connected) {
			t.Fatalf("states = %v, want Connected before the drop", s.states)
		}
	})
	t.Run("no welcome", func(t *testing.T) {
		addr, accepted := fakeServer(t, false)
		cfg := client.Config{TCP: addr, Token: "t", DeviceID: "d1", Bizzes: []string{"chat"}, DBPath: filepath.Join(t.TempDir(), "db"),
			DialTimeout: 100 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: testLogger(t)}
		MustRunClient(t, cfg)
		waitFor(t, "a reconnect", func() bool { return accepted.Load() >= 2 })
	})
}

func TestEphemeralEntries(t *testing.T) {
	n := MustStartNode(t)
	s := newSink()
	r := MustRunClient(t, n.config(t, s, "d1", "chat", "presence"))
	waitFor(t, "connected", func() bool { return r.State() == client.Connected })
	n.publish("presence", u1, `{"online":true}`)
	n.publish("presence", u1, `{"online":false}`)
	waitFor(t, "ephemeral entries", func() bool { return s.count() >= 2 })
	for _, e := range s.got() {
		if e.Seq != 0 || e.Channel != "presence/user:u1" {
			t.Fatalf("entry = %+v, want seq 0 in presence/user:u1", e)
		}
	}
	if _, ok := r.Positions()["presence/user:u1"]; ok {
		t.Fatal("a position was stored for a non-persistent biz")
	}
}

// StopAfter keeps exactly the entries the Handler took; the rest come again.
func TestStopAfter(t *testing.T) {
	n := MustStartNode(t)
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		n.publishReq(putReq("config", global, k, `"`+k+`"`))
	}
	s := newSink()
	cfg := n.config(t, s, "d1", "config")
	cfg.Handler = func(tx *sql.Tx, batch []client.Entry) error {
		take := min(len(batch), 2-s.count())
		s.handler(tx, batch[:take])
		if s.count() == 2 {
			return client.StopAfter(take)
		}
		return nil
	}
	r := MustRunClient(t, cfg)
	if err := r.wait(t); err != nil {
		t.Fatalf("Run = %v, want nil after StopAfter", err)
	}
	if p := r.Positions()["config/global"]; p.Seq != 2 {
		t.Fatalf("position = %+v, want seq 2", p)
	}
	m, err := r.List(context.Background(), "config/global")
	if err != nil || len(m) != 2 || m["b"] == nil {
		t.Fatalf("records = %v, %v; want a and b only", m, err)
	}
	r.Close()

	cfg.Handler = s.handler
	MustRunClient(t, cfg)
	waitFor(t, "the rest", func() bool { return s.count() >= 5 })
	checkSeqs(t, s, "config/global", 5)
}

// A Handler error rolls the push back; the entries come again after a
// reconnect and reach the app once.
func TestHandlerErrorRedelivers(t *testing.T) {
	n := MustStartNode(t)
	for range 3 {
		n.publish("chat", u1, `{}`)
	}
	s := newSink()
	cfg := n.config(t, s, "d1", "chat")
	var calls atomic.Int32
	cfg.Handler = func(tx *sql.Tx, batch []client.Entry) error {
		if calls.Add(1) <= 2 {
			return errors.New("the app is not ready")
		}
		return s.handler(tx, batch)
	}
	r := MustRunClient(t, cfg)
	waitFor(t, "entries after two refusals", func() bool { return s.count() >= 3 && r.Positions()["chat/user:u1"].Seq == 3 })
	n.publish("chat", u1, `{}`)
	waitFor(t, "a live entry", func() bool { return s.count() >= 4 })
	checkSeqs(t, s, "chat/user:u1", 4)
}

func TestOpenRejectsBadConfig(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.db")
	for _, tc := range []struct {
		name string
		cfg  client.Config
	}{
		{"no server", client.Config{Token: "t", DeviceID: "d", DBPath: db}},
		{"both", client.Config{Server: "http://x", TCP: "x:1", Token: "t", DeviceID: "d", DBPath: db}},
		{"json on tcp", client.Config{TCP: "x:1", Encoding: "json", Token: "t", DeviceID: "d", DBPath: db}},
		{"bad encoding", client.Config{Server: "http://x", Encoding: "xml", Token: "t", DeviceID: "d", DBPath: db}},
		{"no token", client.Config{Server: "http://x", DeviceID: "d", DBPath: db}},
		{"bad device", client.Config{Server: "http://x", Token: "t", DeviceID: "a/b", DBPath: db}},
		{"bad biz", client.Config{Server: "http://x", Token: "t", DeviceID: "d", Bizzes: []string{"Chat"}, DBPath: db}},
		{"bad scheme", client.Config{Server: "ftp://x", Token: "t", DeviceID: "d", DBPath: db}},
		{"no db", client.Config{Server: "http://x", Token: "t", DeviceID: "d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if c, err := client.Open(tc.cfg); err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
		})
	}
}

// BenchmarkBacklogSync measures a new device catching up on a backlog of
// 2000 entries over WebSocket (protobuf): connect, receive, apply in local
// transactions, ack.
func BenchmarkBacklogSync(b *testing.B) {
	n := MustStartNode(b)
	const backlog = 2000
	for i := 0; i < backlog; i += 500 {
		rs := make([]pubReq, 500)
		for j := range rs {
			rs[j] = pubReq{biz: "chat", target: u1, data: fmt.Sprintf(`{"text":"message %d","n":%d}`, i+j, i+j)}
		}
		n.publishBatch(rs)
	}
	dir := b.TempDir()
	i := 0
	for b.Loop() {
		i++
		var got atomic.Int64
		c, err := client.Open(client.Config{Server: n.url(), Encoding: client.EncodingProto, Token: n.token("u1"),
			DeviceID: fmt.Sprintf("bench-%d", i), Bizzes: []string{"chat"}, DBPath: filepath.Join(dir, fmt.Sprintf("%d.db", i)),
			Handler: func(tx *sql.Tx, batch []client.Entry) error { got.Add(int64(len(batch))); return nil }})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		for got.Load() < backlog || c.Positions()["chat/user:u1"].Seq < backlog {
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N*backlog)/b.Elapsed().Seconds(), "entries/s")
}

// A client given several servers moves on from one it cannot reach, over
// WebSocket and over TCP, and syncs from the next.
func TestFallbackServers(t *testing.T) {
	n := MustStartNode(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now: every dial is refused
	for _, tr := range []string{"ws", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			s := newSink()
			cfg := n.config(t, s, "fallback-"+tr, "chat")
			if tr == "ws" {
				cfg.Server, cfg.Fallbacks = "http://"+deadAddr, []string{n.url()}
			} else {
				cfg.Server, cfg.TCP, cfg.Fallbacks = "", deadAddr, []string{n.tcpAddr}
			}
			r := MustRunClient(t, cfg)
			waitFor(t, "connected to the fallback", func() bool { return r.State() == client.Connected })
			n.publish("chat", u1, `{"via":"`+tr+`"}`)
			waitFor(t, "the entry", func() bool { return s.count() >= 1 })
		})
	}
}
