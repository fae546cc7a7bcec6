package sse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
	"github.com/syncpoint/syncpoint/wire"
)

const (
	testAPIKey      = "sse-test-api-key"
	testTokenSecret = "sse-test-token-secret-0123456789"
)

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	team := syncpoint.NewBiz("team", syncpoint.TargetGroup)
	short := syncpoint.NewBiz("short", syncpoint.TargetUser)
	short.MaxBacklog = 5
	presence := syncpoint.NewBiz("presence", syncpoint.TargetUser)
	presence.Persistent = false
	return []syncpoint.Biz{chat, config, team, short, presence}
}

// node is a real server in-process on 127.0.0.1:0.
type node struct {
	*server.Server
	t    testing.TB
	URL  string
	stop func()
}

func runNode(t testing.TB, mod func(*server.Config)) *node {
	t.Helper()
	cfg := server.Config{
		DataDir: t.TempDir(), Listen: "127.0.0.1:0",
		APIKey: testAPIKey, TokenSecret: testTokenSecret, Bizzes: testBizzes(),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	n := &node{Server: s, t: t, URL: "http://" + s.Addr()}
	n.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		cancel()
		s.Close()
	})
	return n
}

func token(t testing.TB, user string, groups ...string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(testTokenSecret), auth.Claims{User: user, Groups: groups, ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// publish stores one entry through the business API and returns its seq.
func (n *node) publish(biz string, target syncpoint.Target, data string) uint64 {
	n.t.Helper()
	body := map[string]any{"biz": biz, "data": json.RawMessage(data)}
	switch target.Kind {
	case syncpoint.TargetUser:
		body["users"] = []string{target.ID}
	case syncpoint.TargetGroup:
		body["groups"] = []string{target.ID}
	case syncpoint.TargetGlobal:
		body["global"] = true
	}
	var out struct {
		Entries []struct {
			Seq uint64 `json:"seq"`
		} `json:"entries"`
	}
	if code := n.api("POST", "/v1/publish", body, &out); code != http.StatusOK || len(out.Entries) != 1 {
		n.t.Fatalf("publish to %s/%s: HTTP %d %+v", biz, target, code, out)
	}
	return out.Entries[0].Seq
}

func (n *node) api(method, path string, body, out any) int {
	n.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.URL+path, rd)
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			n.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// stream is one EventSource-like client connection.
type stream struct {
	t      testing.TB
	resp   *http.Response
	events chan wire.Event
	err    chan error
	cancel context.CancelFunc
	retry  time.Duration
}

// open asks for a stream; the query holds biz and whatever else is given.
// It returns the response, whose body is read as events when it is 200.
func open(t testing.TB, base string, query url.Values, header http.Header) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/v1/events?"+query.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /v1/events: %v", err)
	}
	s := &stream{t: t, resp: resp, events: make(chan wire.Event, 4096), err: make(chan error, 1), cancel: cancel}
	t.Cleanup(s.close)
	if resp.StatusCode != http.StatusOK {
		return s
	}
	r := wire.NewEventReader(resp.Body, 0)
	go func() {
		defer close(s.events)
		for {
			ev, err := r.Next()
			if err != nil {
				s.err <- err
				return
			}
			s.events <- ev
		}
	}()
	return s
}

// device opens the stream of device d with token tok, resuming after
// lastID when it is set.
func device(t testing.TB, base, tok, d, bizzes, lastID string) *stream {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + tok}, "X-Device-Id": {d}}
	if lastID != "" {
		h.Set("Last-Event-ID", lastID)
	}
	s := open(t, base, url.Values{"biz": {bizzes}}, h)
	if s.resp.StatusCode != http.StatusOK {
		t.Fatalf("open stream: HTTP %d %s", s.resp.StatusCode, s.body())
	}
	return s
}

func (s *stream) close() {
	s.cancel()
	s.resp.Body.Close()
}

func (s *stream) body() string {
	b, _ := io.ReadAll(s.resp.Body)
	return string(b)
}

// next returns the next event, skipping comments unless comments is set.
func (s *stream) next(timeout time.Duration, comments bool) wire.Event {
	s.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				s.t.Fatalf("the stream ended: %v", <-s.err)
			}
			if ev.Comment && !comments {
				continue
			}
			return ev
		case <-deadline.C:
			s.t.Fatalf("no event within %s", timeout)
		}
	}
}

// entry returns the next event, which must be an entry.
func (s *stream) entry(timeout time.Duration) (wire.Entry, string) {
	s.t.Helper()
	ev := s.next(timeout, false)
	if ev.Type != wire.EventEntry {
		s.t.Fatalf("got a %s event %s, want an entry", ev.Type, ev.Data)
	}
	e, err := wire.DecodeEntryJSON(ev.Data)
	if err != nil {
		s.t.Fatalf("entry data %s: %v", ev.Data, err)
	}
	if ev.ID == "" {
		s.t.Fatalf("entry %s seq %d has no id", e.Channel, e.Seq)
	}
	return e, ev.ID
}

// closed reads until the close event and returns its error frame.
func (s *stream) closed(timeout time.Duration) wire.Error {
	s.t.Helper()
	end := time.Now().Add(timeout)
	for {
		ev := s.next(time.Until(end), false)
		if ev.Type != wire.EventClose {
			continue
		}
		var e struct {
			Code    wire.CloseCode `json:"code"`
			Reason  string         `json:"reason"`
			Message string         `json:"message"`
			Fatal   bool           `json:"fatal"`
		}
		if err := json.Unmarshal(ev.Data, &e); err != nil {
			s.t.Fatalf("close data %s: %v", ev.Data, err)
		}
		if !e.Fatal || wire.CloseCodeFor(syncpoint.ErrorCode(e.Reason)) != e.Code && e.Reason != "" {
			s.t.Fatalf("close event %s: not fatal, or reason and code disagree", ev.Data)
		}
		return wire.Error{Code: e.Code, Reason: e.Reason, Message: e.Message, Fatal: e.Fatal}
	}
}

// errorOf checks a refused request: a JSON error body with the code the
// status maps from, and no caching.
func errorOf(t testing.TB, s *stream) (int, string) {
	t.Helper()
	var body struct {
		Error syncpoint.Error `json:"error"`
	}
	raw := s.body()
	if err := json.Unmarshal([]byte(raw), &body); err != nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("HTTP %d body %q: want a JSON error (%v)", s.resp.StatusCode, raw, err)
	}
	if ct := s.resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
	if cc := s.resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("error Cache-Control %q", cc)
	}
	return s.resp.StatusCode, string(body.Error.Code)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func chanName(biz string, target syncpoint.Target) string {
	return fmt.Sprintf("%s/%s", biz, target)
}
