package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint/internal/history"
	"github.com/syncpoint/syncpoint/wire"
)

// sseReader reads GET /v1/events as a browser's EventSource would, and
// resumes after each cut with the id of the last event it got. What it
// gets goes straight into the history: the reader's app state is that
// history and its last event id, changed together.
type sseReader struct {
	e        *env
	id       string
	base     string
	token    string
	bizzes   string
	channels []string
	idle     time.Duration // no byte for this long ends a stream
	http     *http.Client

	mu       sync.Mutex
	lastID   string
	pos      map[string]uint64
	streams  atomic.Int64
	received atomic.Int64
}

func (e *env) sseReader(id, user string, groups []string, base string, bizzes ...string) *sseReader {
	tr := &http.Transport{DisableCompression: true}
	e.t.Cleanup(tr.CloseIdleConnections)
	r := &sseReader{e: e, id: id, base: base, token: e.token(user, groups...), bizzes: strings.Join(bizzes, ","),
		channels: e.channelsOf(user, groups, bizzes...), idle: 4 * time.Second, http: &http.Client{Transport: tr}, pos: make(map[string]uint64)}
	e.addChannels(r.channels...)
	e.h.Expect(id, r.channels...)
	return r
}

// run opens streams one after another until ctx is done.
func (r *sseReader) run(ctx context.Context) {
	for ctx.Err() == nil {
		r.stream(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stream reads one stream until it ends, is cut, or is idle too long.
func (r *sseReader) stream(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", r.base+"/v1/events?biz="+url.QueryEscape(r.bizzes), nil)
	if err != nil {
		r.e.t.Errorf("sse %s: %v", r.id, err)
		return
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("X-Device-Id", r.id)
	r.mu.Lock()
	if r.lastID != "" {
		req.Header.Set("Last-Event-ID", r.lastID)
	}
	r.mu.Unlock()
	// A stream that goes silent (a half-open connection) is given up
	// after idle, as a client watching the heartbeats would.
	watchdog := time.AfterFunc(r.idle, cancel)
	defer watchdog.Stop()
	resp, err := r.http.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode/100 == 4 {
			r.e.t.Errorf("sse %s: HTTP %d", r.id, resp.StatusCode)
		}
		return
	}
	r.streams.Add(1)
	er := wire.NewEventReader(resp.Body, 0)
	for {
		watchdog.Reset(r.idle)
		ev, err := er.Next()
		if err != nil {
			return
		}
		if ev.Comment {
			continue
		}
		if !r.apply(ev) {
			return
		}
	}
}

// apply takes one event; false ends the stream.
func (r *sseReader) apply(ev wire.Event) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch ev.Type {
	case wire.EventEntry:
		en, err := wire.DecodeEntryJSON(ev.Data)
		if err != nil {
			r.e.t.Errorf("sse %s: entry %s: %v", r.id, ev.Data, err)
			return false
		}
		r.e.h.Apply(r.id, en.Channel, history.Entry{Seq: en.Seq, Op: en.Op, Key: en.Key, Digest: history.Digest(en.Data)})
		r.pos[en.Channel] = en.Seq
		r.received.Add(1)
	case wire.EventReset, wire.EventGap:
		var st struct {
			Channel  string `json:"channel"`
			FirstSeq uint64 `json:"first_seq"`
			LastSeq  uint64 `json:"last_seq"`
		}
		if err := json.Unmarshal(ev.Data, &st); err != nil {
			r.e.t.Errorf("sse %s: %s %s: %v", r.id, ev.Type, ev.Data, err)
			return false
		}
		if ev.Type == wire.EventReset {
			r.e.h.Reset(r.id, st.Channel)
			r.pos[st.Channel] = 0
		} else {
			r.e.h.Gap(r.id, st.Channel, st.FirstSeq)
			r.pos[st.Channel] = max(r.pos[st.Channel], st.FirstSeq-1)
		}
	case wire.EventClose:
		return false
	default:
		r.e.t.Errorf("sse %s: unknown event %q", r.id, ev.Type)
		return false
	}
	r.lastID = ev.ID
	return true
}

func (r *sseReader) name() string         { return r.id }
func (r *sseReader) pending() int         { return 0 }
func (r *sseReader) subscribed() []string { return r.channels }
func (r *sseReader) positions() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]uint64, len(r.pos))
	for k, v := range r.pos {
		out[k] = v
	}
	return out
}

func (r *sseReader) String() string {
	return fmt.Sprintf("%s: %d streams, %d entries", r.id, r.streams.Load(), r.received.Load())
}
