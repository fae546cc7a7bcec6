package sse_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

var (
	u1 = syncpoint.UserTarget("u1")
	g1 = syncpoint.GroupTarget("g1")
)

// A stream sends the backlog, then live entries, as entry events with the
// JSON of a push, the retry delay first, and nothing a cache may keep.
func TestBacklogThenLive(t *testing.T) {
	n := runNode(t, nil)
	for i := range 3 {
		n.publish("chat", u1, fmt.Sprint(i))
	}
	n.publish("config", syncpoint.GlobalTarget(), `{"theme":"dark"}`)
	s := device(t, n.URL, token(t, "u1"), "d1", "chat,config", "")
	if ct, cc := s.resp.Header.Get("Content-Type"), s.resp.Header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-store" {
		t.Fatalf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	got := map[string][]uint64{}
	for range 4 {
		e, _ := s.entry(5 * time.Second)
		got[e.Channel] = append(got[e.Channel], e.Seq)
		if e.Op != "msg" || e.Origin != "api" || e.CreatedAt.IsZero() || len(e.Data) == 0 {
			t.Fatalf("entry %+v lacks fields a push carries", e)
		}
	}
	if fmt.Sprint(got) != "map[chat/user:u1:[1 2 3] config/global:[1]]" {
		t.Fatalf("backlog %v", got)
	}
	n.publish("chat", u1, `"live"`)
	e, _ := s.entry(5 * time.Second)
	if e.Seq != 4 || string(e.Data) != `"live"` {
		t.Fatalf("live entry %+v", e)
	}
	waitFor(t, "the device online", func() bool {
		var d struct {
			Online bool `json:"online"`
		}
		n.api("GET", "/v1/devices/d1", nil, &d)
		return d.Online
	})
}

// Twenty times, while a publisher writes to three channels, the client
// drops the connection at a random point and reconnects with
// Last-Event-ID. In the end it has every entry once, in order, and the
// position of its last Last-Event-ID is the device's sync point.
func TestResumeByLastEventIDAcrossForcedDisconnects(t *testing.T) {
	n := runNode(t, nil)
	targets := []struct {
		biz    string
		target syncpoint.Target
	}{{"chat", u1}, {"config", syncpoint.GlobalTarget()}, {"team", g1}}
	var published [3]atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			k := i % len(targets)
			seq := n.publish(targets[k].biz, targets[k].target, fmt.Sprintf(`{"i":%d}`, i))
			published[k].Store(seq)
		}
	})

	tok := token(t, "u1", "g1")
	rng := rand.New(rand.NewPCG(9, 9))
	last := map[string]uint64{}
	var received, lost, dup, reordered int
	lastID := ""
	take := func(s *stream) {
		e, id := s.entry(10 * time.Second)
		lastID = id
		switch prev := last[e.Channel]; {
		case e.Seq == prev:
			dup++
		case e.Seq < prev:
			reordered++
		default:
			lost += int(e.Seq - prev - 1)
			last[e.Channel] = e.Seq
		}
		received++
	}
	var atLastResume map[string]uint64
	for round := 0; round <= 20; round++ {
		s := device(t, n.URL, tok, "d1", "chat,config,team", lastID)
		atLastResume = map[string]uint64{}
		for k, v := range last {
			atLastResume[k] = v
		}
		if round == 20 {
			close(stop)
			wg.Wait()
			for k, tg := range targets {
				for last[chanName(tg.biz, tg.target)] < published[k].Load() {
					take(s)
				}
			}
			s.close()
			break
		}
		for range 1 + rng.IntN(200) {
			take(s)
		}
		s.close() // a forced disconnect: the server is not told
	}
	if lost != 0 || dup != 0 || reordered != 0 {
		t.Fatalf("%d received: %d lost, %d duplicated, %d reordered", received, lost, dup, reordered)
	}
	for k, tg := range targets {
		if got := last[chanName(tg.biz, tg.target)]; got != published[k].Load() {
			t.Fatalf("%s/%s: got to seq %d of %d", tg.biz, tg.target, got, published[k].Load())
		}
	}
	t.Logf("%d entries over 21 connections", received)

	// The last resume's Last-Event-ID is the device's confirmation.
	waitFor(t, "the sync points of the last Last-Event-ID stored", func() bool {
		points, err := n.Store().SyncPoints(context.Background(), "d1")
		if err != nil {
			return false
		}
		stored := map[string]uint64{}
		for _, p := range points {
			stored[p.Channel.String()] = p.Position.Seq
		}
		return fmt.Sprint(stored) == fmt.Sprint(atLastResume)
	})
}

