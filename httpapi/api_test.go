package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
)

type publishResp struct {
	Entries []struct {
		Channel   string `json:"channel"`
		Seq       uint64 `json:"seq"`
		Epoch     string `json:"epoch"`
		Duplicate bool   `json:"duplicate"`
		Ephemeral bool   `json:"ephemeral"`
	} `json:"entries"`
}

type pageResp struct {
	Channel  string      `json:"channel"`
	Epoch    string      `json:"epoch"`
	FirstSeq uint64      `json:"first_seq"`
	LastSeq  uint64      `json:"last_seq"`
	Entries  []entryView `json:"entries"`
	More     bool        `json:"more"`
}

func TestAuth(t *testing.T) {
	ts := MustStartServer(t)
	r := ts.do(t, "GET", "/v1/bizzes", "", "")
	wantError(t, r, 401, "unauthorized", "missing Authorization")
	if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
		t.Fatalf("WWW-Authenticate = %q, want Bearer", got)
	}
	wantError(t, ts.do(t, "GET", "/v1/bizzes", "", "wrong-key"), 401, "unauthorized", "invalid API key")
	wantError(t, ts.do(t, "GET", "/v1/bizzes", "", testKey+"x"), 401, "unauthorized", "invalid API key")
	wantError(t, ts.do(t, "POST", "/v1/publish", `{}`, ""), 401, "unauthorized", "")

	req, _ := http.NewRequest("GET", ts.URL+"/v1/bizzes", nil)
	req.Header.Set("Authorization", "Basic "+testKey)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("Basic auth: status %d, want 401", resp.StatusCode)
	}

	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := ts.do(t, "GET", p, "", ""); r.status != 200 {
			t.Fatalf("GET %s without a key: %d %s", p, r.status, r.body)
		}
	}
}

func TestNoAPIKeyRefusesAll(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.APIKey = "" })
	wantError(t, ts.do(t, "GET", "/v1/bizzes", "", "anything"), 401, "unauthorized", "invalid API key")
	wantError(t, ts.do(t, "GET", "/v1/bizzes", "", " "), 401, "unauthorized", "")
}

