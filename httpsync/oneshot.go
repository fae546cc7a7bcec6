package httpsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/internal/jsonbody"
	"github.com/syncpoint/syncpoint/internal/jsontext"
	"github.com/syncpoint/syncpoint/wire"
)

// MaxEntities bounds the entities of one one-shot request.
const MaxEntities = 256

// SyncRequest is the body of POST /v1/sync, in the shape of TinySync.
type SyncRequest struct {
	// LastSynced is the cursor of the previous answer; absent the first
	// time, when everything retained comes.
	LastSynced string `json:"last_synced,omitempty"`
	// WriteID names the uploads, so that a resend is applied once; it is
	// required when any entity carries uploads.
	WriteID  string       `json:"write_id,omitempty"`
	Entities []SyncEntity `json:"entities,omitempty"`
	// Limit bounds the changes of the answer: DefaultLimit when absent,
	// at most MaxLimit.
	Limit int `json:"limit,omitempty"`
	// Wait, such as "25s", holds an answer with nothing new until
	// something arrives or the wait passes (capped by the server).
	Wait string `json:"wait,omitempty"`
	// Positions, for a client that keeps its positions itself as the
	// socket's does, are where the device stands; they win over the
	// cursor's for the channels they name.
	Positions []SyncPosition `json:"positions,omitempty"`
	// Format "entries" answers each channel's changes as the entries a
	// socket push carries, every version in seq order, in Entries;
	// "records" (the default) answers flat records.
	Format string `json:"format,omitempty"`
}

// SyncPosition is a device's position in one channel.
type SyncPosition struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
}

// The formats of a one-shot answer.
const (
	FormatRecords = "records"
	FormatEntries = "entries"
)

// SyncEntity is one biz (and scope) of a request: its uploads, and a
// request for its changes.
type SyncEntity struct {
	Name  string `json:"name"`
	Scope *Scope `json:"scope,omitempty"`
	// Created holds {"id", ...fields}, Updated {"id", "base_seq",
	// ...fields} and Deleted {"id", "base_seq"}.
	Created []json.RawMessage `json:"created,omitempty"`
	Updated []json.RawMessage `json:"updated,omitempty"`
	Deleted []json.RawMessage `json:"deleted,omitempty"`
}

// Scope names an entity's target: one of its fields is set, or none for
// the biz's default target for this device (its user, its device, or
// global; a group biz without one means every group the token grants).
type Scope struct {
	User   string `json:"user,omitempty"`
	Group  string `json:"group,omitempty"`
	Device string `json:"device,omitempty"`
	Global bool   `json:"global,omitempty"`
}

// SyncResponse is the answer of POST /v1/sync.
type SyncResponse struct {
	LastSynced string `json:"last_synced"`
	// More means changes are left: call again with LastSynced at once.
	More     bool               `json:"more"`
	Entities []SyncEntityResult `json:"entities"`
}

// SyncEntityResult is one channel of an answer.
type SyncEntityResult struct {
	Name    string `json:"name"`
	Scope   Scope  `json:"scope"`
	Channel string `json:"channel"`
	// Status is ok, reset (drop what is held of the channel: its history
	// was replaced, and the changes are the new history from its start)
	// or gap (changes after the cursor expired or were trimmed; the
	// changes resume at the first one kept).
	Status string `json:"status,omitempty"`
	// Position is where the device stands in the channel once it applies
	// this answer; FirstSeq and LastSeq are the channel's retained range.
	Position syncpoint.Position `json:"position"`
	FirstSeq uint64             `json:"first_seq"`
	LastSeq  uint64             `json:"last_seq"`
	// Created and Updated hold records as {"id", "seq", ...fields},
	// Deleted {"id", "seq"}: the newest version of each record changed
	// since the cursor. Messages hold the channel's messages in order.
	Created  []json.RawMessage `json:"created"`
	Updated  []json.RawMessage `json:"updated"`
	Deleted  []json.RawMessage `json:"deleted"`
	Messages []Message         `json:"messages"`
	Saved    []Saved           `json:"saved"`
	Errors   []RecordError     `json:"errors"`
	// Entries holds the changes instead of the lists above with format
	// "entries": each as a socket push carries it.
	Entries []json.RawMessage `json:"entries,omitempty"`
}

// Message is a msg entry of a channel.
type Message struct {
	Seq       uint64          `json:"seq"`
	Key       string          `json:"key,omitempty"`
	Data      json.RawMessage `json:"data"`
	CreatedAt time.Time       `json:"created_at"`
}

