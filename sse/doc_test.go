package sse_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint/sse"
	"github.com/syncpoint/syncpoint/wire"
)

// The events in docs/http-sync-sse.md are written exactly as the server
// writes them, and its error example is what the server answers.
func TestDocExamples(t *testing.T) {
	raw, err := os.ReadFile("../docs/http-sync-sse.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	blocks := regexp.MustCompile("(?s)```sse\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) < 3 {
		t.Fatalf("%d sse blocks in the doc", len(blocks))
	}
	seen := map[string]bool{}
	for _, b := range blocks {
		r := wire.NewEventReader(strings.NewReader(b[1]), 0)
		for {
			ev, err := r.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("block %q: %v", b[1], err)
			}
			seen[ev.Type] = true
			if ev.Comment {
				if string(ev.Data) != "heartbeat" {
					t.Errorf("comment %q; the server sends \"heartbeat\"", ev.Data)
				}
				continue
			}
			var again []byte
			switch ev.Type {
			case wire.EventEntry:
				e, err := wire.DecodeEntryJSON(ev.Data)
				if err != nil {
					t.Fatalf("entry %s: %v", ev.Data, err)
				}
				again, _ = wire.AppendEntryJSON(nil, &e)
			case wire.EventReset, wire.EventGap:
				var c struct {
					Channel, Status, Epoch string
					FirstSeq               uint64 `json:"first_seq"`
					LastSeq                uint64 `json:"last_seq"`
					From                   uint64
				}
				if err := json.Unmarshal(ev.Data, &c); err != nil || c.Status != ev.Type {
					t.Fatalf("%s event %s: %v", ev.Type, ev.Data, err)
				}
				again = wire.AppendChannelStatusJSON(nil, &wire.ChannelStatus{Channel: c.Channel, Status: c.Status, Epoch: c.Epoch, FirstSeq: c.FirstSeq, LastSeq: c.LastSeq, From: c.From})
			case wire.EventClose:
				var e wire.Error
				var j struct {
					Code    wire.CloseCode
					Reason  string
					Message string
					Fatal   bool
				}
				if err := json.Unmarshal(ev.Data, &j); err != nil {
					t.Fatalf("close %s: %v", ev.Data, err)
				}
				e = *wire.NewError(j.Code, j.Message, j.Fatal)
				again = wire.AppendErrorJSON(nil, &e)
			default:
				t.Fatalf("an event of type %q", ev.Type)
			}
			if !bytes.Equal(again, ev.Data) {
				t.Errorf("%s event\n  doc    %s\n  server %s", ev.Type, ev.Data, again)
			}
			if _, err := base64.RawURLEncoding.DecodeString(ev.ID); ev.Type != wire.EventClose && (ev.ID == "" || err != nil) {
				t.Errorf("%s event with id %q, want base64url", ev.Type, ev.ID)
			}
		}
		if r.Retry() != 0 && r.Retry() != sse.DefaultRetry {
			t.Errorf("retry %v in the doc; the server sends %v", r.Retry(), sse.DefaultRetry)
		}
	}
	for _, typ := range []string{"", wire.EventEntry, wire.EventReset, wire.EventClose} {
		if !seen[typ] {
			t.Errorf("no %q event in the examples", typ)
		}
	}

	// The error example.
	m := regexp.MustCompile(`(?s)HTTP/1.1 403 Forbidden\n.*?\n\n(\{.*?\})\n`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("no 403 example in the doc")
	}
	n := runNode(t, nil)
	s := open(t, n.URL, url.Values{"biz": {"chat,nope"}, "device_id": {"web-1"}}, http.Header{"Authorization": {"Bearer " + token(t, "u1")}})
	if got := strings.TrimSpace(s.body()); s.resp.StatusCode != http.StatusForbidden || got != m[1] {
		t.Fatalf("HTTP %d %s; the doc says 403 %s", s.resp.StatusCode, got, m[1])
	}
}