func TestPublishAndRead(t *testing.T) {
	ts := MustStartServer(t)
	var pr publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1","u2","u1"],"data":{"text":"hi"},"ttl":"24h","platforms":["ios"],"min_app_version":"1.2.0"}`, 200, &pr)
	if len(pr.Entries) != 2 {
		t.Fatalf("entries = %+v, want u1 and u2 once each", pr.Entries)
	}
	for i, u := range []string{"u1", "u2"} {
		e := pr.Entries[i]
		if e.Channel != "chat/user:"+u || e.Seq != 1 || e.Epoch == "" || e.Duplicate || e.Ephemeral {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	for i := 2; i <= 5; i++ {
		ts.call(t, "POST", "/v1/publish", fmt.Sprintf(`{"biz":"chat","users":["u1"],"op":"put","key":"k%d","data":%d}`, i, i), 200, nil)
	}

	var page pageResp
	ts.call(t, "GET", "/v1/channels/chat/user:u1?limit=2", "", 200, &page)
	if page.Channel != "chat/user:u1" || page.Epoch != pr.Entries[0].Epoch || page.FirstSeq != 1 || page.LastSeq != 5 || !page.More || len(page.Entries) != 2 {
		t.Fatalf("first page = %+v", page)
	}
	e := page.Entries[0]
	if e.Seq != 1 || e.Op != syncpoint.OpMsg || string(e.Data) != `{"text":"hi"}` || e.Origin != "api" ||
		!e.CreatedAt.Equal(t0) || !e.ExpiresAt.Equal(t0.Add(24*time.Hour)) ||
		len(e.Conditions.Platforms) != 1 || e.Conditions.MinAppVersion != "1.2.0" {
		t.Fatalf("entry 1 = %+v", e)
	}
	ts.call(t, "GET", "/v1/channels/chat/user:u1?after=2&limit=3", "", 200, &page)
	if page.More || len(page.Entries) != 3 || page.Entries[0].Seq != 3 || page.Entries[2].Key != "k5" || page.Entries[2].Op != syncpoint.OpPut {
		t.Fatalf("last page = %+v", page)
	}
	ts.call(t, "GET", "/v1/channels/chat/user:u1", "", 200, &page)
	if len(page.Entries) != 5 || page.More {
		t.Fatalf("default limit page = %+v", page)
	}
}

func TestPublishIdempotent(t *testing.T) {
	ts := MustStartServer(t)
	body := `{"biz":"chat","users":["u1"],"data":1,"idempotency_key":"abc"}`
	var first, second, other publishResp
	ts.call(t, "POST", "/v1/publish", body, 200, &first)
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, 200, &other)
	ts.call(t, "POST", "/v1/publish", body, 200, &second)
	if !second.Entries[0].Duplicate || second.Entries[0].Seq != first.Entries[0].Seq || first.Entries[0].Duplicate {
		t.Fatalf("first %+v, republish %+v: want the original seq marked duplicate", first, second)
	}
	if other.Entries[0].Seq != 2 {
		t.Fatalf("publish in between got seq %d, want 2", other.Entries[0].Seq)
	}
}

// TestPublishIdempotencyMismatch reuses an idempotency key for other data:
// 409 idempotency_mismatch with the original seq, nothing stored; the same
// data again is still a duplicate, and the batch form answers alike.
func TestPublishIdempotencyMismatch(t *testing.T) {
	ts := MustStartServer(t)
	var first publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"],"data":{"n":1},"idempotency_key":"k"}`, 200, &first)
	r := ts.do(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"],"data":{"n":2},"idempotency_key":"k"}`, testKey)
	wantError(t, r, 409, "idempotency_mismatch", "seq 1")
	var e struct {
		Error struct {
			Seq uint64 `json:"seq"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Seq != first.Entries[0].Seq {
		t.Fatalf("409 body %s: want the original seq %d as error.seq", r.body, first.Entries[0].Seq)
	}
	var again publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"],"data":{"n":1},"idempotency_key":"k"}`, 200, &again)
	if !again.Entries[0].Duplicate || again.Entries[0].Seq != 1 {
		t.Fatalf("identical retry: %+v, want a duplicate of 1", again)
	}
	batch := ts.call(t, "POST", "/v1/publish/batch", `{"publishes":[{"biz":"chat","users":["u1"],"data":{"n":3},"idempotency_key":"k"},{"biz":"chat","users":["u1"],"data":{"n":1},"idempotency_key":"k"}]}`, 200, nil)
	var br struct {
		Results []struct {
			Error *struct {
				Code string `json:"code"`
				Seq  uint64 `json:"seq"`
			} `json:"error"`
			Entries []struct {
				Duplicate bool `json:"duplicate"`
			} `json:"entries"`
		} `json:"results"`
	}
	if err := json.Unmarshal(batch.body, &br); err != nil || len(br.Results) != 2 {
		t.Fatalf("batch answer %s: %v", batch.body, err)
	}
	if er := br.Results[0].Error; er == nil || er.Code != "idempotency_mismatch" || er.Seq != 1 {
		t.Fatalf("batch item with other data: %s", batch.body)
	}
	if res := br.Results[1]; res.Error != nil || len(res.Entries) != 1 || !res.Entries[0].Duplicate {
		t.Fatalf("batch item with the same data: %s", batch.body)
	}
	var page struct {
		Entries []json.RawMessage `json:"entries"`
	}
	ts.call(t, "GET", "/v1/channels/chat/user:u1", "", 200, &page)
	if len(page.Entries) != 1 {
		t.Fatalf("the channel holds %d entries, want only the first", len(page.Entries))
	}
}

func TestPublishTargets(t *testing.T) {
	ts := MustStartServer(t)
	var pr publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"config","global":true,"data":{"flag":true}}`, 200, &pr)
	if len(pr.Entries) != 1 || pr.Entries[0].Channel != "config/global" {
		t.Fatalf("global publish = %+v", pr)
	}
	ts.call(t, "POST", "/v1/publish", `{"biz":"devs","devices":["d1","d2","d3"]}`, 200, &pr)
	if len(pr.Entries) != 3 || pr.Entries[2].Channel != "devs/device:d3" {
		t.Fatalf("device publish = %+v", pr)
	}
	ts.call(t, "POST", "/v1/publish", `{"biz":"typing","users":["u1"],"data":"typing"}`, 200, &pr)
	if !pr.Entries[0].Ephemeral || pr.Entries[0].Seq != 0 {
		t.Fatalf("ephemeral publish = %+v", pr)
	}
	r := ts.call(t, "POST", "/v1/publish", `{"biz":"typing","users":["u1"]}`, 200, nil)
	if !strings.Contains(string(r.body), `"ephemeral":true`) {
		t.Fatalf("ephemeral response %s lacks ephemeral:true", r.body)
	}
	r = ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, 200, nil)
	if strings.Contains(string(r.body), `ephemeral`) {
		t.Fatalf("persistent response %s mentions ephemeral", r.body)
	}
	var page pageResp
	ts.call(t, "GET", "/v1/channels/typing/user:u1", "", 200, &page)
	if len(page.Entries) != 0 {
		t.Fatalf("an ephemeral entry was stored: %+v", page)
	}
}

func TestPublishErrors(t *testing.T) {
	ts := MustStartServer(t)
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		contains   string
	}{
		{"empty body", ``, 400, "malformed", "empty"},
		{"syntax", `{"biz":"chat",}`, 400, "malformed", "byte offset 14"},
		{"truncated", `{"biz":"chat"`, 400, "malformed", "ends in the middle"},
		{"trailing data", `{"biz":"chat","users":["u1"]} {}`, 400, "malformed", "byte offset 30: data after the top-level value"},
		{"not an object", `[1,2]`, 422, "invalid", "want an object"},
		{"unknown field", `{"biz":"chat","users":["u1"],"colour":"red"}`, 422, "invalid", `unknown field "colour"`},
		{"wrong type", `{"biz":"chat","users":"u1"}`, 422, "invalid", "users: want an array"},
		{"no biz", `{"users":["u1"]}`, 422, "invalid", "biz name is empty"},
		{"no target", `{"biz":"chat"}`, 422, "invalid", "no target"},
		{"bad target kind", `{"biz":"chat","devices":["d1"]}`, 422, "invalid", "biz chat takes user targets, not device"},
		{"bad target id", `{"biz":"chat","users":["u 1"]}`, 422, "invalid", "user id"},
		{"bad op", `{"biz":"chat","users":["u1"],"op":"upsert"}`, 422, "invalid", `op "upsert"`},
		{"put needs key", `{"biz":"chat","users":["u1"],"op":"put"}`, 422, "invalid", "needs a key"},
		{"bad ttl", `{"biz":"chat","users":["u1"],"ttl":"tomorrow"}`, 422, "invalid", `ttl "tomorrow"`},
		{"negative ttl", `{"biz":"chat","users":["u1"],"ttl":"-1h"}`, 422, "invalid", "positive duration"},
		{"ttl over retention", `{"biz":"devs","devices":["d1"],"ttl":"2h"}`, 422, "invalid", "retention"},
		{"bad version", `{"biz":"chat","users":["u1"],"min_app_version":"latest"}`, 422, "invalid", "min_app_version"},
		{"version range", `{"biz":"chat","users":["u1"],"min_app_version":"2.0.0","max_app_version":"1.0.0"}`, 422, "invalid", "above max_app_version"},
		{"unknown biz", `{"biz":"nope","users":["u1"]}`, 404, "not_found", `unknown biz "nope"`},
		{"lone surrogate in data", `{"biz":"chat","users":["u1"],"data":{"t":"a\ud800"}}`, 422, "invalid", `not I-JSON (RFC 7493) at byte offset 43: lone surrogate \ud800 in string`},
		{"lone low surrogate in a target", `{"biz":"chat","users":["\udc00"]}`, 422, "invalid", `lone surrogate \udc00`},
		{"number out of range", `{"biz":"chat","users":["u1"],"data":[1e999999]}`, 422, "invalid", "number 1e999999 is out of the range of a float64"},
		{"negative number out of range", `{"biz":"chat","users":["u1"],"data":-1.8e308}`, 422, "invalid", "out of the range"},
		{"a syntax error in the string wins", `{"biz":"chat","users":["u1"],"data":"\ud800\x"}`, 400, "malformed", "escape"},
		{"entry over the biz limit", `{"biz":"small","users":["u1"],"data":"this is more than sixteen bytes"}`, 413, "too_large", "biz small allows 16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, ts.do(t, "POST", "/v1/publish", tc.body, testKey), tc.status, tc.code, tc.contains)
		})
	}
}

// TestSlowBody sends a publish body one byte at a time and stops: once
// the body deadline passes, the server answers 408 and closes the
// connection instead of waiting for the rest.
func TestSlowBody(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.BodyTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"biz":"chat","users":["u1"],"data":"slow"}`
	fmt.Fprintf(c, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", testKey, len(body), body[:1])
	// Generous: the client only waits this long for an answer that the
	// server owes it after 300ms.
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, response{status: resp.StatusCode, header: resp.Header, body: b}, 408, "request_timeout", "did not arrive within 300ms")
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the connection stays open after the timeout")
	}

	// A body that arrives in time is not affected, nor is a slow handler
	// once its body is in.
	ts.call(t, "POST", "/v1/publish", body, 200, nil)
}

func TestPublishTargetCap(t *testing.T) {
	ts := MustStartServer(t)
	users := func(n int) string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%q", fmt.Sprintf("u%d", i))
		}
		return strings.Join(ids, ",")
	}
	over := `{"biz":"chat","users":[` + users(publish.DefaultMaxTargets+1) + `]}`
	wantError(t, ts.do(t, "POST", "/v1/publish", over, testKey), 422, "invalid", "1001 targets; a publish takes at most 1000")
	var br batchResp
	ts.call(t, "POST", "/v1/publish/batch", `{"publishes":[`+over+`]}`, 200, &br)
	if len(br.Results) != 1 || br.Results[0].Error == nil || br.Results[0].Error.Code != syncpoint.CodeInvalid {
		t.Fatalf("batch item over the cap = %+v", br.Results)
	}
	var pr publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":[`+users(publish.DefaultMaxTargets)+`]}`, 200, &pr)
	if len(pr.Entries) != publish.DefaultMaxTargets {
		t.Fatalf("%d entries", len(pr.Entries))
	}
}

