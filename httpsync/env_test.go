package httpsync_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/server"
)

const (
	testAPIKey      = "test-api-key"
	testTokenSecret = "test-token-secret-0123456789"
)

// testBizzes are the bizzes of every test server: user, group, global and
// device bizzes, a compact and writable one, and one that is not stored.
func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
	notes.Compact, notes.Writable = true, true
	tasks := syncpoint.NewBiz("tasks", syncpoint.TargetGroup)
	tasks.Writable = true
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	config.Compact = true
	inbox := syncpoint.NewBiz("inbox", syncpoint.TargetDevice)
	typing := syncpoint.NewBiz("typing", syncpoint.TargetUser)
	typing.Persistent = false
	recent := syncpoint.NewBiz("recent", syncpoint.TargetUser)
	recent.MaxBacklog = 5
	return []syncpoint.Biz{chat, notes, tasks, config, inbox, typing, recent}
}

// env is a real server on 127.0.0.1:0 and what a test needs to talk to it.
type env struct {
	tb      testing.TB
	cfg     server.Config
	srv     *server.Server
	url     string
	api     *apiclient.Client
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// mustStart runs a server for the test; edit changes its config first.
func mustStart(tb testing.TB, edit ...func(*server.Config)) *env {
	tb.Helper()
	cfg := server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		APIKey:      testAPIKey,
		TokenSecret: testTokenSecret,
		Bizzes:      testBizzes(),
	}
	for _, f := range edit {
		f(&cfg)
	}
	e := &env{tb: tb, cfg: cfg}
	e.run()
	tb.Cleanup(e.stop)
	return e
}

func (e *env) run() {
	e.tb.Helper()
	s, err := server.New(e.cfg)
	if err != nil {
		e.tb.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.srv, e.url, e.cancel, e.done, e.stopped = s, s.URL(), cancel, make(chan error, 1), false
	e.api = &apiclient.Client{BaseURL: e.url, APIKey: testAPIKey}
	go func() { e.done <- s.Run(ctx) }()
}

func (e *env) stop() {
	if e.stopped {
		return
	}
	e.stopped = true
	e.cancel()
	select {
	case <-e.done:
	case <-time.After(30 * time.Second):
		e.tb.Error("the server did not stop")
	}
	e.srv.Close()
}

// restart stops the server and starts it again on the same data dir.
func (e *env) restart() {
	e.tb.Helper()
	e.stop()
	e.cfg.Listen = "127.0.0.1:0"
	e.run()
}

// token mints a device token of user granting groups, valid for an hour.
func (e *env) token(user string, groups ...string) string {
	e.tb.Helper()
	return e.tokenFor(user, time.Hour, groups...)
}

func (e *env) tokenFor(user string, ttl time.Duration, groups ...string) string {
	e.tb.Helper()
	now := time.Now()
	tok, err := auth.Mint([]byte(testTokenSecret), auth.Claims{User: user, Groups: groups, ExpiresAt: now.Add(ttl)}, now.Add(-time.Minute))
	if err != nil {
		e.tb.Fatal(err)
	}
	return tok
}

// opaque mints an opaque access token of user through POST /v1/tokens,
// the way an operator does, and returns its id and its 64-character secret.
func (e *env) opaque(user string, groups ...string) (id, token string) {
	e.tb.Helper()
	var m struct{ ID, Token string }
	if err := e.api.Call(context.Background(), "POST", "/v1/tokens", map[string]any{"user": user, "groups": groups}, &m); err != nil {
		e.tb.Fatalf("mint an opaque token: %v", err)
	}
	if len(m.Token) != 64 {
		e.tb.Fatalf("minted token %q is not 64 characters", m.Token)
	}
	return m.ID, m.Token
}

// revoke revokes the opaque token id through DELETE /v1/tokens/{id}.
func (e *env) revoke(id string) {
	e.tb.Helper()
	if err := e.api.Call(context.Background(), "DELETE", "/v1/tokens/"+id, nil, nil); err != nil {
		e.tb.Fatalf("revoke %s: %v", id, err)
	}
}

// publish publishes one entry and returns its seq.
func (e *env) publish(r apiclient.PublishRequest) uint64 {
	e.tb.Helper()
	res, err := e.api.Publish(context.Background(), &r)
	if err != nil {
		e.tb.Fatalf("publish %+v: %v", r, err)
	}
	return res.Entries[0].Seq
}

// msgs publishes n messages {"n": i} to biz for user, in batches.
func (e *env) msgs(biz, user string, from, n int) {
	e.tb.Helper()
	for i := 0; i < n; i += 1000 {
		var batch []apiclient.PublishRequest
		for j := i; j < min(n, i+1000); j++ {
			batch = append(batch, apiclient.PublishRequest{Biz: biz, Users: []string{user}, Data: json.RawMessage(`{"n":` + strconv.Itoa(from+j) + `}`)})
		}
		res, err := e.api.PublishBatch(context.Background(), batch)
		if err != nil {
			e.tb.Fatal(err)
		}
		for _, r := range res.Results {
			if r.Error != nil {
				e.tb.Fatalf("publish: %v", r.Error)
			}
		}
	}
}

// dev is a device talking HTTP to the server.
type dev struct {
	e      *env
	id     string
	token  string
	header http.Header // sent with every request
}

func (e *env) device(id, token string) *dev {
	return &dev{e: e, id: id, token: token, header: http.Header{}}
}

// answer is an HTTP answer as the test reads it.
type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, bytes.TrimSpace(a.body)) }

