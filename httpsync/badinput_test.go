package httpsync_test

import (
	"strings"
	"testing"
)

// TestBadInput: each malformed request gets a clear 4xx, and a drain that
// goes on around them loses nothing.
func TestBadInput(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	e.msgs("chat", "u1", 1, 30)
	s := d.mustStart("chat")
	first, _, _ := d.page(s.ID, 10)
	d.ack(keysOf(first)...)

	manyKeys := make([]string, 100_001)
	for i := range manyKeys {
		manyKeys[i] = "k"
	}
	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"start: malformed", "POST", "/v1/sync/start", `{"bizzes": [`, 400, "malformed"},
		{"start: unknown field", "POST", "/v1/sync/start", `{"bizes": ["chat"]}`, 422, "invalid"},
		{"start: a biz that is not stored", "POST", "/v1/sync/start", `{"bizzes": ["typing"]}`, 422, "invalid"},
		{"queue: unknown session", "GET", "/v1/sync/AAAAAAAAAAAAAAAAAAAAAA/queue", nil, 404, "unknown_session"},
		{"queue: no such id at all", "GET", "/v1/sync/x/queue", nil, 404, "unknown_session"},
		{"queue: a huge limit", "GET", "/v1/sync/" + s.ID + "/queue?limit=1000000", nil, 422, "invalid"},
		{"queue: a zero limit", "GET", "/v1/sync/" + s.ID + "/queue?limit=0", nil, 422, "invalid"},
		{"queue: a limit that is no number", "GET", "/v1/sync/" + s.ID + "/queue?limit=ten", nil, 422, "invalid"},
		{"ack: malformed", "POST", "/v1/sync/ack", `{"ack_keys": "`, 400, "malformed"},
		{"ack: no keys", "POST", "/v1/sync/ack", `{}`, 422, "invalid"},
		{"ack: empty body", "POST", "/v1/sync/ack", nil, 400, "malformed"},
		{"ack: a bad key among good ones", "POST", "/v1/sync/ack", map[string]any{"ack_keys": []string{first[0].Meta.Sync.AckKey, "bad"}}, 422, "invalid_ack_key"},
		{"ack: too many keys", "POST", "/v1/sync/ack", map[string]any{"ack_keys": manyKeys}, 413, "too_large"},
		{"sync: malformed", "POST", "/v1/sync", `{"entities": [{]}`, 400, "malformed"},
		{"sync: a huge limit", "POST", "/v1/sync", `{"limit": 5000}`, 422, "invalid"},
		{"sync: a negative wait", "POST", "/v1/sync", `{"wait": "-5s"}`, 422, "invalid"},
		{"sync: a wait that is no duration", "POST", "/v1/sync", `{"wait": 25}`, 422, "invalid"},
		{"sync: a cursor that is no cursor", "POST", "/v1/sync", `{"last_synced": "2014-02-14T09:12:43-0700"}`, 422, "invalid_cursor"},
		{"sync: uploads without write_id", "POST", "/v1/sync", `{"entities": [{"name": "notes", "created": [{"id": "01HZX5N0000000000000000001"}]}]}`, 422, "invalid"},
		{"sync: a record without id", "POST", "/v1/sync", `{"write_id": "w", "entities": [{"name": "notes", "created": [{"title": "x"}]}]}`, 422, "invalid"},
		{"sync: a scope of two targets", "POST", "/v1/sync", `{"entities": [{"name": "chat", "scope": {"user": "u1", "group": "g1"}}]}`, 422, "invalid"},
		{"write: not a frame", "POST", "/v1/write", `{"write_id": "w"}`, 400, "malformed"},
		{"write: another frame", "POST", "/v1/write", `{"ping": {"nonce": 1}}`, 422, "invalid"},
		{"write: no write_id", "POST", "/v1/write", `{"write": {"changes": []}}`, 422, "invalid"},
		{"v2 ack: no keys", "POST", "/v2/sync/ack", `{"data": {}}`, 422, "invalid"},
		{"v2 queue: another queue", "GET", "/v2/sync/" + s.ID + "/queues/other", nil, 404, "not_found"},
	} {
		a := d.do(tc.method, tc.path, tc.body)
		if a.status != tc.status || codeOf(a) != tc.code || !strings.Contains(string(a.body), "message") {
			t.Errorf("%s: %s; want %d %s with a message", tc.name, a, tc.status, tc.code)
		}
	}
	// The session goes on where it was: nothing was lost or acked.
	var got []int
	for {
		items, _, a := d.page(s.ID, 0)
		if a.status == 204 {
			break
		}
		for _, it := range items {
			got = append(got, nOf(t, it.Data))
		}
		d.ack(keysOf(items)...)
	}
	if len(got) != 20 || got[0] != 11 || got[19] != 30 {
		t.Fatalf("after the bad requests the session delivered %v", got)
	}
}