// Saved is an upload that was applied as the entry Seq.
type Saved struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Overwrote bool   `json:"overwrote,omitempty"`
}

// RecordError is an upload that was refused; Current is the server's
// record on a conflict, flat like the records of Created.
type RecordError struct {
	ID      string          `json:"id"`
	Field   string          `json:"field,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Current json.RawMessage `json:"current,omitempty"`
}

// target is the scope's target; ok is false for no scope.
func (s *Scope) target() (syncpoint.Target, bool, error) {
	if s == nil {
		return syncpoint.Target{}, false, nil
	}
	var ts []syncpoint.Target
	if s.User != "" {
		ts = append(ts, syncpoint.UserTarget(s.User))
	}
	if s.Group != "" {
		ts = append(ts, syncpoint.GroupTarget(s.Group))
	}
	if s.Device != "" {
		ts = append(ts, syncpoint.DeviceTarget(s.Device))
	}
	if s.Global {
		ts = append(ts, syncpoint.GlobalTarget())
	}
	switch len(ts) {
	case 0:
		return syncpoint.Target{}, false, nil
	case 1:
		return ts[0], true, ts[0].Validate()
	}
	return syncpoint.Target{}, false, syncpoint.Errorf(syncpoint.CodeInvalid, "a scope names one of user, group, device or global")
}

func scopeOf(t syncpoint.Target) Scope {
	switch t.Kind {
	case syncpoint.TargetUser:
		return Scope{User: t.ID}
	case syncpoint.TargetGroup:
		return Scope{Group: t.ID}
	case syncpoint.TargetDevice:
		return Scope{Device: t.ID}
	}
	return Scope{Global: true}
}

// waitOf parses a request's wait, capped at the server's most.
func (h *Handler) waitOf(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, syncpoint.Errorf(syncpoint.CodeInvalid, "wait %q: want a duration of 0 or more, such as \"25s\"", clip(s))
	}
	return min(d, h.cfg.MaxWait), nil
}

// oneShot is one request of POST /v1/sync as it is checked and resolved.
type oneShot struct {
	req     SyncRequest
	limit   int
	wait    time.Duration
	entries bool // format "entries"
	cursor  []position
	write   *wire.Write
	bizzes  []string
	scoped  map[syncpoint.Channel]bool // channels an entity named by scope
	wholeOf map[string]bool            // bizzes an entity named without a scope
}

// parseSync checks a request body; nothing is applied yet.
func (h *Handler) parseSync(ctx context.Context, c *caller, body []byte) (*oneShot, error) {
	o := &oneShot{scoped: make(map[syncpoint.Channel]bool), wholeOf: make(map[string]bool)}
	if len(jsontext.Trim(body)) > 0 {
		if err := jsonbody.Decode(body, &o.req); err != nil {
			return nil, err
		}
	}
	r := &o.req
	switch {
	case r.Limit == 0:
		o.limit = DefaultLimit
	case r.Limit < 0 || r.Limit > MaxLimit:
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "limit %d: want 1 to %d", r.Limit, MaxLimit)
	default:
		o.limit = r.Limit
	}
	var err error
	if o.wait, err = h.waitOf(r.Wait); err != nil {
		return nil, err
	}
	switch r.Format {
	case "", FormatRecords:
	case FormatEntries:
		o.entries = true
	default:
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "format %q: want %q or %q", clip(r.Format), FormatRecords, FormatEntries)
	}
	if len(r.Positions) > MaxCursorChannels {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "positions: %d given; at most %d", len(r.Positions), MaxCursorChannels)
	}
	if len(r.Entities) > MaxEntities {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "entities: %d given; a request takes at most %d", len(r.Entities), MaxEntities)
	}
	if r.LastSynced != "" {
		key, err := h.key(ctx)
		if err != nil {
			return nil, err
		}
		if o.cursor, err = decodeCursor(key, c.id.DeviceID, r.LastSynced); err != nil {
			return nil, err
		}
	}
	for i, p := range r.Positions {
		ch, err := syncpoint.ParseChannel(p.Channel)
		if err != nil {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "positions[%d].channel: %s", i, syncpoint.Message(err))
		}
		if len(p.Epoch) > maxEpochLen {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "positions[%d].epoch: at most %d bytes", i, maxEpochLen)
		}
		pos := position{Channel: ch, Position: syncpoint.Position{Epoch: p.Epoch, Seq: p.Seq}}
		if j := slices.IndexFunc(o.cursor, func(q position) bool { return q.Channel == ch }); j >= 0 {
			o.cursor[j] = pos
		} else {
			o.cursor = append(o.cursor, pos)
		}
	}
	w := &wire.Write{WriteID: r.WriteID}
	for i, en := range r.Entities {
		at := fmt.Sprintf("entities[%d]", i)
		b, ok := h.reg.Get(en.Name)
		if !ok {
			return nil, syncpoint.Errorf(syncpoint.CodeForbidden, "%s: biz %q does not exist", at, clip(en.Name))
		}
		if !b.Persistent {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "%s: biz %q is not persistent: its entries are only for devices online when they are published", at, b.Name)
		}
		t, scoped, err := en.Scope.target()
		if err != nil {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "%s.scope: %s", at, syncpoint.Message(err))
		}
		cs := wire.ChangeSet{Biz: b.Name}
		if scoped {
			ch := syncpoint.Channel{Biz: b.Name, Target: t}
			if !c.id.CanRead(b, ch) {
				return nil, syncpoint.Errorf(syncpoint.CodeForbidden, "%s: this token does not read %s", at, ch)
			}
			o.scoped[ch] = true
			cs.Target = t.String()
		} else {
			o.wholeOf[b.Name] = true
		}
		if !slices.Contains(o.bizzes, b.Name) {
			o.bizzes = append(o.bizzes, b.Name)
		}
		for _, l := range []struct {
			name string
			recs []json.RawMessage
			into *[]wire.Record
			data bool
		}{{"created", en.Created, &cs.Created, true}, {"updated", en.Updated, &cs.Updated, true}, {"deleted", en.Deleted, &cs.Deleted, false}} {
			for j, raw := range l.recs {
				u, err := splitUpload(raw, fmt.Sprintf("%s.%s[%d]", at, l.name, j), l.data)
				if err != nil {
					return nil, err
				}
				*l.into = append(*l.into, wire.Record{ID: u.ID, BaseSeq: u.BaseSeq, Data: u.Data})
			}
		}
		if len(cs.Created)+len(cs.Updated)+len(cs.Deleted) > 0 {
			w.Changes = append(w.Changes, cs)
		}
	}
	if len(w.Changes) > 0 {
		if r.WriteID == "" {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "write_id is required with uploads, so that a resend is applied once")
		}
		o.write = w
	}
	return o, nil
}

// oneShotSink gathers an answer's entries.
type oneShotSink struct {
	limit, maxBytes, bytes int
	entries                []syncpoint.Entry
}

func (k *oneShotSink) Room() int {
	if k.bytes >= k.maxBytes && len(k.entries) > 0 {
		return 0
	}
	return k.limit - len(k.entries)
}

func (k *oneShotSink) Add(c *feed.Cursor, e *syncpoint.Entry) {
	if c.Off {
		return
	}
	k.entries = append(k.entries, *e)
	k.entries[len(k.entries)-1].Epoch = c.Epoch
	k.bytes += e.Size()
}

func (k *oneShotSink) Moved(*feed.Cursor) {}

func (h *Handler) handleSync(w http.ResponseWriter, r *http.Request) error {
	noStore(w)
	c, err := h.authenticate(r)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	resp, err := h.oneShot(r.Context(), c, body)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// oneShot runs a one-shot sync: the uploads first, through the record
// path, then the changes after the cursor.
func (h *Handler) oneShot(ctx context.Context, c *caller, body []byte) (*SyncResponse, error) {
	o, err := h.parseSync(ctx, c, body)
	if err != nil {
		return nil, err
	}
	if err := h.bind(ctx, c); err != nil {
		return nil, err
	}
	var res *wire.WriteResult
	if o.write != nil {
		if res = h.write(ctx, c, o.write); res.Error != nil {
			return nil, res.Error.Unwrap()
		}
	}

	positions := make(map[syncpoint.Channel]syncpoint.Position, len(o.cursor))
	for _, p := range o.cursor {
		positions[p.Channel] = p.Position
	}
	s, err := h.cfg.Feed.Resolve(ctx, feed.Request{
		Claims: c.claims, DeviceID: c.id.DeviceID, Platform: c.id.Platform, AppVersion: c.id.AppVersion,
		Bizzes: o.bizzes, AllBizzes: len(o.bizzes) == 0, Positions: positions, Watch: o.wait > 0,
	})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	statuses, err := s.Start(ctx)
	if err != nil {
		return nil, err
	}
	status := make(map[syncpoint.Channel]feed.Status, len(statuses))
	changed := false
	for _, st := range statuses {
		cur := st.Cursor
		if cur.Ephemeral || !o.wholeOf[cur.Channel.Biz] && len(o.bizzes) > 0 && !o.scoped[cur.Channel] {
			cur.Off = true
			continue
		}
		status[cur.Channel] = st
		changed = changed || st.Status != syncpoint.StatusOK
	}

	k := &oneShotSink{limit: o.limit, maxBytes: h.cfg.MaxPageBytes, entries: make([]syncpoint.Entry, 0, o.limit)}
	if err := h.readAll(ctx, s, k, status); err != nil {
		return nil, err
	}
	if o.wait > 0 && len(k.entries) == 0 && !changed && o.write == nil {
		wait := o.wait
		if exp := s.Expires(); !exp.IsZero() {
			// A wait ends with the token, as a socket session does.
			wait = min(wait, exp.Sub(h.clock.Now()))
		}
		if err := h.longPoll(ctx, s, k, status, wait); err != nil {
			return nil, err
		}
	}

	key, err := h.key(ctx)
	if err != nil {
		return nil, err
	}
	h.metrics.changes.Add(float64(len(k.entries)))
	return h.answer(key, c, o, s, k.entries, status, res), nil
}

// readAll reads a page into k. A channel whose history changes under the
// read is checked again: its status becomes reset or gap, and it goes on
// from where that puts it.
func (h *Handler) readAll(ctx context.Context, s *feed.Stream, k *oneShotSink, status map[syncpoint.Channel]feed.Status) error {
	for range len(s.Cursors()) + 1 {
		err := s.Read(ctx, k)
		var ce *feed.ChannelError
		if !errors.As(err, &ce) {
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
			if k.Room() <= 0 || !behind(s) {
				return nil
			}
			continue
		}
		// What was taken of the channel in this page belongs to the old
		// history; the new one starts over.
		k.entries = slices.DeleteFunc(k.entries, func(e syncpoint.Entry) bool { return e.Channel == ce.Cursor.Channel })
		st, err := s.Recheck(ctx, ce.Cursor)
		if err != nil {
			return err
		}
		status[ce.Cursor.Channel] = st
	}
	return nil
}

func behind(s *feed.Stream) bool {
	for _, c := range s.Cursors() {
		if c.Behind && !c.Off {
			return true
		}
	}
	return false
}

// longPoll waits for something new, up to wait, and reads it.
func (h *Handler) longPoll(ctx context.Context, s *feed.Stream, k *oneShotSink, status map[syncpoint.Channel]feed.Status, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	h.metrics.longPolls.Inc()
	defer h.metrics.longPolls.Dec()
	for len(k.entries) == 0 {
		if err := s.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // the wait passed: an answer with nothing new
			}
			return err
		}
		if err := h.readAll(context.WithoutCancel(ctx), s, k, status); err != nil {
			return err
		}
		for _, st := range status {
			if st.Status != syncpoint.StatusOK {
				return nil
			}
		}
	}
	return nil
}

// answer builds the response: per channel of the stream, its status, the
// newest version of each record it changed, its messages, and what became
// of the uploads to it.
func (h *Handler) answer(key []byte, c *caller, o *oneShot, s *feed.Stream, entries []syncpoint.Entry, status map[syncpoint.Channel]feed.Status, res *wire.WriteResult) *SyncResponse {
	resp := &SyncResponse{Entities: []SyncEntityResult{}}
	byChan := make(map[string]int)
	add := func(ch syncpoint.Channel, st string) *SyncEntityResult {
		name := ch.String()
		if i, ok := byChan[name]; ok {
			return &resp.Entities[i]
		}
		byChan[name] = len(resp.Entities)
		resp.Entities = append(resp.Entities, SyncEntityResult{
			Name: ch.Biz, Scope: scopeOf(ch.Target), Channel: name, Status: st,
			Created: []json.RawMessage{}, Updated: []json.RawMessage{}, Deleted: []json.RawMessage{},
			Messages: []Message{}, Saved: []Saved{}, Errors: []RecordError{},
		})
		return &resp.Entities[len(resp.Entities)-1]
	}
	var cursor []position
	seen := make(map[syncpoint.Channel]bool)
	for _, cur := range s.Cursors() {
		if cur.Ephemeral || cur.Off {
			continue
		}
		seen[cur.Channel] = true
		cursor = append(cursor, position{Channel: cur.Channel, Position: cur.Position()})
		st := status[cur.Channel]
		en := add(cur.Channel, string(st.Status))
		en.Position, en.FirstSeq, en.LastSeq = cur.Position(), st.Info.FirstSeq, max(cur.Last, st.Info.LastSeq)
		resp.More = resp.More || cur.Behind
	}
	// Channels of the cursor that this request did not ask for keep their
	// place for the next request that does.
	for _, p := range o.cursor {
		if !seen[p.Channel] {
			cursor = append(cursor, p)
		}
	}
	resp.LastSynced = encodeCursor(key, c.id.DeviceID, cursor)

	// The newest entry of each key, in seq order; messages all, in order.
	last := make(map[string]int)
	for i := range entries {
		e := &entries[i]
		if e.Op != syncpoint.OpMsg {
			last[e.Channel.String()+"\x00"+e.Key] = i
		}
	}
	mine := "device:" + c.id.DeviceID
	for i := range entries {
		e := &entries[i]
		en := add(e.Channel, "")
		if o.entries {
			b, err := wire.AppendEntryJSON(nil, &wire.Entry{Channel: en.Channel, Seq: e.Seq, Op: string(e.Op), Key: e.Key, Data: e.Data,
				CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt, Origin: e.Origin})
			if err != nil {
				h.log.Error("httpsync: an entry does not encode", "channel", en.Channel, "seq", e.Seq, "err", err)
				continue
			}
			en.Entries = append(en.Entries, b)
			continue
		}
		if e.Op == syncpoint.OpMsg {
			en.Messages = append(en.Messages, Message{Seq: e.Seq, Key: e.Key, Data: msgData(e.Data), CreatedAt: e.CreatedAt})
			continue
		}
		if last[e.Channel.String()+"\x00"+e.Key] != i {
			continue
		}
		switch {
		case e.Op == syncpoint.OpDelete:
			en.Deleted = append(en.Deleted, appendRecord(nil, e.Key, e.Seq, true, nil))
		case e.Origin == mine:
			// The device holds what it wrote; it comes back because a
			// merge may have changed it.
			en.Updated = append(en.Updated, appendRecord(nil, e.Key, e.Seq, true, e.Data))
		default:
			en.Created = append(en.Created, appendRecord(nil, e.Key, e.Seq, true, e.Data))
		}
	}
	if res != nil {
		for _, sv := range res.Saved {
			if ch, err := syncpoint.ParseChannel(sv.Channel); err == nil {
				en := add(ch, "")
				en.Saved = append(en.Saved, Saved{ID: sv.ID, Seq: sv.Seq, Overwrote: sv.Overwrote})
			}
		}
		for _, re := range res.Errors {
			e := RecordError{ID: re.ID, Field: re.Field, Code: re.Code, Message: re.Message}
			if cur := re.Current; cur != nil && cur.Op == string(syncpoint.OpPut) {
				e.Current = appendRecord(nil, cur.Key, cur.Seq, true, cur.Data)
			} else if cur != nil {
				e.Current = appendRecord(nil, cur.Key, cur.Seq, true, nil)
			}
			ch, err := syncpoint.ParseChannel(re.Channel)
			if err != nil {
				// A change set the server could not resolve to a channel:
				// reported under the request's entity of the biz.
				ch = h.entityChannel(o, re)
			}
			en := add(ch, "")
			en.Errors = append(en.Errors, e)
		}
	}
	return resp
}

// entityChannel is where a record error without a channel is reported:
// the first uploading entity's biz, with its default target.
func (h *Handler) entityChannel(o *oneShot, re wire.RecordError) syncpoint.Channel {
	for _, cs := range o.write.Changes {
		for _, l := range [][]wire.Record{cs.Created, cs.Updated, cs.Deleted} {
			for _, r := range l {
				if r.ID == re.ID {
					t, err := syncpoint.ParseTarget(cs.Target)
					if err != nil {
						t = syncpoint.GlobalTarget()
					}
					return syncpoint.Channel{Biz: cs.Biz, Target: t}
				}
			}
		}
	}
	return syncpoint.Channel{Biz: o.write.Changes[0].Biz, Target: syncpoint.GlobalTarget()}
}

func msgData(d json.RawMessage) json.RawMessage {
	if len(d) == 0 {
		return json.RawMessage("null")
	}
	return d
}
