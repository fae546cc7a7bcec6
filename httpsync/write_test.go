package httpsync_test

import (
	"context"
	"encoding/json"
	"testing"
)

// TestWrite: POST /v1/write takes the socket's write frame, answers its
// write_result, and applies a write once however often it is sent.
func TestWrite(t *testing.T) {
	e := mustStart(t)
	d := e.device("d1", e.token("u1"))
	body := `{"write": {"write_id": "01J0W00000000000000000X001", "changes": [{"biz": "notes",
		"created": [{"id": "01HZX5N0000000000000000001", "data": {"title": "a"}}, {"id": "bad id", "data": {}}]}]}}`
	var first string
	for i := range 3 {
		a := d.do("POST", "/v1/write", body)
		if a.status != 200 || a.header.Get("Cache-Control") != "no-store" {
			t.Fatalf("write %d: %s", i, a)
		}
		var f struct {
			WriteResult struct {
				WriteID string `json:"write_id"`
				Saved   []struct {
					Channel, ID string
					Seq         uint64
				} `json:"saved"`
				Errors []struct{ ID, Code string } `json:"errors"`
			} `json:"write_result"`
		}
		if err := json.Unmarshal(a.body, &f); err != nil {
			t.Fatal(err)
		}
		r := f.WriteResult
		if r.WriteID != "01J0W00000000000000000X001" || len(r.Saved) != 1 || r.Saved[0].Seq != 1 || len(r.Errors) != 1 || r.Errors[0].Code != "invalid_id" {
			t.Fatalf("write %d: %s", i, a.body)
		}
		if i == 0 {
			first = string(a.body)
		} else if string(a.body) != first {
			t.Fatalf("a resend answered %s, the first %s", a.body, first)
		}
	}
	var page struct {
		Entries []struct{ Seq uint64 } `json:"entries"`
	}
	if err := e.api.Call(context.Background(), "GET", "/v1/channels/notes/user:u1", nil, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 1 {
		t.Fatalf("the channel holds %d entries after three sends of one write", len(page.Entries))
	}
}
