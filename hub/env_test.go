package hub_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/internal/testcert"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/tcp"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/wire/wsconn"
	"github.com/syncpoint/syncpoint/ws"
)

var testSecret = []byte("hub-test-secret-0123456789")

// env is a real node in-process: Pebble store, publisher, local broker, hub,
// WebSocket on an httptest server and TCP on 127.0.0.1:0.
type env struct {
	t        testing.TB
	store    *pebble.Store
	reg      *syncpoint.Registry
	pub      *publish.Publisher
	hub      *hub.Hub
	http     *httptest.Server
	tcpAddr  string
	tlsAddr  string
	tlsCerts *tls.Config // client config trusting the test certificate
}

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	inbox := syncpoint.NewBiz("inbox", syncpoint.TargetDevice)
	team := syncpoint.NewBiz("team", syncpoint.TargetGroup)
	pay := syncpoint.NewBiz("pay", syncpoint.TargetUser)
	pay.MultiDevice = false
	presence := syncpoint.NewBiz("presence", syncpoint.TargetUser)
	presence.Persistent = false
	short := syncpoint.NewBiz("short", syncpoint.TargetUser)
	short.MaxBacklog = 5
	return []syncpoint.Biz{chat, config, inbox, team, pay, presence, short}
}

// openStore opens a store with the test bizzes and a verifier of the test
// secret, which every hub of a test shares.
func openStore(t testing.TB) (*pebble.Store, *syncpoint.Registry, *auth.Verifier) {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		t.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	return store, reg, verifier
}

func newEnv(t testing.TB, mod func(*hub.Config)) *env {
	t.Helper()
	store, reg, verifier := openStore(t)
	broker := local.New()
	cfg := hub.Config{Store: store, Registry: reg, Verifier: verifier, HeartbeatInterval: 5 * time.Second, FlushInterval: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	h := hub.New(cfg)
	unsub, err := broker.Subscribe(h.Deliver)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubDone := make(chan struct{})
	go func() { h.Run(ctx); close(hubDone) }()

	mux := http.NewServeMux()
	mux.Handle("GET /v1/connect", &ws.Handler{Hub: h})
	srv := httptest.NewServer(mux)

	ts := &tcp.Server{Hub: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert := testcert.New(t)
	serverTLS, clientTLS := cert.Server, cert.Client
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := &tcp.Server{Hub: h, TLS: serverTLS}
	tcpDone := make(chan struct{}, 2)
	go func() { ts.Serve(ctx, ln); tcpDone <- struct{}{} }()
	go func() { tlsSrv.Serve(ctx, tlsLn); tcpDone <- struct{}{} }()

	e := &env{t: t, store: store, reg: reg, hub: h, http: srv, tcpAddr: ln.Addr().String(), tlsAddr: tlsLn.Addr().String(), tlsCerts: clientTLS,
		pub: publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})}
	t.Cleanup(func() {
		h.Close()
		cancel()
		<-hubDone
		<-tcpDone
		<-tcpDone
		srv.Close()
		unsub()
		store.Close()
	})
	return e
}

