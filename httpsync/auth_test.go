package httpsync_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// form is one HTTP sync request a test can send as any device.
type form struct {
	name   string
	method string
	path   func(session string) string
	body   func(ackKey, cursor string) any
	v2     bool
}

func forms() []form {
	plain := func(p string) func(string) string { return func(string) string { return p } }
	return []form{
		{name: "write", method: "POST", path: plain("/v1/write"), body: func(string, string) any {
			return `{"write": {"write_id": "w1", "changes": [{"biz": "notes", "created": [{"id": "01HZX5N0000000000000000009", "data": {"a": 1}}]}]}}`
		}},
		{name: "start", method: "POST", path: plain("/v1/sync/start"), body: func(string, string) any { return nil }},
		{name: "queue", method: "GET", path: func(s string) string { return "/v1/sync/" + s + "/queue" }, body: func(string, string) any { return nil }},
		{name: "ack", method: "POST", path: plain("/v1/sync/ack"), body: func(k, _ string) any { return map[string]any{"ack_keys": []string{k}} }},
		{name: "sync", method: "POST", path: plain("/v1/sync"), body: func(_, c string) any { return map[string]any{"last_synced": c} }},
		{name: "v2 start", method: "POST", path: plain("/v2/sync/start"), body: func(string, string) any { return nil }, v2: true},
		{name: "v2 queue", method: "GET", path: func(s string) string { return "/v2/sync/" + s + "/queues/main" }, body: func(string, string) any { return nil }, v2: true},
		{name: "v2 ack", method: "POST", path: plain("/v2/sync/ack"), body: func(k, _ string) any { return map[string]any{"data": map[string]any{"ack_keys": []string{k}}} }, v2: true},
	}
}

// codeOf reads the error code of either error shape.
func codeOf(a answer) string {
	var v2 struct {
		Errors []struct {
			Error struct{ Code string } `json:"error"`
		} `json:"errors"`
	}
	if json.Unmarshal(a.body, &v2) == nil && len(v2.Errors) == 1 {
		return v2.Errors[0].Error.Code
	}
	return a.errorCode()
}

// TestAuthorizationMatrix sends every form with what must be refused: a
// token that is expired, forged or missing; an opaque token that was
// revoked or never minted; another user's device; and
// checks each refusal's status and code, and that it carries no-store.
func TestAuthorizationMatrix(t *testing.T) {
	e := mustStart(t)
	e.msgs("chat", "u1", 1, 3)
	owner := e.device("d1", e.token("u1"))
	s := owner.mustStart("chat")
	items, _, _ := owner.page(s.ID, 0)
	key := items[0].Meta.Sync.AckKey
	cursor := owner.sync(nil).LastSynced
	// d2 of u2 exists, so that u1 cannot take it over.
	e.device("d2", e.token("u2")).sync(nil)
	// The revoked token worked before it was revoked, so the 401s below
	// come from the revocation and not from a token that never could work.
	revokedID, revoked := e.opaque("u1")
	e.device("d1", revoked).sync(nil)
	e.revoke(revokedID)
	unknown := strings.Repeat("Zq9", 21) + "A"

	cases := []struct {
		name   string
		dev    *dev
		status int
		code   string
	}{
		{"no token", e.device("d1", ""), 401, "unauthorized"},
		{"forged token", e.device("d1", e.token("u1")[:40]+"x.y"), 401, "unauthorized"},
		{"token of another secret", e.device("d1", strings.Replace(e.token("u1"), "e", "f", 1)), 401, "unauthorized"},
		{"expired token", e.device("d1", e.tokenFor("u1", -time.Hour)), 401, "unauthorized"},
		{"revoked opaque token", e.device("d1", revoked), 401, "unauthorized"},
		{"unknown opaque token", e.device("d1", unknown), 401, "unauthorized"},
		{"another user's device", e.device("d2", e.token("u1")), 403, "forbidden"},
		{"no device", e.device("", e.token("u1")), 422, "invalid"},
	}
	for _, f := range forms() {
		for _, tc := range cases {
			if tc.name == "another user's device" && (f.name == "queue" || f.name == "v2 queue") {
				// A session is looked up before the device is bound: to
				// another device it does not exist.
				tc.status, tc.code = 404, "unknown_session"
			}
			if tc.name == "another user's device" && (f.name == "ack" || f.name == "v2 ack") {
				// The key is bound to d1: d2 cannot use it.
				tc.status, tc.code = 422, "invalid_ack_key"
			}
			if tc.name == "another user's device" && f.name == "sync" {
				tc.status, tc.code = 422, "invalid_cursor"
			}
			a := tc.dev.do(f.method, f.path(s.ID), f.body(key, cursor))
			if a.status != tc.status || codeOf(a) != tc.code {
				t.Errorf("%s, %s: %s; want %d %s", f.name, tc.name, a, tc.status, tc.code)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s, %s: Cache-Control %q", f.name, tc.name, a.header.Get("Cache-Control"))
			}
		}
	}
}