// errorCode is the code of an {"error": {...}} answer.
func (a answer) errorCode() string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(a.body, &e)
	return e.Error.Code
}

func (d *dev) do(method, path string, body any) answer {
	d.e.tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			d.e.tb.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, d.e.url+path, rd)
	if err != nil {
		d.e.tb.Fatal(err)
	}
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	if d.id != "" {
		req.Header.Set("X-Device-Id", d.id)
	}
	for k, v := range d.header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.e.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.e.tb.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

// startAnswer is the v1 start's 201 body.
type startAnswer struct {
	ID     string `json:"id"`
	Queues []struct {
		Name       string `json:"name"`
		Pages      uint64 `json:"pages"`
		TotalCount uint64 `json:"total_count"`
	} `json:"queues"`
	Channels []struct {
		Channel, Status, Epoch string
		FirstSeq               uint64 `json:"first_seq"`
		LastSeq                uint64 `json:"last_seq"`
		From                   uint64 `json:"from"`
	} `json:"channels"`
}

// queueItem is one item of a v1 queue page.
type queueItem struct {
	Data json.RawMessage `json:"data"`
	Meta struct {
		Type    string `json:"type"`
		Channel string `json:"channel"`
		Sync    struct {
			EventType string `json:"event_type"`
			AckKey    string `json:"ack_key"`
			Revision  uint64 `json:"revision"`
		} `json:"sync"`
	} `json:"meta"`
}

// start opens a session over bizzes (all when none are named); the id is
// "" for a 204.
func (d *dev) start(bizzes ...string) (startAnswer, answer) {
	d.e.tb.Helper()
	var body any
	if len(bizzes) > 0 {
		body = map[string]any{"bizzes": bizzes}
	}
	a := d.do("POST", "/v1/sync/start", body)
	var s startAnswer
	if a.status == 201 {
		if err := json.Unmarshal(a.body, &s); err != nil {
			d.e.tb.Fatalf("start: %v: %s", err, a.body)
		}
	}
	return s, a
}

// mustStart opens a session and fails the test unless it is a 201.
func (d *dev) mustStart(bizzes ...string) startAnswer {
	d.e.tb.Helper()
	s, a := d.start(bizzes...)
	if a.status != 201 {
		d.e.tb.Fatalf("start: %s, want 201", a)
	}
	return s
}