func TestBodyCap(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.MaxBodyBytes = 64 })
	big := `{"biz":"chat","users":["u1"],"data":"` + strings.Repeat("x", 100) + `"}`
	wantError(t, ts.do(t, "POST", "/v1/publish", big, testKey), 413, "too_large", "limit of 64 bytes")
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", `{"publishes":[`+big+`]}`, testKey), 413, "too_large", "limit of 64 bytes")
	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, 200, nil)
}

func TestRouting(t *testing.T) {
	ts := MustStartServer(t)
	wantError(t, ts.do(t, "GET", "/v1/nothing", "", testKey), 404, "not_found", "no route for GET /v1/nothing")
	wantError(t, ts.do(t, "GET", "/", "", ""), 404, "not_found", "no route")
	r := ts.do(t, "GET", "/v1/publish", "", testKey)
	wantError(t, r, 405, "method_not_allowed", "use POST")
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow = %q, want POST", r.header.Get("Allow"))
	}
	r = ts.do(t, "POST", "/v1/bizzes/chat", "{}", testKey)
	wantError(t, r, 405, "method_not_allowed", "")
	if r.header.Get("Allow") != "GET, HEAD, PUT, DELETE" {
		t.Fatalf("Allow = %q", r.header.Get("Allow"))
	}
	wantError(t, ts.do(t, "POST", "/healthz", "", ""), 405, "method_not_allowed", "use GET")

	// Paths that http.ServeMux would redirect, with an HTML body, to their
	// cleaned form are a JSON 404 instead; so is a trailing slash.
	for _, p := range []string{"/v1/users//devices", "//v1/bizzes", "/v1/bizzes/./chat", "/v1/bizzes/x/../chat", "/v1/bizzes/.", "/v1/publish/"} {
		r := ts.do(t, "GET", p, "", testKey)
		wantError(t, r, 404, "not_found", "no route for GET "+p)
		if r.header.Get("Location") != "" {
			t.Errorf("GET %s: Location %q", p, r.header.Get("Location"))
		}
	}
	wantError(t, ts.do(t, "DELETE", "/v1/bizzes/../channels/chat/user:u1", "", testKey), 404, "not_found", `no empty, "." or ".." segment`)

	// Routes other packages add to the shared mux get the same 405.
	mux := http.NewServeMux()
	ts.api.Register(mux)
	mux.HandleFunc("GET /v1/connect", func(w http.ResponseWriter, r *http.Request) {})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/connect", nil))
	wantError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}, 405, "method_not_allowed", "use GET, HEAD")
}

