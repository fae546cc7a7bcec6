package httpsync_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint/apiclient"
	"github.com/syncpoint/syncpoint/server"
)

// crmClient is a client of the CRM Sync API written from the description
// of its wire shapes alone (issue 9, section 3), with nothing of this
// package: it is what an existing client does, with its base URL and token
// pointed at syncpoint.
type crmClient struct {
	t      *testing.T
	base   string
	token  string
	device string
}

type crmAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (c *crmClient) call(method, path string, body any) crmAnswer {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, c.base+path, rd)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Basecrm-Device-UUID", c.device)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "crm-sync-client/2.1 (test)")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return crmAnswer{resp.StatusCode, resp.Header, b}
}

// strict decodes b into v, refusing members the description does not have.
func strict(t *testing.T, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s does not have the documented shape: %v", b, err)
	}
}

// empty checks a 202 or 204: no body and no JSON content type.
func (a crmAnswer) empty(t *testing.T, status int) {
	t.Helper()
	if a.status != status || len(a.body) != 0 || strings.Contains(a.header.Get("Content-Type"), "json") {
		t.Fatalf("answer %d %q %s; want %d with no body and no JSON content type", a.status, a.header.Get("Content-Type"), a.body, status)
	}
}

type crmSession struct {
	Data struct {
		ID     string `json:"id"`
		Queues []struct {
			Data struct {
				Name       string `json:"name"`
				Pages      int    `json:"pages"`
				TotalCount int    `json:"total_count"`
			} `json:"data"`
			Meta struct {
				Type string `json:"type"`
			} `json:"meta"`
		} `json:"queues"`
	} `json:"data"`
	Meta struct {
		Type string `json:"type"`
	} `json:"meta"`
}

type crmPage struct {
	Items []struct {
		Data map[string]any `json:"data"`
		Meta struct {
			Type string `json:"type"`
			Sync struct {
				EventType string `json:"event_type"`
				AckKey    string `json:"ack_key"`
				Revision  int64  `json:"revision"`
			} `json:"sync"`
		} `json:"meta"`
	} `json:"items"`
	Meta struct {
		Type      string `json:"type"`
		Count     int    `json:"count"`
		CountLeft int    `json:"count_left"`
	} `json:"meta"`
}

type crmErrors struct {
	Errors []struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Details string `json:"details"`
		} `json:"error"`
	} `json:"errors"`
	Meta struct {
		Type   string `json:"type"`
		Logref string `json:"logref"`
	} `json:"meta"`
}

func (a crmAnswer) isError(t *testing.T, status int) string {
	t.Helper()
	if a.status != status {
		t.Fatalf("answer %d %s; want %d", a.status, a.body, status)
	}
	var e crmErrors
	strict(t, a.body, &e)
	if len(e.Errors) != 1 || e.Errors[0].Error.Code == "" || e.Errors[0].Error.Message == "" || e.Meta.Type != "errors" || e.Meta.Logref == "" {
		t.Fatalf("error answer %s lacks code, message, type or logref", a.body)
	}
	return e.Errors[0].Error.Code
}

// sync runs the whole flow once: start, drain main acking each page, and
// returns what was applied, by resource id.
func (c *crmClient) sync() map[string]map[string]any {
	c.t.Helper()
	a := c.call("POST", "/v2/sync/start", nil)
	if a.status == 204 {
		a.empty(c.t, 204)
		return nil
	}
	if a.status != 201 {
		c.t.Fatalf("start: %d %s", a.status, a.body)
	}
	var s crmSession
	strict(c.t, a.body, &s)
	if s.Meta.Type != "sync_session" || len(s.Data.Queues) != 1 || s.Data.Queues[0].Data.Name != "main" || s.Data.Queues[0].Meta.Type != "sync_queue" {
		c.t.Fatalf("start answer %s", a.body)
	}
	local := map[string]map[string]any{}
	for {
		a := c.call("GET", "/v2/sync/"+s.Data.ID+"/queues/main", nil)
		if a.status == 204 {
			a.empty(c.t, 204)
			return local
		}
		if a.status != 200 {
			c.t.Fatalf("queue: %d %s", a.status, a.body)
		}
		var p crmPage
		strict(c.t, a.body, &p)
		if p.Meta.Type != "collection" || p.Meta.Count != len(p.Items) || len(p.Items) == 0 {
			c.t.Fatalf("page meta %+v with %d items", p.Meta, len(p.Items))
		}
		var keys []string
		for _, it := range p.Items {
			id := fmt.Sprint(it.Data["id"])
			switch it.Meta.Sync.EventType {
			case "created", "updated":
				local[it.Meta.Type+"/"+id] = it.Data
			case "deleted":
				delete(local, it.Meta.Type+"/"+id)
			default:
				c.t.Fatalf("event type %q", it.Meta.Sync.EventType)
			}
			keys = append(keys, it.Meta.Sync.AckKey)
		}
		c.call("POST", "/v2/sync/ack", map[string]any{"data": map[string]any{"ack_keys": keys}}).empty(c.t, 202)
	}
}