// Who may read what is decided as at the socket hello, and a
// Last-Event-ID opens nothing more.
func TestAuthorizationMatrix(t *testing.T) {
	n := runNode(t, nil)
	n.publish("chat", u1, `"u1 only"`)
	n.publish("team", syncpoint.GroupTarget("g2"), `"g2 only"`)

	t.Run("another user's channels", func(t *testing.T) {
		s := device(t, n.URL, token(t, "u2"), "d-u2", "chat", "")
		n.publish("chat", syncpoint.UserTarget("u2"), `"mine"`)
		if e, _ := s.entry(5 * time.Second); e.Channel != "chat/user:u2" || string(e.Data) != `"mine"` {
			t.Fatalf("u2 got %s %s", e.Channel, e.Data)
		}
	})
	t.Run("a group not granted", func(t *testing.T) {
		s := device(t, n.URL, token(t, "u3", "g1"), "d-u3", "team", "")
		n.publish("team", g1, `"g1 news"`)
		if e, _ := s.entry(5 * time.Second); e.Channel != "team/group:g1" || string(e.Data) != `"g1 news"` {
			t.Fatalf("a g1 member got %s %s", e.Channel, e.Data)
		}
	})

	// An id of u1's device d1, to forge and replay.
	s := device(t, n.URL, token(t, "u1"), "d1", "chat", "")
	_, id := s.entry(5 * time.Second)
	s.close()
	// Forged: the same form with the seq raised, the tag left as it was.
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil {
		t.Fatalf("id %q is not base64url: %v", id, err)
	}
	raw[len(raw)-17] += 100
	forgedID := base64.RawURLEncoding.EncodeToString(raw)
	forgedToken := token(t, "u1")
	forgedToken = forgedToken[:len(forgedToken)-4] + "AAAA"

	cases := []struct {
		name   string
		tok    string
		dev    string
		lastID string
		status int
		code   string
	}{
		{"an expired token", expiredToken(t), "d1", "", http.StatusUnauthorized, "unauthorized"},
		{"a forged token", forgedToken, "d1", "", http.StatusUnauthorized, "unauthorized"},
		{"a foreign device id", token(t, "u2"), "d1", "", http.StatusForbidden, "forbidden"},
		{"a forged Last-Event-ID", token(t, "u1"), "d1", forgedID, http.StatusForbidden, "forbidden"},
		{"another device's Last-Event-ID", token(t, "u1"), "d2", id, http.StatusForbidden, "forbidden"},
		{"another user's Last-Event-ID", token(t, "u2"), "d-u2", id, http.StatusForbidden, "forbidden"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"Authorization": {"Bearer " + tc.tok}, "X-Device-Id": {tc.dev}}
			if tc.lastID != "" {
				h.Set("Last-Event-ID", tc.lastID)
			}
			s := open(t, n.URL, url.Values{"biz": {"chat"}}, h)
			if status, code := errorOf(t, s); status != tc.status || code != tc.code {
				t.Fatalf("HTTP %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}
}

func expiredToken(t testing.TB) string {
	t.Helper()
	past := time.Now().Add(-2 * time.Hour)
	tok, err := auth.Mint([]byte(testTokenSecret), auth.Claims{User: "u1", ExpiresAt: past.Add(time.Hour)}, past)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Bad requests get a clear 4xx with the error table's code, before any
// stream starts.
func TestBadInput(t *testing.T) {
	n := runNode(t, nil)
	tok := token(t, "u1")
	cases := []struct {
		name   string
		query  url.Values
		header http.Header
		status int
		code   string
	}{
		{"no token", url.Values{"biz": {"chat"}, "device_id": {"d1"}}, nil, http.StatusUnauthorized, "unauthorized"},
		{"not a bearer token", url.Values{"biz": {"chat"}, "device_id": {"d1"}}, http.Header{"Authorization": {"Basic dTE6cA=="}}, http.StatusUnauthorized, "unauthorized"},
		{"no device id", url.Values{"biz": {"chat"}, "access_token": {tok}}, nil, http.StatusUnprocessableEntity, "invalid"},
		{"a bad device id", url.Values{"biz": {"chat"}, "access_token": {tok}, "device_id": {"d 1"}}, nil, http.StatusUnprocessableEntity, "invalid"},
		{"no biz", url.Values{"access_token": {tok}, "device_id": {"d1"}}, nil, http.StatusUnprocessableEntity, "invalid"},
		{"an unknown biz", url.Values{"biz": {"chat,nope"}, "access_token": {tok}, "device_id": {"d1"}}, nil, http.StatusForbidden, "forbidden"},
		{"a malformed Last-Event-ID", url.Values{"biz": {"chat"}, "access_token": {tok}, "device_id": {"d1"}}, http.Header{"Last-Event-Id": {"not an id!"}}, http.StatusBadRequest, "malformed"},
		{"a truncated Last-Event-ID", url.Values{"biz": {"chat"}, "access_token": {tok}, "device_id": {"d1"}, "last_event_id": {"AQ"}}, nil, http.StatusBadRequest, "malformed"},
		{"a huge Last-Event-ID", url.Values{"biz": {"chat"}, "access_token": {tok}, "device_id": {"d1"}}, http.Header{"Last-Event-Id": {strings.Repeat("A", 200<<10)}}, http.StatusRequestEntityTooLarge, "too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, n.URL, tc.query, tc.header)
			status, code := errorOf(t, s)
			if status != tc.status || code != tc.code {
				t.Fatalf("HTTP %d %s, want %d %s", status, code, tc.status, tc.code)
			}
			if status == http.StatusUnauthorized && s.resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
}

// The query parameters stand in for the headers EventSource cannot send,
// heartbeats are comments, and retry is sent.
func TestQueryParametersHeartbeatRetry(t *testing.T) {
	n := runNode(t, func(c *server.Config) { c.SSEHeartbeat = 20 * time.Millisecond })
	s := open(t, n.URL, url.Values{"biz": {"chat"}, "access_token": {token(t, "u1")}, "device_id": {"web-1"}}, nil)
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTP %d %s", s.resp.StatusCode, s.body())
	}
	if ev := s.next(5*time.Second, true); !ev.Comment {
		t.Fatalf("got %+v, want a heartbeat comment", ev)
	}
	n.publish("chat", u1, `1`)
	e, id := s.entry(5 * time.Second)
	s.close()
	n.publish("chat", u1, `2`)
	// A page reload: no header, so the id comes in the query.
	s = open(t, n.URL, url.Values{"biz": {"chat"}, "access_token": {token(t, "u1")}, "device_id": {"web-1"}, "last_event_id": {id}}, nil)
	if e2, _ := s.entry(5 * time.Second); e2.Seq != e.Seq+1 {
		t.Fatalf("resumed at seq %d after %d", e2.Seq, e.Seq)
	}
}

// A channel trimmed past the position says gap, one reset says reset,
// each in an event whose id moves the channel on; then entries follow.
func TestGapAndResetEvents(t *testing.T) {
	n := runNode(t, nil)
	for range 8 {
		n.publish("short", u1, `{}`) // max_backlog 5
	}
	s := device(t, n.URL, token(t, "u1"), "d1", "short,chat", "")
	ev := s.next(5*time.Second, false)
	if ev.Type != wire.EventGap || !strings.Contains(string(ev.Data), `"from":3`) || ev.ID == "" {
		t.Fatalf("first event %s %s (id %q), want a gap from 3", ev.Type, ev.Data, ev.ID)
	}
	for want := uint64(4); want <= 8; want++ {
		if e, _ := s.entry(5 * time.Second); e.Seq != want {
			t.Fatalf("after the gap got seq %d, want %d", e.Seq, want)
		}
	}

	n.publish("chat", u1, `"old"`)
	s.entry(5 * time.Second)
	if code := n.api("DELETE", "/v1/channels/chat/user:u1", nil, nil); code != http.StatusOK {
		t.Fatalf("reset: HTTP %d", code)
	}
	ev = s.next(5*time.Second, false)
	if ev.Type != wire.EventReset || !strings.Contains(string(ev.Data), `"channel":"chat/user:u1"`) {
		t.Fatalf("got %s %s, want a reset of chat/user:u1", ev.Type, ev.Data)
	}
	resetID := ev.ID
	n.publish("chat", u1, `"new"`)
	if e, _ := s.entry(5 * time.Second); e.Seq != 1 || string(e.Data) != `"new"` {
		t.Fatalf("after the reset got %d %s", e.Seq, e.Data)
	}
	// Resuming at the reset event: the new history, with no second reset.
	s.close()
	s = device(t, n.URL, token(t, "u1"), "d1", "short,chat", resetID)
	if e, _ := s.entry(5 * time.Second); e.Seq != 1 || string(e.Data) != `"new"` {
		t.Fatalf("resumed at the reset and got %d %s", e.Seq, e.Data)
	}
}

// Entries of a non-persistent biz reach a stream while it is open, with
// seq 0, and do not move its id.
func TestLiveOnlyBiz(t *testing.T) {
	n := runNode(t, nil)
	s := device(t, n.URL, token(t, "u1"), "d1", "presence,chat", "")
	n.publish("chat", u1, `"stored"`)
	_, id := s.entry(5 * time.Second)
	var out struct{}
	n.api("POST", "/v1/publish", map[string]any{"biz": "presence", "users": []string{"u1"}, "data": "here"}, &out)
	e, id2 := s.entry(5 * time.Second)
	if e.Seq != 0 || e.Channel != "presence/user:u1" || id2 != id {
		t.Fatalf("live entry %+v with id %q (was %q)", e, id2, id)
	}
}

// A shutdown tells every stream to go elsewhere with 3000.
func TestShutdownSaysGoingAway(t *testing.T) {
	n := runNode(t, nil)
	s := device(t, n.URL, token(t, "u1"), "d1", "chat", "")
	go n.stop()
	if e := s.closed(10 * time.Second); e.Code != wire.CloseGoingAway {
		t.Fatalf("close %+v, want 3000", e)
	}
}