// TestAuthorizationOfChannels: a device reads and writes only its user's
// channels, its own device channel, global ones and the groups its token
// grants, on every form that names a channel; and what a device was given
// (a session, an ack key, a cursor) is of no use to another device.
func TestAuthorizationOfChannels(t *testing.T) {
	e := mustStart(t)
	e.msgs("chat", "u1", 1, 3)
	d1 := e.device("d1", e.token("u1", "g1"))
	s := d1.mustStart("chat")
	items, _, _ := d1.page(s.ID, 0)
	cursor := d1.sync(nil).LastSynced
	other := e.device("d3", e.token("u1", "g1")) // the same user's other device

	for _, tc := range []struct {
		name   string
		a      answer
		status int
		code   string
	}{
		{"sync another user's channel", d1.do("POST", "/v1/sync", `{"entities": [{"name": "chat", "scope": {"user": "u2"}}]}`), 403, "forbidden"},
		{"sync a group not granted", d1.do("POST", "/v1/sync", `{"entities": [{"name": "tasks", "scope": {"group": "g2"}}]}`), 403, "forbidden"},
		{"sync another device's channel", d1.do("POST", "/v1/sync", `{"entities": [{"name": "inbox", "scope": {"device": "d3"}}]}`), 403, "forbidden"},
		{"upload to a group not granted", d1.do("POST", "/v1/sync", `{"write_id": "w", "entities": [{"name": "tasks", "scope": {"group": "g2"}, "created": [{"id": "01HZX5N0000000000000000003"}]}]}`), 403, "forbidden"},
		{"start an unknown biz", d1.do("POST", "/v1/sync/start", `{"bizzes": ["nope"]}`), 403, "forbidden"},
		{"another device's session", other.do("GET", "/v1/sync/"+s.ID+"/queue", nil), 404, "unknown_session"},
		{"another device's ack key", other.do("POST", "/v1/sync/ack", map[string]any{"ack_keys": keysOf(items)}), 422, "invalid_ack_key"},
		{"another device's cursor", other.do("POST", "/v1/sync", map[string]any{"last_synced": cursor}), 422, "invalid_cursor"},
		{"a forged cursor", d1.do("POST", "/v1/sync", map[string]any{"last_synced": cursor[:len(cursor)-2] + "AA"}), 422, "invalid_cursor"},
		{"a forged ack key", d1.do("POST", "/v1/sync/ack", map[string]any{"ack_keys": []string{items[0].Meta.Sync.AckKey[:20] + "AAAA"}}), 422, "invalid_ack_key"},
	} {
		if tc.a.status != tc.status || tc.a.errorCode() != tc.code {
			t.Errorf("%s: %s; want %d %s", tc.name, tc.a, tc.status, tc.code)
		}
	}
	// An upload over /v1/write to another user's channel is refused per
	// record, as over the socket.
	a := d1.do("POST", "/v1/write", `{"write": {"write_id": "w9", "changes": [{"biz": "notes", "target": "user:u2", "created": [{"id": "01HZX5N0000000000000000004", "data": {}}]}]}}`)
	if a.status != 200 || !strings.Contains(string(a.body), `"code":"forbidden"`) {
		t.Errorf("write to another user's channel: %s", a)
	}
	// Nothing of it was acked: the session still has all three.
	if s := d1.mustStart("chat"); s.Queues[0].TotalCount != 3 {
		t.Errorf("after the refused acks the device has %d to sync, want 3", s.Queues[0].TotalCount)
	}
}
