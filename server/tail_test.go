package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tailEvent is one event of a channel tail.
type tailEvent struct {
	id, typ string
	data    string
}

// openTail opens GET /v1/channels/{biz}/{target}/events with the API key
// and returns the events as they come.
func openTail(t *testing.T, url, lastID string) <-chan tailEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("tail: HTTP %d, %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan tailEvent, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		var ev tailEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.typ != "" {
					out <- ev
				}
				ev = tailEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data += line[6:]
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, events <-chan tailEvent) tailEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
		return tailEvent{}
	}
}

func TestChannelTail(t *testing.T) {
	srv := MustRunServer(t, testConfig(t))
	first := publishText(t, srv.URL, "u1", "before")
	epoch := first.Entries[0].Epoch

	// Without the key there is no tail.
	resp, err := http.Get(srv.URL + "/v1/channels/chat/user:u1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without the API key: HTTP %d, want 401", resp.StatusCode)
	}
	// A target of the wrong kind is the API's 422, before any stream.
	if code := do(t, "GET", srv.URL+"/v1/channels/chat/global/events", nil, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("wrong target kind: HTTP %d, want 422", code)
	}

	// From the head: only what is published from now on.
	live := openTail(t, srv.URL+"/v1/channels/chat/user:u1/events", "")
	// The stream is open once its handler runs; a publish racing its
	// start would be missed only before Observe registered it, so publish
	// until the event comes.
	var ev tailEvent
	deadline := time.Now().Add(5 * time.Second)
	for ev.typ == "" && time.Now().Before(deadline) {
		publishText(t, srv.URL, "u1", "live")
		select {
		case ev = <-live:
		case <-time.After(200 * time.Millisecond):
		}
	}
	var e struct {
		Channel string          `json:"channel"`
		Seq     uint64          `json:"seq"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
		t.Fatalf("entry event %+v: %v", ev, err)
	}
	if ev.typ != "entry" || e.Channel != "chat/user:u1" || e.Seq < 2 || !strings.Contains(string(e.Data), "live") {
		t.Fatalf("event %+v, want a live entry after seq 1", ev)
	}
	if want := epoch + ":" + strconv.FormatUint(e.Seq, 10); ev.id != want {
		t.Fatalf("id %q, want %q", ev.id, want)
	}

	// after=0 reads the backlog first; Last-Event-ID resumes after an id.
	all := openTail(t, srv.URL+"/v1/channels/chat/user:u1/events?after=0", "")
	if ev := nextEvent(t, all); ev.id != epoch+":1" || !strings.Contains(ev.data, "before") {
		t.Fatalf("after=0: first event %+v, want seq 1", ev)
	}
	resumed := openTail(t, srv.URL+"/v1/channels/chat/user:u1/events", epoch+":1")
	if ev := nextEvent(t, resumed); ev.id != epoch+":2" {
		t.Fatalf("resumed after seq 1: event %+v, want seq 2", ev)
	}
	// An id of another epoch gives a reset first.
	other := openTail(t, srv.URL+"/v1/channels/chat/user:u1/events", "0000:1")
	if ev := nextEvent(t, other); ev.typ != "reset" {
		t.Fatalf("another epoch: event %+v, want reset", ev)
	}

	// A start that does not parse is the API's 422, before any stream.
	for _, q := range []string{"?after=x", "?last_event_id=nocolon", "?last_event_id=e:-1"} {
		if code := do(t, "GET", srv.URL+"/v1/channels/chat/user:u1/events"+q, nil, nil); code != http.StatusUnprocessableEntity {
			t.Errorf("tail%s: HTTP %d, want 422", q, code)
		}
	}

	// A tail is not a device: it adds no device and no sync point.
	var dev struct{ Devices []any }
	do(t, "GET", srv.URL+"/v1/users/u1/devices", nil, &dev)
	if len(dev.Devices) != 0 {
		t.Fatalf("a tail stored devices: %+v", dev.Devices)
	}
}