// TestJSONErrors checks that a handler of another package on the API's mux
// answers its errors in the API's JSON shape too.
func TestJSONErrors(t *testing.T) {
	other := http.NewServeMux()
	other.Handle("GET /v1/other", JSONErrors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("ok") != "" {
			w.Write([]byte("fine"))
			return
		}
		http.Error(w, "upgrade required, as text", http.StatusUpgradeRequired)
	})))
	rec := httptest.NewRecorder()
	other.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/other", nil))
	wantError(t, response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}, 426, "malformed", "upgrade required, as text")
	rec = httptest.NewRecorder()
	other.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/other?ok=1", nil))
	if rec.Code != 200 || rec.Body.String() != "fine" {
		t.Errorf("a good answer through JSONErrors: %d %q", rec.Code, rec.Body)
	}
}

func TestRateLimit(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.RateLimit = 0.5; c.RateBurst = 2 })
	ts.call(t, "GET", "/v1/bizzes", "", 200, nil)
	ts.call(t, "GET", "/v1/bizzes", "", 200, nil)
	r := ts.do(t, "GET", "/v1/bizzes", "", testKey)
	wantError(t, r, 429, "rate_limited", "rate limit")
	if r.header.Get("Retry-After") != "2" {
		t.Fatalf("Retry-After = %q, want 2 (one token every 2s)", r.header.Get("Retry-After"))
	}
	// Health and metrics are not limited.
	if r := ts.do(t, "GET", "/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz while limited: %d", r.status)
	}
	// A refused request does not use a token: after 2s one is back.
	ts.clock.Advance(2 * time.Second)
	ts.call(t, "GET", "/v1/bizzes", "", 200, nil)
	wantError(t, ts.do(t, "GET", "/v1/bizzes", "", testKey), 429, "rate_limited", "")
}

type batchResp struct {
	Results []struct {
		publishResp
		Error *syncpoint.Error `json:"error"`
	} `json:"results"`
}

func TestPublishBatch(t *testing.T) {
	ts := MustStartServer(t)
	var br batchResp
	ts.call(t, "POST", "/v1/publish/batch", `{"publishes":[
		{"biz":"chat","users":["u1"],"data":1},
		{"biz":"nope","users":["u1"]},
		{"biz":"chat","users":["u1"],"data":2,"extra":true},
		{"biz":"chat","devices":["d1"]},
		{"biz":"small","users":["u1"],"data":"more than sixteen bytes"},
		{"biz":"chat","users":["u1","u2"],"data":3},
		7,
		{"biz":"typing","users":["u1"]}
	]}`, 200, &br)
	if len(br.Results) != 8 {
		t.Fatalf("%d results, want 8", len(br.Results))
	}
	wantErr := map[int]syncpoint.ErrorCode{1: syncpoint.CodeNotFound, 2: syncpoint.CodeInvalid, 3: syncpoint.CodeInvalid, 4: syncpoint.CodeTooLarge, 6: syncpoint.CodeInvalid}
	for i, res := range br.Results {
		if code, bad := wantErr[i]; bad {
			if res.Error == nil || res.Error.Code != code || res.Entries != nil {
				t.Fatalf("result %d = %+v, want error %s", i, res, code)
			}
			continue
		}
		if res.Error != nil || len(res.Entries) == 0 {
			t.Fatalf("result %d = %+v, want entries", i, res)
		}
	}
	if br.Results[0].Entries[0].Seq != 1 || br.Results[5].Entries[0].Seq != 2 || br.Results[5].Entries[1].Seq != 1 || !br.Results[7].Entries[0].Ephemeral {
		t.Fatalf("results = %+v", br.Results)
	}
	if !strings.Contains(br.Results[2].Error.Message, `unknown field "extra"`) {
		t.Fatalf("unknown field error = %q", br.Results[2].Error.Message)
	}

	ts.call(t, "POST", "/v1/publish/batch", `{"publishes":[]}`, 200, &br)
	if len(br.Results) != 0 {
		t.Fatalf("empty batch results = %+v", br.Results)
	}
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", `{"publishes":[{"biz":"chat"}`, testKey), 400, "malformed", "")
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", `{}`, testKey), 422, "invalid", "publishes is required")
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", `{"publishes":null}`, testKey), 422, "invalid", "publishes is required")
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", `{"items":[]}`, testKey), 422, "invalid", `unknown field "items"`)
	item := `{"biz":"chat","users":["u1"]}`
	over := `{"publishes":[` + strings.Repeat(item+",", MaxBatch) + item + `]}`
	wantError(t, ts.do(t, "POST", "/v1/publish/batch", over, testKey), 413, "too_large", "at most 1000")
	full := `{"publishes":[` + strings.Repeat(item+",", MaxBatch-1) + item + `]}`
	ts.call(t, "POST", "/v1/publish/batch", full, 200, &br)
	if len(br.Results) != MaxBatch || br.Results[MaxBatch-1].Entries[0].Seq != 3+MaxBatch-1 {
		t.Fatalf("full batch: %d results, last %+v", len(br.Results), br.Results[len(br.Results)-1])
	}
}

