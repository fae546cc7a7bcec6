package feed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/publish"
)

func (e *env) observe(o feed.Observation) (*feed.Stream, feed.Status) {
	e.t.Helper()
	s, st, err := e.feed.Observe(context.Background(), o)
	if err != nil {
		e.t.Fatalf("observe: %v", err)
	}
	e.t.Cleanup(s.Close)
	return s, st
}

// waitFor waits for an entry to arrive on a watching stream.
func waitFor(t *testing.T, s *feed.Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("wait: %v", err)
	}
}

func TestObserveFromHead(t *testing.T) {
	e := newEnv(t, nil)
	e.msg("chat", u1, `{"n":1}`)
	e.msg("chat", u1, `{"n":2}`)
	s, st := e.observe(feed.Observation{Channel: chatU1, FromHead: true})
	if st.Status != syncpoint.StatusOK || st.From != 2 {
		t.Fatalf("status = %s from %d, want ok from 2", st.Status, st.From)
	}
	if got := drain(t, s, 10); len(got) != 0 {
		t.Fatalf("from the head, read %d old entries", len(got))
	}
	// Conditions that match no device do not hide an entry from an operator.
	e.publish(publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}, Data: json.RawMessage(`{"n":3}`),
		Conditions: syncpoint.Conditions{Platforms: []string{"nowhere"}}})
	waitFor(t, s)
	got := drain(t, s, 10)
	if len(got) != 1 || got[0].Seq != 3 {
		t.Fatalf("read %+v, want seq 3", got)
	}
	// An operator's stream is no device: nothing of it is stored.
	e.feed.Flush(context.Background())
	if _, err := e.store.Device(context.Background(), ""); err == nil {
		t.Fatal("an observer stored a device")
	}
}

func TestObserveFromPosition(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 5 {
		e.msg("chat", u1, fmt.Sprintf(`{"n":%d}`, i))
	}
	info, err := e.store.Channel(context.Background(), chatU1)
	if err != nil {
		t.Fatal(err)
	}
	s, st := e.observe(feed.Observation{Channel: chatU1, Position: syncpoint.Position{Epoch: info.Epoch, Seq: 3}})
	if st.Status != syncpoint.StatusOK || st.From != 3 {
		t.Fatalf("status = %s from %d, want ok from 3", st.Status, st.From)
	}
	if got := drain(t, s, 10); len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("read %+v, want seqs 4 and 5", got)
	}
	// A seq alone is taken in the channel's current epoch.
	s, _ = e.observe(feed.Observation{Channel: chatU1, Position: syncpoint.Position{Seq: 4}})
	if got := drain(t, s, 10); len(got) != 1 || got[0].Seq != 5 {
		t.Fatalf("after seq 4, read %+v, want seq 5", got)
	}
	_, st = e.observe(feed.Observation{Channel: chatU1, Position: syncpoint.Position{Epoch: "other", Seq: 3}})
	if st.Status != syncpoint.StatusReset {
		t.Fatalf("another epoch: status %s, want reset", st.Status)
	}
}

func TestObserveEphemeral(t *testing.T) {
	e := newEnv(t, nil)
	ch := syncpoint.Channel{Biz: "presence", Target: u1}
	s, _ := e.observe(feed.Observation{Channel: ch, FromHead: true})
	e.msg("presence", u1, `{"here":true}`)
	waitFor(t, s)
	if got := drain(t, s, 10); len(got) != 1 {
		t.Fatalf("read %d live entries, want 1", len(got))
	}
}

func TestObserveUnknownBiz(t *testing.T) {
	e := newEnv(t, nil)
	_, _, err := e.feed.Observe(context.Background(), feed.Observation{Channel: syncpoint.Channel{Biz: "nope", Target: u1}})
	if syncpoint.Code(err) != syncpoint.CodeNotFound {
		t.Fatalf("err = %v, want not_found", err)
	}
}
