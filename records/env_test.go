package records_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/wire"
	"github.com/syncpoint/syncpoint/ws"
)

var _ hub.RecordWriter = (*records.Service)(nil)

var testSecret = []byte("records-test-secret-0123456789")

// testBizzes are the bizzes every env serves.
func testBizzes() []syncpoint.Biz {
	writable := func(name string, target syncpoint.TargetKind, policy syncpoint.ConflictPolicy) syncpoint.Biz {
		b := syncpoint.NewBiz(name, target)
		b.Writable, b.Conflict = true, policy
		return b
	}
	compact := writable("compact", syncpoint.TargetUser, syncpoint.ConflictMerge)
	compact.Compact = true
	small := writable("small", syncpoint.TargetUser, syncpoint.ConflictReject)
	small.MaxEntryBytes = 64
	return []syncpoint.Biz{
		writable("notes", syncpoint.TargetUser, syncpoint.ConflictReject),
		writable("lww", syncpoint.TargetUser, syncpoint.ConflictServerOrder),
		writable("merged", syncpoint.TargetUser, syncpoint.ConflictMerge),
		writable("team", syncpoint.TargetGroup, syncpoint.ConflictReject),
		writable("inbox", syncpoint.TargetDevice, syncpoint.ConflictReject),
		compact,
		small,
		syncpoint.NewBiz("chat", syncpoint.TargetUser), // not writable
	}
}

// env is a real node in-process: Pebble store, publisher, local broker,
// hub with the records service, WebSocket on 127.0.0.1:0.
type env struct {
	t    testing.TB
	dir  string
	mod  func(*records.Config)
	reg  *syncpoint.Registry
	prom *prometheus.Registry

	store *pebble.Store
	pub   *publish.Publisher
	svc   *records.Service
	hub   *hub.Hub
	http  *httptest.Server
	stop  func()

	devices []*device // open sessions, dropped on close so the hub need not wait for their close handshake
}

// MustOpenEnv starts a node; mod adjusts the records config.
func MustOpenEnv(tb testing.TB, mod func(*records.Config)) *env {
	tb.Helper()
	e := &env{t: tb, dir: tb.TempDir(), mod: mod}
	e.start()
	tb.Cleanup(func() { e.close() })
	return e
}

func (e *env) start() {
	e.t.Helper()
	store, err := pebble.Open(e.dir, pebble.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		e.t.Fatal(err)
	}
	broker := local.New()
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: testSecret})
	if err != nil {
		e.t.Fatal(err)
	}
	e.prom = prometheus.NewRegistry()
	pub := publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})
	cfg := records.Config{Publisher: pub, Store: store, Registry: reg, Registerer: e.prom,
		NotifyPoll: 50 * time.Millisecond, NotifyMinBackoff: 10 * time.Millisecond, NotifyMaxBackoff: 50 * time.Millisecond}
	if e.mod != nil {
		e.mod(&cfg)
	}
	svc := records.New(cfg)
	h := hub.New(hub.Config{Store: store, Registry: reg, Verifier: verifier, Records: svc, HeartbeatInterval: 5 * time.Second, FlushInterval: 20 * time.Millisecond})
	unsub, err := broker.Subscribe(h.Deliver)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	hubDone, runDone := make(chan struct{}), make(chan struct{})
	go func() { h.Run(ctx); close(hubDone) }()
	go func() { svc.Run(ctx); close(runDone) }()
	mux := http.NewServeMux()
	mux.Handle("GET /v1/connect", &ws.Handler{Hub: h})
	srv := httptest.NewServer(mux)

	e.store, e.reg, e.pub, e.svc, e.hub, e.http = store, reg, pub, svc, h, srv
	e.stop = func() {
		h.Close()
		cancel()
		<-hubDone
		<-runDone
		srv.Close()
		unsub()
		store.Close()
	}
}

func (e *env) close() {
	for _, d := range e.devices {
		d.conn.CloseNow()
	}
	e.devices = nil
	if e.stop != nil {
		e.stop()
		e.stop = nil
	}
}

// restart stops the node and starts it again on the same data.
func (e *env) restart() {
	e.t.Helper()
	e.close()
	e.start()
}

// putBiz adds or changes a biz at run time.
func (e *env) putBiz(b syncpoint.Biz) {
	e.t.Helper()
	if err := e.reg.Put(context.Background(), b); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) token(user string, groups ...string) string {
	tok, err := auth.Mint(testSecret, auth.Claims{User: user, Groups: groups, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// entries reads a channel's retained entries.
func (e *env) entries(ch string) []syncpoint.Entry {
	e.t.Helper()
	c, err := syncpoint.ParseChannel(ch)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := e.store.Read(context.Background(), c, 0, 1000, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return p.Entries
}

// record returns the newest entry of a record.
func (e *env) record(ch, id string) syncpoint.Entry {
	e.t.Helper()
	c, _ := syncpoint.ParseChannel(ch)
	en, err := e.store.KeyEntry(context.Background(), c, id)
	if err != nil {
		e.t.Fatalf("record %s %s: %v", ch, id, err)
	}
	return en
}

// device is a raw protocol client: it speaks wire frames and nothing else.
type device struct {
	t     testing.TB
	id    string
	conn  *websocket.Conn
	codec wire.Codec
	got   []wire.Entry // pushed entries, in arrival order
}

// writeCounter numbers the write_ids of all devices, so a new session of a
// device never reuses one by mistake.
var writeCounter atomic.Int64

// connect opens a session for device id of user (with groups) subscribed
// to bizzes.
func (e *env) connect(user, id string, groups []string, bizzes ...string) *device {
	e.t.Helper()
	return e.connectWith(wire.SubprotocolJSON, e.token(user, groups...), id, bizzes...)
}

func (e *env) connectWith(sub, token, id string, bizzes ...string) *device {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(e.http.URL, "http") + "/v1/connect"
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{sub}})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	c.SetReadLimit(64 << 20)
	d := &device{t: e.t, id: id, conn: c, codec: wire.CodecFor(sub)}
	e.devices = append(e.devices, d)
	d.send(&wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: token, DeviceID: id, Platform: "ios", AppVersion: "1.0.0", Bizzes: bizzes}})
	f := d.next(5 * time.Second)
	if f.Welcome == nil {
		e.t.Fatalf("hello: got %s %v, want welcome", f.Type(), f.Error)
	}
	return d
}