func TestChannels(t *testing.T) {
	var reset []syncpoint.Channel
	ts := MustStartServer(t, func(c *Config) {
		c.OnChannelReset = func(ch syncpoint.Channel) { reset = append(reset, ch) }
	})
	wantError(t, ts.do(t, "GET", "/v1/channels/nope/user:u1", "", testKey), 404, "not_found", `unknown biz "nope"`)
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:", "", testKey), 422, "invalid", "user id is empty")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/robot:r1", "", testKey), 422, "invalid", "unknown target kind")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/global", "", testKey), 422, "invalid", "takes user targets")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:u1?limit=1001", "", testKey), 422, "invalid", "the most is 1000")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:u1?limit=0", "", testKey), 422, "invalid", "limit")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:u1?after=-1", "", testKey), 422, "invalid", "after")

	// A known biz whose channel has no entries is an empty page, not 404.
	var page pageResp
	ts.call(t, "GET", "/v1/channels/chat/user:nobody", "", 200, &page)
	if page.Epoch != "" || page.LastSeq != 0 || page.FirstSeq != 1 || page.Entries == nil || len(page.Entries) != 0 || page.More {
		t.Fatalf("empty channel = %+v", page)
	}
	wantError(t, ts.do(t, "DELETE", "/v1/channels/chat/user:nobody", "", testKey), 404, "not_found", "no entries")

	var pr publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"config","global":true,"data":1}`, 200, &pr)
	ts.call(t, "POST", "/v1/publish", `{"biz":"config","global":true,"data":2}`, 200, &pr)
	var info channelInfoView
	ts.call(t, "DELETE", "/v1/channels/config/global", "", 200, &info)
	if info.Epoch == "" || info.Epoch == pr.Entries[0].Epoch || info.LastSeq != 0 || info.Channel.String() != "config/global" {
		t.Fatalf("reset = %+v, old epoch %s", info, pr.Entries[0].Epoch)
	}
	if len(reset) != 1 || reset[0].String() != "config/global" {
		t.Fatalf("OnChannelReset saw %v, want config/global once", reset)
	}
	ts.call(t, "POST", "/v1/publish", `{"biz":"config","global":true,"data":3}`, 200, &pr)
	if pr.Entries[0].Seq != 1 || pr.Entries[0].Epoch != info.Epoch {
		t.Fatalf("publish after reset = %+v, want seq 1 in epoch %s", pr.Entries[0], info.Epoch)
	}
}

func TestBizzes(t *testing.T) {
	ts := MustStartServer(t)
	var list struct {
		Bizzes []syncpoint.Biz `json:"bizzes"`
	}
	ts.call(t, "GET", "/v1/bizzes", "", 200, &list)
	if len(list.Bizzes) != len(testBizzes()) || list.Bizzes[0].Name != "chat" {
		t.Fatalf("bizzes = %+v", list.Bizzes)
	}

	var b syncpoint.Biz
	ts.call(t, "PUT", "/v1/bizzes/posts", `{"target":"group","retention":"48h","compact":true}`, 201, &b)
	if b.Name != "posts" || b.Target != syncpoint.TargetGroup || time.Duration(b.Retention) != 48*time.Hour || !b.Compact ||
		!b.Persistent || b.MaxEntryBytes != syncpoint.DefaultMaxEntryBytes || b.Conflict != syncpoint.ConflictReject {
		t.Fatalf("created biz = %+v, want defaults for absent fields", b)
	}
	ts.call(t, "GET", "/v1/bizzes/posts", "", 200, &b)
	if b.Name != "posts" || !b.Compact {
		t.Fatalf("got biz %+v", b)
	}
	ts.call(t, "PUT", "/v1/bizzes/posts", `{"name":"posts","target":"group","max_backlog":10}`, 200, &b)
	if b.MaxBacklog != 10 || b.Compact {
		t.Fatalf("replaced biz = %+v", b)
	}
	if stored, _ := ts.store.Bizzes(context.Background()); len(stored) != len(testBizzes())+1 {
		t.Fatalf("store has %d bizzes", len(stored))
	}
	var pr publishResp
	ts.call(t, "POST", "/v1/publish", `{"biz":"posts","groups":["g1"],"op":"put","key":"p1","data":{}}`, 200, &pr)

	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"name":"other","target":"group"}`, testKey), 422, "invalid", `"other" in the body differs`)
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"group","colour":1}`, testKey), 422, "invalid", `unknown field "colour"`)
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"planet"}`, testKey), 422, "invalid", `target "planet"`)
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"group","retention":"forever"}`, testKey), 422, "invalid", `duration "forever"`)
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"group","max_backlog":"ten"}`, testKey), 422, "invalid", "max_backlog: want a number")
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":`, testKey), 400, "malformed", "")
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"group","max_backlog":1e400}`, testKey), 422, "invalid", "not I-JSON")
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/posts", `{"target":"group","conflict":"\ud800"}`, testKey), 422, "invalid", "lone surrogate")
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/Bad_Name", `{"target":"group"}`, testKey), 422, "invalid", "biz name")

	ts.call(t, "DELETE", "/v1/bizzes/posts", "", 204, nil)
	wantError(t, ts.do(t, "GET", "/v1/bizzes/posts", "", testKey), 404, "not_found", `unknown biz "posts"`)
	wantError(t, ts.do(t, "DELETE", "/v1/bizzes/posts", "", testKey), 404, "not_found", "")
	wantError(t, ts.do(t, "POST", "/v1/publish", `{"biz":"posts","groups":["g1"]}`, testKey), 404, "not_found", "")
}

// TestBizErrorField checks that a bad biz setting names its field, for a
// form to show the message beside it.
func TestBizErrorField(t *testing.T) {
	ts := MustStartServer(t)
	for body, field := range map[string]string{
		`{"target":"planet"}`:                                                    "target",
		`{"target":"group","max_backlog":-1}`:                                    "max_backlog",
		`{"target":"group","max_backlog":"ten"}`:                                 "max_backlog",
		`{"target":"group","colour":1}`:                                          "colour",
		`{"target":"group","conflict":"coin"}`:                                   "conflict",
		`{"target":"group","multi_device":false}`:                                "multi_device",
		`{"target":"group","name":"other"}`:                                      "name",
		`{"target":"user","writable":true,"webhook":{"validate_url":"ftp://x"}}`: "webhook.validate_url",
	} {
		r := ts.do(t, "PUT", "/v1/bizzes/posts", body, testKey)
		var e struct {
			Error struct{ Code, Field string } `json:"error"`
		}
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		if r.status != 422 || e.Error.Field != field {
			t.Errorf("PUT %s: %d %s, want 422 with field %q", body, r.status, r.body, field)
		}
	}
}

// TestBizSecretNeverShown checks every answer that shows a biz: the
// webhook's secret stays out, secret_set says whether there is one, and an
// update that gives no secret keeps it.
func TestBizSecretNeverShown(t *testing.T) {
	ts := MustStartServer(t)
	const secret = "s3cret-webhook-key"
	stored := func() string {
		b, _ := ts.reg.Get("notes")
		if b.Webhook == nil {
			return "<no webhook>"
		}
		return b.Webhook.Secret
	}
	secretSet := func(r response) bool {
		t.Helper()
		if strings.Contains(string(r.body), secret) || strings.Contains(string(r.body), `"secret"`) {
			t.Fatalf("an answer shows the secret: %s", r.body)
		}
		var v struct {
			Webhook *struct {
				NotifyURL string `json:"notify_url"`
				SecretSet *bool  `json:"secret_set"`
			} `json:"webhook"`
		}
		if err := json.Unmarshal(r.body, &v); err != nil || v.Webhook == nil || v.Webhook.SecretSet == nil {
			t.Fatalf("answer %s: %v; want a webhook with secret_set", r.body, err)
		}
		return *v.Webhook.SecretSet
	}
	created := ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"notify_url":"http://127.0.0.1:1/n","secret":"`+secret+`"}}`, 201, nil)
	if !secretSet(created) || stored() != secret {
		t.Fatalf("create: secret_set false or stored %q", stored())
	}
	got := ts.call(t, "GET", "/v1/bizzes/notes", "", 200, nil)
	if !secretSet(got) {
		t.Fatal("get: secret_set false")
	}
	list := ts.call(t, "GET", "/v1/bizzes", "", 200, nil)
	if strings.Contains(string(list.body), secret) || !strings.Contains(string(list.body), `"secret_set":true`) {
		t.Fatalf("list: %s", list.body)
	}

	// What GET showed, sent back with a change: the secret stays.
	var shown map[string]any
	json.Unmarshal(got.body, &shown)
	shown["max_backlog"] = 5
	back, _ := json.Marshal(shown)
	if !secretSet(ts.call(t, "PUT", "/v1/bizzes/notes", string(back), 200, nil)) || stored() != secret {
		t.Fatalf("update without a secret: stored %q", stored())
	}
	if b, _ := ts.reg.Get("notes"); b.MaxBacklog != 5 {
		t.Fatalf("the update was not applied: %+v", b)
	}
	// A new secret replaces it; "" removes it; no webhook drops it all.
	ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"notify_url":"http://127.0.0.1:1/n","secret":"other"}}`, 200, nil)
	if stored() != "other" {
		t.Fatalf("replaced secret: %q", stored())
	}
	if secretSet(ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"notify_url":"http://127.0.0.1:1/n","secret":""}}`, 200, nil)) || stored() != "" {
		t.Fatalf("removed secret: %q", stored())
	}
	ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"notify_url":"http://127.0.0.1:1/n","secret":"again"}}`, 200, nil)
	ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true}`, 200, nil)
	ts.call(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"notify_url":"http://127.0.0.1:1/n"}}`, 200, nil)
	if stored() != "" {
		t.Fatalf("a webhook dropped and given again brought back secret %q", stored())
	}
	wantError(t, ts.do(t, "PUT", "/v1/bizzes/notes", `{"target":"user","writable":true,"webhook":{"secrett":"x"}}`, testKey), 422, "invalid", `unknown field "secrett"`)
}

func TestDevices(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.Presence = presenceSet{"d1": true} })
	ctx := context.Background()
	var pr publishResp
	for i := 0; i < 5; i++ {
		ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, 200, &pr)
	}
	epoch := pr.Entries[0].Epoch
	ts.call(t, "POST", "/v1/publish", `{"biz":"config","global":true}`, 200, nil)
	for _, d := range []syncpoint.Device{
		{ID: "d1", UserID: "u1", Platform: "ios", AppVersion: "1.4.0", LastSeen: t0.Add(-time.Minute)},
		{ID: "d2", UserID: "u1", Platform: "android", AppVersion: "1.3.0", LastSeen: t0.Add(-time.Hour)},
	} {
		if err := ts.store.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	chat, _ := syncpoint.ParseChannel("chat/user:u1")
	config, _ := syncpoint.ParseChannel("config/global")
	if err := ts.store.SaveSyncPoints(ctx, []syncpoint.SyncPoint{
		{DeviceID: "d1", Channel: chat, Position: syncpoint.Position{Epoch: epoch, Seq: 3}, UpdatedAt: t0},
		{DeviceID: "d1", Channel: config, Position: syncpoint.Position{Epoch: "stale-epoch", Seq: 1}, UpdatedAt: t0},
	}); err != nil {
		t.Fatal(err)
	}

	var d struct {
		ID         string    `json:"id"`
		UserID     string    `json:"user_id"`
		Platform   string    `json:"platform"`
		AppVersion string    `json:"app_version"`
		Online     bool      `json:"online"`
		LastSeen   time.Time `json:"last_seen"`
		Channels   []struct {
			Channel      string  `json:"channel"`
			Epoch        string  `json:"epoch"`
			Seq          uint64  `json:"seq"`
			ChannelEpoch string  `json:"channel_epoch"`
			LastSeq      uint64  `json:"last_seq"`
			Lag          *uint64 `json:"lag"`
			Status       string  `json:"status"`
		} `json:"channels"`
	}
	ts.call(t, "GET", "/v1/devices/d1", "", 200, &d)
	if d.ID != "d1" || d.UserID != "u1" || d.Platform != "ios" || d.AppVersion != "1.4.0" || !d.Online || !d.LastSeen.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("device = %+v", d)
	}
	if len(d.Channels) != 2 {
		t.Fatalf("channels = %+v", d.Channels)
	}
	for _, c := range d.Channels {
		switch c.Channel {
		case "chat/user:u1":
			if c.Seq != 3 || c.LastSeq != 5 || c.Lag == nil || *c.Lag != 2 || c.Status != "ok" || c.ChannelEpoch != epoch {
				t.Fatalf("chat sync point = %+v, want lag 2", c)
			}
		case "config/global":
			if c.Lag != nil || c.Status != "reset" || c.LastSeq != 1 {
				t.Fatalf("config sync point = %+v, want no lag and reset", c)
			}
		default:
			t.Fatalf("unexpected channel %+v", c)
		}
	}

	var list struct {
		Devices []map[string]any `json:"devices"`
	}
	ts.call(t, "GET", "/v1/users/u1/devices", "", 200, &list)
	if len(list.Devices) != 2 || list.Devices[0]["id"] != "d1" || list.Devices[0]["online"] != true || list.Devices[1]["online"] != false {
		t.Fatalf("devices = %+v", list.Devices)
	}
	if _, ok := list.Devices[0]["channels"]; ok {
		t.Fatalf("device list carries channels: %+v", list.Devices[0])
	}
	ts.call(t, "GET", "/v1/users/nobody/devices", "", 200, &list)
	if len(list.Devices) != 0 {
		t.Fatalf("devices of nobody = %+v", list.Devices)
	}
	wantError(t, ts.do(t, "GET", "/v1/devices/d9", "", testKey), 404, "not_found", `unknown device "d9"`)
	wantError(t, ts.do(t, "GET", "/v1/devices/bad%20id", "", testKey), 422, "invalid", "device id")
	wantError(t, ts.do(t, "GET", "/v1/users/bad%20id/devices", "", testKey), 422, "invalid", "user id")
}

func TestReadyAndMetrics(t *testing.T) {
	down := errors.New("store: disk on fire at /var/lib/x")
	var ready error
	ts := MustStartServer(t, func(c *Config) {
		c.Ready = func(context.Context) error { return ready }
	})
	ts.call(t, "GET", "/readyz", "", 200, nil)
	ready = down
	r := ts.do(t, "GET", "/readyz", "", "")
	wantError(t, r, 503, "unavailable", "not ready")
	if strings.Contains(string(r.body), "fire") {
		t.Fatalf("readyz leaked the cause: %s", r.body)
	}
	ready = syncpoint.Errorf(syncpoint.CodeUnavailable, "broker is down")
	wantError(t, ts.do(t, "GET", "/readyz", "", ""), 503, "unavailable", "broker is down")

	ts.call(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, 200, nil)
	r = ts.do(t, "GET", "/metrics", "", "")
	for _, want := range []string{
		`syncpoint_http_requests_total{route="POST /v1/publish",status="200"} 1`,
		`syncpoint_http_requests_total{route="GET /readyz",status="503"} 2`,
		`syncpoint_publishes_total{biz="chat",outcome="appended"} 1`,
		`syncpoint_publish_duration_seconds_count 1`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// brokenStore is a real store whose reads fail, as a failing disk would.
type brokenStore struct {
	*pebble.Store
}

func (brokenStore) Read(context.Context, syncpoint.Channel, uint64, int, time.Time) (syncpoint.Page, error) {
	return syncpoint.Page{}, errors.New("read /secret/path/000042.sst: input/output error")
}

func TestInternalErrorIsLogged(t *testing.T) {
	ts := MustStartServer(t, func(c *Config) { c.Store = brokenStore{c.Store.(*pebble.Store)} })
	r := ts.do(t, "GET", "/v1/channels/chat/user:u1", "", testKey)
	wantError(t, r, 500, "internal", "internal error")
	if strings.Contains(string(r.body), "secret") {
		t.Fatalf("internal error leaked: %s", r.body)
	}
	if log := ts.log.String(); !strings.Contains(log, "/secret/path/000042.sst") || !strings.Contains(log, "GET") {
		t.Fatalf("internal error not logged with its details; log: %s", log)
	}

	// A closed store means shutting down: 503, retry.
	ts.store.Close()
	wantError(t, ts.do(t, "POST", "/v1/publish", `{"biz":"chat","users":["u1"]}`, testKey), 503, "unavailable", "")
}

func TestClientErrorHidesInternals(t *testing.T) {
	ce := clientError(fmt.Errorf("append: %w", errors.New("pebble: /data/000123.log: no space left")))
	if ce.Code != syncpoint.CodeInternal || ce.Message != "internal error" {
		t.Fatalf("clientError = %+v", ce)
	}
	if ce := clientError(fmt.Errorf("append: %w", context.Canceled)); ce.Code != syncpoint.CodeUnavailable {
		t.Fatalf("a canceled request maps to %+v, want unavailable", ce)
	}
	if got := Status(syncpoint.CodeInternal); got != 500 {
		t.Fatalf("Status(internal) = %d", got)
	}
	for code, status := range map[syncpoint.ErrorCode]int{
		syncpoint.CodeMalformed: 400, syncpoint.CodeUnauthorized: 401, syncpoint.CodeForbidden: 403,
		syncpoint.CodeNotFound: 404, syncpoint.CodeConflict: 409, syncpoint.CodeTooLarge: 413,
		syncpoint.CodeInvalid: 422, syncpoint.CodeRateLimited: 429, syncpoint.CodeUnavailable: 503,
		"made_up": 500,
	} {
		if got := Status(code); got != status {
			t.Errorf("Status(%s) = %d, want %d", code, got, status)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "héllo ☃", "bad\xffutf8\xc3", "<>&"} {
		checkAppendString(t, s)
	}
}

func checkAppendString(t *testing.T, s string) {
	t.Helper()
	b := jsontext.AppendString(nil, s)
	var got string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("appendString(%q) = %s: not JSON: %v", s, b, err)
	}
	ref, _ := json.Marshal(s)
	var want string
	json.Unmarshal(ref, &want)
	if got != want {
		t.Fatalf("appendString(%q) decodes to %q, encoding/json gives %q", s, got, want)
	}
}

// TestTailChecksFirst checks that a channel tail is refused by the API, in
// its own shape, before any stream: without the key, for an unknown biz or a
// target of the wrong kind, and with no tail configured.
func TestTailChecksFirst(t *testing.T) {
	ts := MustStartServer(t)
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:u1/events", "", ""), 401, "unauthorized", "")
	wantError(t, ts.do(t, "GET", "/v1/channels/nope/user:u1/events", "", testKey), 404, "not_found", `unknown biz "nope"`)
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/global/events", "", testKey), 422, "invalid", "takes user targets")
	wantError(t, ts.do(t, "GET", "/v1/channels/chat/user:u1/events", "", testKey), 503, "unavailable", "no channel tail")
}
