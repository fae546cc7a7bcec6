package sse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/sse"
	"github.com/syncpoint/syncpoint/wire"
)

// tokenTable is a verifier of revocable tokens, as the opaque token
// verifier is: each token string stands for claims until it is deleted.
type tokenTable struct {
	mu     sync.Mutex
	claims map[string]syncpoint.Claims
}

func (v *tokenTable) Verify(token string) (syncpoint.Claims, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.claims[token]
	if !ok {
		return syncpoint.Claims{}, syncpoint.Errorf(syncpoint.CodeUnauthorized, "unknown token")
	}
	return c, nil
}

func (v *tokenTable) set(token string, c syncpoint.Claims) {
	v.mu.Lock()
	v.claims[token] = c
	v.mu.Unlock()
}

func (v *tokenTable) delete(token string) {
	v.mu.Lock()
	delete(v.claims, token)
	v.mu.Unlock()
}

// handlerEnv is the SSE handler alone on an httptest server, over a real
// store and broker, with a verifier and settings a test chooses; the hub
// shares its feed as on a node.
type handlerEnv struct {
	t      *testing.T
	URL    string
	tokens *tokenTable
	pub    *publish.Publisher
	sse    *sse.Handler
	hub    *hub.Hub
}

func newHandlerEnv(t *testing.T, mod func(*sse.Config)) *handlerEnv {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		t.Fatal(err)
	}
	broker := local.New()
	f := feed.New(feed.Config{Store: store, Registry: reg})
	tokens := &tokenTable{claims: map[string]syncpoint.Claims{}}
	h := hub.New(hub.Config{Store: store, Registry: reg, Verifier: tokens, Feed: f})
	unsub, err := broker.Subscribe(func(es []syncpoint.Entry) { h.Deliver(es); f.Deliver(es) })
	if err != nil {
		t.Fatal(err)
	}
	cfg := sse.Config{Feed: f, Registry: reg, Verifier: tokens, Key: []byte("handler-test-key-0123456789")}
	if mod != nil {
		mod(&cfg)
	}
	handler, err := sse.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/events", handler)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		handler.Close()
		srv.CloseClientConnections()
		srv.Close()
		h.Close()
		unsub()
		f.Close()
		store.Close()
	})
	return &handlerEnv{t: t, URL: srv.URL, tokens: tokens, sse: handler, hub: h,
		pub: publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})}
}

func (e *handlerEnv) publish(biz string, target syncpoint.Target, data string) uint64 {
	e.t.Helper()
	res, err := e.pub.Publish(context.Background(), publish.Request{Biz: biz, Targets: []syncpoint.Target{target}, Data: json.RawMessage(data)})
	if err != nil || res[0].Err != nil {
		e.t.Fatalf("publish: %v %v", err, res[0].Err)
	}
	return res[0].Seq
}

// Revoking a token closes its streams with 4001 at once, through the one
// call that also closes its sockets; a new stream on it is refused.
func TestRevokeEndsStreams(t *testing.T) {
	e := newHandlerEnv(t, nil)
	exp := time.Now().Add(time.Hour)
	e.tokens.set("secret-a", syncpoint.Claims{User: "u1", ExpiresAt: exp, TokenID: "tok-a"})
	e.tokens.set("secret-b", syncpoint.Claims{User: "u1", ExpiresAt: exp, TokenID: "tok-b"})
	a := device(t, e.URL, "secret-a", "d-a", "chat", "")
	b := device(t, e.URL, "secret-b", "d-b", "chat", "")
	e.publish("chat", u1, `"before"`)
	a.entry(5 * time.Second)
	b.entry(5 * time.Second)

	e.tokens.delete("secret-a")
	e.hub.Revoke("tok-a")
	if got := a.closed(5 * time.Second); got.Code != wire.CloseUnauthorized || got.Reason != "unauthorized" {
		t.Fatalf("close %+v, want 4001 unauthorized", got)
	}
	e.publish("chat", u1, `"after"`)
	if got, _ := b.entry(5 * time.Second); string(got.Data) != `"after"` {
		t.Fatalf("the other token's stream got %s", got.Data)
	}
	s := open(t, e.URL, map[string][]string{"biz": {"chat"}, "device_id": {"d-a"}, "access_token": {"secret-a"}}, nil)
	if status, code := errorOf(t, s); status != http.StatusUnauthorized || code != "unauthorized" {
		t.Fatalf("reopen with the revoked token: HTTP %d %s", status, code)
	}
}

// A stream lasts as long as its token: at its end the stream closes with
// 4001.
func TestTokenExpiryEndsStream(t *testing.T) {
	e := newHandlerEnv(t, nil)
	e.tokens.set("short-lived", syncpoint.Claims{User: "u1", ValidUntil: time.Now().Add(100 * time.Millisecond)})
	s := device(t, e.URL, "short-lived", "d1", "chat", "")
	if got := s.closed(10 * time.Second); got.Code != wire.CloseUnauthorized {
		t.Fatalf("close %+v, want 4001", got)
	}
}

// A client that stops reading is cut once a write stalls past the write
// timeout, so the server holds no growing buffer for it; it resumes by
// Last-Event-ID and misses nothing.
func TestStalledStreamIsCutAndResumes(t *testing.T) {
	e := newHandlerEnv(t, func(c *sse.Config) {
		c.WriteTimeout = 200 * time.Millisecond
		c.MaxBatch = 4
	})
	e.tokens.set("tok", syncpoint.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)})
	e.publish("chat", u1, `"first"`)

	req, _ := http.NewRequest("GET", e.URL+"/v1/events?biz=chat", nil)
	req.Header.Set("Authorization", "Bearer tok")
	req.Header.Set("X-Device-Id", "d1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := wire.NewEventReader(resp.Body, 0)
	ev, err := r.Next()
	if err != nil || ev.Type != wire.EventEntry {
		t.Fatalf("first event %+v, %v", ev, err)
	}
	lastID := ev.ID
	// Stop reading; publish until the server gives up on the stream.
	big := fmt.Sprintf(`"%0100000d"`, 0)
	published := uint64(1)
	for e.sse.Online("d1") {
		if published > 5000 {
			t.Fatal("the stream was not cut after 500 MB unread")
		}
		published = e.publish("chat", u1, big)
	}
	// The catch-up may be cut too, on a slow machine: resume again, as a
	// client does.
	want := uint64(2)
	for range 100 {
		s := device(t, e.URL, "tok", "d1", "chat", lastID)
		for want <= published {
			var ev wire.Event
			var ok bool
			select {
			case ev, ok = <-s.events:
			case <-time.After(10 * time.Second):
				t.Fatalf("no event for 10s at seq %d", want)
			}
			if !ok {
				break
			}
			got, err := wire.DecodeEntryJSON(ev.Data)
			if err != nil || ev.Type != wire.EventEntry || got.Seq != want {
				t.Fatalf("resumed with %s %+v (%v), want seq %d", ev.Type, got, err, want)
			}
			want++
			lastID = ev.ID
		}
		s.close()
		if want > published {
			return
		}
	}
	t.Fatalf("stuck at seq %d of %d", want, published)
}