func (d *device) send(f *wire.Frame) {
	d.t.Helper()
	b, err := d.codec.Encode(nil, f)
	if err != nil {
		d.t.Fatalf("encode %s: %v", f.Type(), err)
	}
	typ := websocket.MessageBinary
	if d.codec == wire.JSON {
		typ = websocket.MessageText
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.conn.Write(ctx, typ, b); err != nil {
		d.t.Fatalf("send %s: %v", f.Type(), err)
	}
}

// next returns the next frame other than a ping (answered) or a push
// (recorded and acked).
func (d *device) next(timeout time.Duration) *wire.Frame {
	d.t.Helper()
	f, err := d.nextErr(timeout)
	if err != nil {
		d.t.Fatalf("device %s: %v", d.id, err)
	}
	return f
}

func (d *device) nextErr(timeout time.Duration) (*wire.Frame, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		_, b, err := d.conn.Read(ctx)
		if err != nil {
			return nil, err
		}
		f, err := wire.DecodeJSON(b)
		if err != nil {
			if f, err = wire.DecodeProto(b); err != nil {
				return nil, err
			}
		}
		switch {
		case f.Ping != nil:
			d.send(&wire.Frame{Pong: &wire.Pong{Nonce: f.Ping.Nonce}})
		case f.Push != nil:
			d.got = append(d.got, f.Push.Entries...)
			if len(f.Push.Positions) > 0 {
				d.send(&wire.Frame{Ack: &wire.Ack{Positions: f.Push.Positions}})
			}
		default:
			return f, nil
		}
	}
}

// write sends a write and returns its result.
func (d *device) write(w *wire.Write) *wire.WriteResult {
	d.t.Helper()
	if w.WriteID == "" {
		w.WriteID = fmt.Sprintf("%s-w%d", d.id, writeCounter.Add(1))
	}
	d.send(&wire.Frame{Write: w})
	for {
		f := d.next(10 * time.Second)
		if f.WriteResult != nil && f.WriteResult.WriteID == w.WriteID {
			return f.WriteResult
		}
		if f.Error != nil && f.Error.Fatal {
			d.t.Fatalf("session ended: %v", f.Error)
		}
	}
}

// changes builds a one-change-set write.
func changes(biz, target string, created, updated, deleted []wire.Record) *wire.Write {
	return &wire.Write{Changes: []wire.ChangeSet{{Biz: biz, Target: target, Created: created, Updated: updated, Deleted: deleted}}}
}

func rec(id string, base uint64, data string) wire.Record {
	r := wire.Record{ID: id, BaseSeq: base}
	if data != "" {
		r.Data = json.RawMessage(data)
	}
	return r
}

// waitFor reads frames until cond holds for the pushed entries.
func (d *device) waitFor(what string, cond func([]wire.Entry) bool) {
	d.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(d.got) {
		if time.Until(deadline) <= 0 {
			d.t.Fatalf("device %s: timed out waiting for %s; got %d entries", d.id, what, len(d.got))
		}
		d.ping(time.Until(deadline))
	}
}

// ping round-trips a ping, collecting any pushes on the way.
func (d *device) ping(timeout time.Duration) {
	d.t.Helper()
	nonce := uint64(time.Now().UnixNano())
	d.send(&wire.Frame{Ping: &wire.Ping{Nonce: nonce}})
	for {
		f := d.next(timeout)
		if f.Pong != nil && f.Pong.Nonce == nonce {
			return
		}
	}
}

// newID returns a fresh ObjectId-shaped record id.
var idCounter atomic.Uint64

func newID() string { return fmt.Sprintf("%024x", idCounter.Add(1)) }

// mustSaved fails unless r saved exactly the ids given, with no errors.
func mustSaved(t testing.TB, r *wire.WriteResult, ids ...string) []wire.Saved {
	t.Helper()
	if r.Error != nil || len(r.Errors) != 0 || len(r.Saved) != len(ids) {
		t.Fatalf("want %d saved and nothing else, got %s", len(ids), dump(r))
	}
	for i, id := range ids {
		if r.Saved[i].ID != id {
			t.Fatalf("saved[%d] = %s, want %s", i, r.Saved[i].ID, id)
		}
	}
	return r.Saved
}

func dump(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// hookServer is a business webhook on 127.0.0.1 that checks every
// request's signature with secret before handing it to fn.
func hookServer(t testing.TB, secret string, fn func(w http.ResponseWriter, r *http.Request, body []byte)) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ts := r.Header.Get("X-Syncpoint-Timestamp")
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(ts + "." + string(body)))
		want := "sha256=" + hex.EncodeToString(m.Sum(nil))
		if got := r.Header.Get("X-Syncpoint-Signature"); !hmac.Equal([]byte(got), []byte(want)) || ts == "" {
			t.Errorf("webhook: bad signature %q (timestamp %q), want %q", got, ts, want)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		fn(w, r, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}
