package sse

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// Tail serves an operator's live tail of one channel,
// GET /v1/channels/{biz}/{target}/events: the business API checks the API
// key and the channel, then hands the request here. The events are those
// of a device's stream (entry, reset, gap, close, heartbeats), but the
// stream reads for no device: every entry that has not expired comes,
// whatever its conditions, and nothing is stored. Each entry's id is the
// channel's position after it, "<epoch>:<seq>", which Last-Event-ID (or
// last_event_id) resumes after; after=N starts after seq N of the current
// epoch; with neither, only entries appended from now on come.
//
// An error before the stream starts is returned, for the API to answer in
// its own shape; once it started, Tail returns nil.
func (h *Handler) Tail(w http.ResponseWriter, r *http.Request, ch syncpoint.Channel) error {
	select {
	case <-h.closing:
		return syncpoint.Errorf(syncpoint.CodeUnavailable, "the server is shutting down")
	default:
	}
	o, err := tailStart(r, ch)
	if err != nil {
		return err
	}
	s, status, err := h.cfg.Feed.Observe(r.Context(), o)
	if err != nil {
		return err
	}
	defer s.Close()
	st := &stream{h: h, s: s, tail: true, statuses: []feed.Status{status}, resumed: !o.FromHead, pos: make([]syncpoint.Position, 1)}
	if !status.Cursor.Ephemeral {
		st.pos[0] = syncpoint.Position{Epoch: status.Info.Epoch, Seq: status.From}
	}
	h.tails.Inc()
	defer h.tails.Dec()
	w.Header().Set("Cache-Control", "no-store")
	st.run(w, r)
	return nil
}

// tailStart reads where a tail starts: Last-Event-ID, else after, else the
// channel's head.
func tailStart(r *http.Request, ch syncpoint.Channel) (feed.Observation, error) {
	o := feed.Observation{Channel: ch}
	if id := param(r, "Last-Event-ID", "last_event_id"); id != "" {
		p, err := parseTailID(id)
		if err != nil {
			return o, err
		}
		o.Position = p
		return o, nil
	}
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return o, syncpoint.FieldErrorf(syncpoint.CodeInvalid, "after", "after %q: want a non-negative integer", v)
		}
		o.Position = syncpoint.Position{Seq: n}
		return o, nil
	}
	o.FromHead = true
	return o, nil
}

// appendTailID appends a tail event's id line: the channel's position.
func appendTailID(b []byte, p syncpoint.Position) []byte {
	b = append(b, "id: "...)
	b = append(b, p.Epoch...)
	b = append(b, ':')
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '\n')
}

// parseTailID reads "<epoch>:<seq>" back.
func parseTailID(id string) (syncpoint.Position, error) {
	epoch, seq, ok := strings.Cut(id, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || epoch == "" || err != nil || strings.ContainsAny(epoch, " \r\n") {
		return syncpoint.Position{}, syncpoint.Errorf(syncpoint.CodeInvalid, "Last-Event-ID %q: want <epoch>:<seq>, the id of a tail event", id)
	}
	return syncpoint.Position{Epoch: epoch, Seq: n}, nil
}