func (e *env) token(user string, groups ...string) string {
	tok, err := auth.Mint(testSecret, auth.Claims{User: user, Groups: groups, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// publish stores one entry and returns its seq.
func (e *env) publish(biz string, target syncpoint.Target, data string) uint64 {
	e.t.Helper()
	return e.publishReq(publish.Request{Biz: biz, Targets: []syncpoint.Target{target}, Data: json.RawMessage(data)})
}

func (e *env) publishReq(r publish.Request) uint64 {
	e.t.Helper()
	res, err := e.pub.Publish(context.Background(), r)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	if res[0].Err != nil {
		e.t.Fatalf("publish: %v", res[0].Err)
	}
	return res[0].Seq
}

// client is a raw protocol client for tests: it speaks wire frames and
// nothing else, so the tests see exactly what the server sends.
type client struct {
	t     testing.TB
	tr    transport
	read  func(ctx context.Context) (*wire.Frame, error)
	write func(ctx context.Context, f *wire.Frame) error
	close func()
	// positions is the client's sync point per channel, advanced as it applies pushes.
	positions map[string]wire.Position
	got       []wire.Entry
	closed    *wire.Error // the fatal error frame, once the server ended the session
	// raw sends bytes as they are: one WebSocket message (text for JSON,
	// binary for protobuf), or straight onto the TCP stream.
	raw func(b []byte)
}

type transport string

const (
	wsJSON  transport = "ws-json"
	wsProto transport = "ws-proto"
	tcpRaw  transport = "tcp"
	tcpTLS  transport = "tcp-tls"
)

func (e *env) dial(tr transport) *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &client{t: e.t, tr: tr, positions: map[string]wire.Position{}}
	switch tr {
	case wsJSON, wsProto:
		sub := wire.SubprotocolJSON
		if tr == wsProto {
			sub = wire.SubprotocolProto
		}
		url := "ws" + strings.TrimPrefix(e.http.URL, "http") + "/v1/connect"
		wc, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{sub}})
		if err != nil {
			e.t.Fatalf("dial %s: %v", tr, err)
		}
		conn := wsconn.New(wc, wire.CodecFor(sub), 64<<20)
		c.read, c.write, c.close = conn.Read, conn.Write, func() { conn.CloseNow() }
		typ := websocket.MessageText
		if tr == wsProto {
			typ = websocket.MessageBinary
		}
		c.raw = func(b []byte) {
			if err := wc.Write(context.Background(), typ, b); err != nil {
				e.t.Fatalf("send raw: %v", err)
			}
		}
	case tcpRaw, tcpTLS:
		var nc net.Conn
		var err error
		if tr == tcpTLS {
			nc, err = tls.Dial("tcp", e.tlsAddr, e.tlsCerts)
		} else {
			nc, err = net.Dial("tcp", e.tcpAddr)
		}
		if err != nil {
			e.t.Fatalf("dial %s: %v", tr, err)
		}
		conn := wire.NewTCPConn(nc, 64<<20)
		c.read, c.write, c.close = conn.Read, conn.Write, func() { nc.Close() }
		c.raw = func(b []byte) {
			if _, err := nc.Write(b); err != nil {
				e.t.Fatalf("send raw: %v", err)
			}
		}
	}
	e.t.Cleanup(c.close)
	return c
}

func (c *client) send(f *wire.Frame) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.write(ctx, f); err != nil {
		c.t.Fatalf("send %s: %v", f.Type(), err)
	}
}

// recv returns the next frame other than a ping (which it answers).
func (c *client) recv(timeout time.Duration) (*wire.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		f, err := c.read(ctx)
		if err != nil {
			return nil, err
		}
		if f.Ping != nil {
			_ = c.write(ctx, &wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
			continue
		}
		return f, nil
	}
}

func (c *client) hello(token, device string, bizzes ...string) (*wire.Welcome, error) {
	c.t.Helper()
	return c.helloWith(&wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: token, DeviceID: device, Platform: "ios", AppVersion: "2.0.0", Bizzes: bizzes})
}

func (c *client) helloWith(h *wire.Hello) (*wire.Welcome, error) {
	c.t.Helper()
	for _, p := range c.positions {
		h.Positions = append(h.Positions, p)
	}
	c.send(&wire.Frame{Hello: h})
	f, err := c.recv(5 * time.Second)
	if err != nil {
		return nil, err
	}
	if f.Error != nil {
		checkReason(c.t, f.Error)
		c.closed = f.Error
		return nil, f.Error
	}
	if f.Welcome == nil {
		return nil, fmt.Errorf("got %s, want welcome", f.Type())
	}
	for _, st := range f.Welcome.Channels {
		if st.Status == "reset" {
			delete(c.positions, st.Channel)
		}
	}
	return f.Welcome, nil
}