// TestV2DropIn drives the /v2 surface with a client of the CRM Sync API.
func TestV2DropIn(t *testing.T) {
	e := mustStart(t)
	put := func(key, data string) {
		e.publish(apiclient.PublishRequest{Biz: "notes", Users: []string{"u1"}, Op: "put", Key: key, Data: json.RawMessage(data)})
	}
	for i := range 150 {
		put(fmt.Sprintf("n%03d", i), fmt.Sprintf(`{"title":"note %d"}`, i))
	}
	put("n000", `{"title":"note 0, edited"}`)
	e.publish(apiclient.PublishRequest{Biz: "notes", Users: []string{"u1"}, Op: "delete", Key: "n001"})

	c := &crmClient{t: t, base: e.url, token: e.token("u1"), device: "0f5ee9ea-8a3f-4e5b-9a39-5fcd2f4a1c11"}
	got := c.sync()
	if len(got) != 149 || got["notes/n000"]["title"] != "note 0, edited" || got["notes/n001"] != nil {
		t.Fatalf("the client holds %d records, n000 = %v", len(got), got["notes/n000"])
	}
	if again := c.sync(); again != nil {
		t.Fatalf("a second sync got %d records; want a 204 start", len(again))
	}
	put("n200", `{"title":"new"}`)
	if again := c.sync(); len(again) != 1 || again["notes/n200"]["title"] != "new" {
		t.Fatalf("the next sync got %v", again)
	}

	// Errors in the documented shape.
	bad := &crmClient{t: t, base: e.url, token: "not-a-token", device: c.device}
	if code := bad.call("POST", "/v2/sync/start", nil).isError(t, 401); code != "unauthorized" {
		t.Fatalf("bad token: code %q", code)
	}
	if code := c.call("GET", "/v2/sync/AAAAAAAAAAAAAAAAAAAAAA/queues/main", nil).isError(t, 404); code != "unknown_session" {
		t.Fatalf("unknown session: code %q", code)
	}
	if code := c.call("POST", "/v2/sync/ack", map[string]any{"data": map[string]any{"ack_keys": []string{"forged"}}}).isError(t, 422); code != "invalid_ack_key" {
		t.Fatalf("forged ack key: code %q", code)
	}
}

// TestV2OpaqueToken: a CRM Sync API client holds a 64-character personal
// access token; minted through POST /v1/tokens, it syncs over /v2 as is.
func TestV2OpaqueToken(t *testing.T) {
	e := mustStart(t)
	e.publish(apiclient.PublishRequest{Biz: "notes", Users: []string{"u1"}, Op: "put", Key: "n1", Data: json.RawMessage(`{"title":"one"}`)})
	_, tok := e.opaque("u1")
	c := &crmClient{t: t, base: e.url, token: tok, device: "7d0c2a4e-3b1f-4c8e-9f6a-2e5d8b1c0a93"}
	if got := c.sync(); len(got) != 1 || got["notes/n1"]["title"] != "one" {
		t.Fatalf("a sync with an opaque token got %v", got)
	}
	if again := c.sync(); again != nil {
		t.Fatalf("the acks of the opaque token's sync did not hold: a second sync got %v", again)
	}
}

// TestV2RateLimited: a token over its rate gets a 429 in the /v2 shape.
func TestV2RateLimited(t *testing.T) {
	e := mustStart(t, func(c *server.Config) { c.SyncTokenRate = 0.001 })
	c := &crmClient{t: t, base: e.url, token: e.token("u1"), device: "d1"}
	c.call("POST", "/v2/sync/start", nil).empty(t, 204)
	a := c.call("POST", "/v2/sync/start", nil)
	if code := a.isError(t, 429); code != "rate_limited" || a.header.Get("Retry-After") == "" {
		t.Fatalf("over the rate: code %q, Retry-After %q", code, a.header.Get("Retry-After"))
	}
}