// page reads a queue page: its items and count_left, nil items for a 204.
func (d *dev) page(session string, limit int) ([]queueItem, uint64, answer) {
	d.e.tb.Helper()
	path := "/v1/sync/" + session + "/queue"
	if limit > 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	a := d.do("GET", path, nil)
	if a.status != 200 {
		return nil, 0, a
	}
	var p struct {
		Items     []queueItem `json:"items"`
		CountLeft uint64      `json:"count_left"`
	}
	if err := json.Unmarshal(a.body, &p); err != nil {
		d.e.tb.Fatalf("queue: %v: %s", err, a.body)
	}
	if len(p.Items) == 0 {
		d.e.tb.Fatalf("queue: 200 with no items: %s", a.body)
	}
	return p.Items, p.CountLeft, a
}

// ack acks keys and fails the test unless it is a 202.
func (d *dev) ack(keys ...string) {
	d.e.tb.Helper()
	if a := d.do("POST", "/v1/sync/ack", map[string]any{"ack_keys": keys}); a.status != 202 {
		d.e.tb.Fatalf("ack: %s, want 202", a)
	}
}

func keysOf(items []queueItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Meta.Sync.AckKey
	}
	return out
}

// nOf reads the {"n": i} of a message.
func nOf(tb testing.TB, data json.RawMessage) int {
	tb.Helper()
	var v struct{ N *int }
	if err := json.Unmarshal(data, &v); err != nil || v.N == nil {
		tb.Fatalf("data %s is no {\"n\": ...}", data)
	}
	return *v.N
}

// syncAnswer is a one-shot answer.
type syncAnswer struct {
	LastSynced string `json:"last_synced"`
	More       bool   `json:"more"`
	Entities   []struct {
		Name     string         `json:"name"`
		Scope    map[string]any `json:"scope"`
		Channel  string         `json:"channel"`
		Status   string         `json:"status"`
		Position struct {
			Epoch string `json:"epoch"`
			Seq   uint64 `json:"seq"`
		} `json:"position"`
		Created  []map[string]any `json:"created"`
		Updated  []map[string]any `json:"updated"`
		Deleted  []map[string]any `json:"deleted"`
		Messages []struct {
			Seq  uint64          `json:"seq"`
			Data json.RawMessage `json:"data"`
		} `json:"messages"`
		Saved []struct {
			ID  string `json:"id"`
			Seq uint64 `json:"seq"`
		} `json:"saved"`
		Errors []struct {
			ID, Field, Code, Message string
			Current                  map[string]any `json:"current"`
		} `json:"errors"`
	} `json:"entities"`
}

// sync runs one one-shot request and fails the test unless it is a 200.
func (d *dev) sync(body any) syncAnswer {
	d.e.tb.Helper()
	a := d.do("POST", "/v1/sync", body)
	if a.status != 200 {
		d.e.tb.Fatalf("sync: %s", a)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		d.e.tb.Fatalf("sync answered with Cache-Control %q", a.header.Get("Cache-Control"))
	}
	var s syncAnswer
	if err := json.Unmarshal(a.body, &s); err != nil {
		d.e.tb.Fatalf("sync: %v: %s", err, a.body)
	}
	return s
}

// eventually polls cond until it holds or the deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncPoint is the device's stored position in ch, from the business API.
func (e *env) syncPoint(device, ch string) uint64 {
	e.tb.Helper()
	var d struct {
		Channels []struct {
			Channel string `json:"channel"`
			Seq     uint64 `json:"seq"`
		} `json:"channels"`
	}
	if err := e.api.Call(context.Background(), "GET", "/v1/devices/"+device, nil, &d); err != nil {
		if se, ok := err.(*apiclient.StatusError); ok && se.Status == 404 {
			return 0
		}
		e.tb.Fatal(err)
	}
	for _, sp := range d.Channels {
		if sp.Channel == ch {
			return sp.Seq
		}
	}
	return 0
}