func (c *client) mustHello(token, device string, bizzes ...string) *wire.Welcome {
	c.t.Helper()
	w, err := c.hello(token, device, bizzes...)
	if err != nil {
		c.t.Fatalf("hello: %v", err)
	}
	return w
}

// apply takes a push as a client would: it drops entries at or below its
// position and advances positions.
func (c *client) apply(p *wire.Push) {
	for _, e := range p.Entries {
		if e.Seq != 0 && e.Seq <= c.positions[e.Channel].Seq {
			continue
		}
		c.got = append(c.got, e)
	}
	for _, pos := range p.Positions {
		c.positions[pos.Channel] = pos
	}
}

// ack acks every position the client holds.
func (c *client) ack() {
	c.t.Helper()
	a := &wire.Ack{}
	for _, p := range c.positions {
		a.Positions = append(a.Positions, p)
	}
	c.send(&wire.Frame{Ack: a})
}

// collect reads pushes until n entries were applied in total, acking each
// push, and fails after timeout.
func (c *client) collect(n int, timeout time.Duration) []wire.Entry {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for len(c.got) < n {
		f, err := c.recv(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("after %d of %d entries: %v", len(c.got), n, err)
		}
		switch {
		case f.Push != nil:
			c.apply(f.Push)
			c.ack()
		case f.Error != nil:
			c.t.Fatalf("after %d of %d entries: server error %v", len(c.got), n, f.Error)
		}
	}
	return c.got
}

// waitClose reads until the server ends the session and returns its error frame.
func (c *client) waitClose(timeout time.Duration) *wire.Error {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := c.recv(time.Until(deadline))
		if err != nil {
			if c.closed != nil {
				return c.closed
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return &wire.Error{Code: wire.CloseCode(ce.Code), Message: ce.Reason}
			}
			c.t.Fatalf("connection ended without an error frame: %v", err)
		}
		if f.Push != nil {
			c.apply(f.Push)
		}
		if f.Error != nil && f.Error.Fatal {
			checkReason(c.t, f.Error)
			c.closed = f.Error
		}
	}
}

// end reads until the connection ends and returns the fatal error frame the
// server sent (nil if none) and the WebSocket close status (0 on TCP, -1 for
// a WebSocket that ended without a close frame).
func (c *client) end(timeout time.Duration) (*wire.Error, int) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	var frame *wire.Error
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		f, err := c.read(ctx)
		cancel()
		if err != nil {
			if time.Now().After(deadline) {
				c.t.Fatalf("the connection did not end within %s", timeout)
			}
			var ce websocket.CloseError
			switch {
			case errors.As(err, &ce):
				return frame, int(ce.Code)
			case c.tr == wsJSON || c.tr == wsProto:
				return frame, -1
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
				return frame, 0
			}
			c.t.Fatalf("read: %v", err)
			return nil, 0
		}
		if f.Error != nil && f.Error.Fatal {
			checkReason(c.t, f.Error)
			frame = f.Error
		}
	}
}

// checkReason fails when an error frame's reason and code disagree: the
// reason maps to the code by the table of protocol.md section 13, and is
// empty only for the codes no error code maps to.
func checkReason(t testing.TB, e *wire.Error) {
	t.Helper()
	if e.Reason == "" && e.Code.Reason() != "" || e.Reason != "" && wire.CloseCodeFor(syncpoint.ErrorCode(e.Reason)) != e.Code {
		t.Errorf("error frame %d with reason %q: they disagree", uint32(e.Code), e.Reason)
	}
}

// checkSeqs fails unless the entries of channel ch are exactly from..to in order.
func checkSeqs(t testing.TB, got []wire.Entry, ch string, from, to uint64) {
	t.Helper()
	want := from
	for _, e := range got {
		if e.Channel != ch {
			continue
		}
		if e.Seq != want {
			t.Fatalf("%s: got seq %d, want %d", ch, e.Seq, want)
		}
		want++
	}
	if want != to+1 {
		t.Fatalf("%s: got seqs %d..%d, want %d..%d", ch, from, want-1, from, to)
	}
}
