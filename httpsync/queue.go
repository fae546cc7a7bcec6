package httpsync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// The event types of a queue item.
const (
	eventCreated = "created"
	eventUpdated = "updated"
	eventDeleted = "deleted"
	eventMsg     = "msg"
)

// started is a session start's outcome; Session is nil when there was
// nothing to deliver (204).
type started struct {
	Session  *sessionState
	Statuses []feed.Status
	Total    uint64 // at most this many items
}

// startSession opens a queue session for the caller's device over bizzes
// (every persistent biz the token reads when all), from the device's sync
// points. It supersedes the device's open session.
func (h *Handler) startSession(ctx context.Context, c *caller, bizzes []string, all bool) (*started, error) {
	for _, name := range bizzes {
		if b, ok := h.reg.Get(name); ok && !b.Persistent {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "biz %q is not persistent: its entries are only for devices online when they are published, and a queue holds none", name)
		}
	}
	unlock, err := h.devices.Lock(ctx, c.id.DeviceID)
	if err != nil {
		return nil, err
	}
	defer unlock()
	positions, err := h.ackedPositions(ctx, c.id.DeviceID)
	if err != nil {
		return nil, err
	}
	s, err := h.cfg.Feed.Resolve(ctx, feed.Request{
		Claims: c.claims, DeviceID: c.id.DeviceID, Platform: c.id.Platform, AppVersion: c.id.AppVersion,
		Bizzes: bizzes, AllBizzes: all, Positions: positions, FromStored: true,
	})
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			s.Close()
		}
	}()
	statuses, err := s.Start(ctx)
	if err != nil {
		return nil, err
	}
	id := s.Identity()
	st := &sessionState{Device: id.DeviceID, User: id.UserID, Token: c.token, Platform: id.Platform, AppVersion: id.AppVersion}
	out := &started{}
	changed := false
	for _, status := range statuses {
		cur := status.Cursor
		if cur.Ephemeral {
			cur.Off = true
			continue
		}
		out.Statuses = append(out.Statuses, status)
		if !slices.Contains(st.Bizzes, cur.Channel.Biz) {
			st.Bizzes = append(st.Bizzes, cur.Channel.Biz)
		}
		changed = changed || status.Status != syncpoint.StatusOK
		r := sessionRange{Channel: cur.Channel, Epoch: status.Info.Epoch, From: status.From, Read: status.From, End: status.Info.LastSeq}
		r.Done = r.End <= r.From
		st.Channels = append(st.Channels, r)
		out.Total += r.left()
	}
	if !changed && out.Total > 0 {
		// The bound counts entries the device may not get (conditions,
		// expiry); a look at the first page tells an empty session apart.
		found, err := h.probe(ctx, s, st)
		if err != nil {
			return nil, err
		}
		if !found {
			out.Total = 0
		}
	}

	old, err := h.currentSession(ctx, id.DeviceID)
	if err != nil {
		return nil, err
	}
	now := h.clock.Now()
	if out.Total == 0 && !changed {
		if err := h.setCurrentSession(ctx, id.DeviceID, noSession, now.Add(h.cfg.SessionIdle)); err != nil {
			return nil, err
		}
		h.forget(old, c.token)
		return out, nil
	}
	if st.ID, err = newSessionID(); err != nil {
		return nil, err
	}
	if err := h.tokens.openSession(c.token, st.ID, old, h.cfg.MaxSessionsPerToken, now.Add(h.cfg.SessionIdle), now); err != nil {
		return nil, err
	}
	st.Expires = now.Add(h.cfg.SessionIdle)
	if err := h.nameSession(ctx, st); err != nil {
		h.tokens.touchSession(c.token, st.ID, zeroTime)
		return nil, err
	}
	if err := h.saveSession(ctx, st); err != nil {
		h.tokens.touchSession(c.token, st.ID, zeroTime)
		return nil, err
	}
	h.forget(old, "")
	h.lives.put(st.ID, s, st.Version, now, h.cfg.SessionIdle)
	keep = true
	out.Session = st
	h.metrics.sessions.Inc()
	return out, nil
}

// forget drops what this node keeps of a superseded session.
func (h *Handler) forget(id, token string) {
	if id == "" || id == noSession {
		return
	}
	h.lives.drop(id)
	if token != "" {
		h.tokens.touchSession(token, id, zeroTime)
	}
}

// ackedPositions are the device's HTTP acks that are ahead of its stored
// sync points in their channel's current epoch: the batched write of a sync
// point can be lost in a crash, the ack blob cannot.
func (h *Handler) ackedPositions(ctx context.Context, device string) (map[syncpoint.Channel]syncpoint.Position, error) {
	st, err := h.loadAcks(ctx, device)
	if err != nil || len(st.Channels) == 0 {
		return nil, err
	}
	stored, err := h.storedPoints(ctx, device)
	if err != nil {
		return nil, err
	}
	out := make(map[syncpoint.Channel]syncpoint.Position)
	for _, r := range st.Channels {
		if r.Base == 0 {
			continue
		}
		sp := stored[r.Channel]
		if sp.Epoch == r.Epoch && sp.Seq >= r.Base {
			continue
		}
		info, err := h.channelInfo(ctx, r.Channel)
		if err != nil {
			return nil, err
		}
		if info.Epoch == r.Epoch {
			out[r.Channel] = syncpoint.Position{Epoch: r.Epoch, Seq: r.Base}
		}
	}
	return out, nil
}

// probe reads the session's first page and puts the stream back where it
// was. It reports whether the page held an item; when it held none and read
// every range to its end, the device's sync points move over what was read
// (nothing of it was for the device).
func (h *Handler) probe(ctx context.Context, s *feed.Stream, st *sessionState) (bool, error) {
	save := make([]feed.Cursor, len(s.Cursors()))
	for i, cur := range s.Cursors() {
		save[i] = *cur
	}
	trial := *st
	trial.Channels = slices.Clone(st.Channels)
	items, err := h.read(ctx, s, &trial, DefaultLimit)
	if err != nil {
		return false, err
	}
	for i, cur := range s.Cursors() {
		*cur = save[i]
	}
	if len(items) > 0 || trial.left() > 0 {
		return true, nil
	}
	return false, h.settle(ctx, s.Identity(), &trial)
}

// settle moves the device's sync points over what a drained session read:
// over acked items and entries that were not for the device.
func (h *Handler) settle(ctx context.Context, id syncpoint.Identity, st *sessionState) error {
	acks, err := h.loadAcks(ctx, id.DeviceID)
	if err != nil {
		return err
	}
	stored, err := h.storedPoints(ctx, id.DeviceID)
	if err != nil {
		return err
	}
	var moved []feed.ChannelPosition
	for i := range st.Channels {
		sr := &st.Channels[i]
		if sr.Epoch == "" || sr.Read <= sr.From {
			continue
		}
		r := acks.get(sr.Channel)
		r.sync(sr.Epoch, stored[sr.Channel])
		ok, err := h.advance(ctx, r, id, sr.Read)
		if err != nil {
			return err
		}
		if ok {
			moved = append(moved, feed.ChannelPosition{Channel: sr.Channel, Position: syncpoint.Position{Epoch: r.Epoch, Seq: r.Base}})
		}
	}
	if len(moved) == 0 {
		return nil
	}
	if err := h.saveAcks(ctx, id.DeviceID, acks); err != nil {
		return err
	}
	return h.confirm(ctx, id, moved)
}

// queued is one entry of a queue page, with the cursor it came through.
type queued struct {
	c *feed.Cursor
	e syncpoint.Entry
}

// rangeSink takes what a stream reads into a page, up to limit entries and
// about maxBytes, and leaves out what lies past each channel's range.
type rangeSink struct {
	limit, maxBytes, bytes int
	ends                   []uint64 // by cursor index
	over                   []bool   // the read went past the range
	items                  []queued
}

func (k *rangeSink) Room() int {
	if k.bytes >= k.maxBytes && len(k.items) > 0 {
		return 0
	}
	return k.limit - len(k.items)
}

func (k *rangeSink) Add(c *feed.Cursor, e *syncpoint.Entry) {
	if e.Seq > k.ends[c.Index] {
		k.over[c.Index] = true
		return
	}
	k.items = append(k.items, queued{c: c, e: *e})
	k.bytes += e.Size()
}

func (k *rangeSink) Moved(*feed.Cursor) {}

// read takes the next page of the session from its stream: items in seq
// order per channel, merged across channels, and moves the ranges' Read.
// It reads on while the page has room and a range has entries left, so it
// returns no items only when the session is drained. A channel whose
// history changed under the session (reset, or trimmed past Read) is done
// for this session; the next start reports its status.
func (h *Handler) read(ctx context.Context, s *feed.Stream, st *sessionState, limit int) ([]queued, error) {
	curs := s.Cursors()
	k := &rangeSink{limit: limit, maxBytes: h.cfg.MaxPageBytes, ends: make([]uint64, len(curs)), over: make([]bool, len(curs)), items: make([]queued, 0, limit)}
	ranges := make([]*sessionRange, len(curs))
	for _, cur := range curs {
		sr := st.rangeOf(cur.Channel)
		ranges[cur.Index] = sr
		if sr == nil || sr.Done || cur.Ephemeral {
			cur.Off = true
			continue
		}
		k.ends[cur.Index] = sr.End
		cur.Off = false
	}
	for {
		err := s.Read(ctx, k)
		var ce *feed.ChannelError
		switch {
		case errors.As(err, &ce):
			if sr := ranges[ce.Cursor.Index]; sr != nil {
				sr.Done = true
			}
			ce.Cursor.Off = true
		case err != nil:
			return nil, fmt.Errorf("read queue: %w", err)
		}
		behind := false
		for _, cur := range curs {
			sr := ranges[cur.Index]
			if sr == nil || sr.Done {
				continue
			}
			sr.Read = max(sr.Read, min(cur.Seq, sr.End))
			if sr.Read >= sr.End || !cur.Behind || k.over[cur.Index] {
				sr.Done = true
				cur.Off = true
				continue
			}
			behind = true
		}
		if k.Room() <= 0 || !behind {
			return k.items, nil
		}
	}
}

// page is a queue page's items, with at most how many are left.
type page struct {
	Items []queued
	Left  uint64
	keys  *ackKeys
}

// queuePage serves the next page of a session: at most limit items, none
// when it is drained.
func (h *Handler) queuePage(ctx context.Context, c *caller, id string, limit int) (*page, error) {
	if !validSessionID(id) {
		return nil, errUnknownSession
	}
	unlock, err := h.sessions.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	st, err := h.loadSession(ctx, id)
	if err != nil {
		return nil, err
	}
	// Another device's or user's session is as unknown as a made-up one.
	if st.Device != c.id.DeviceID || st.User != c.id.UserID {
		return nil, errUnknownSession
	}
	cur, err := h.currentSession(ctx, st.Device)
	if err != nil {
		return nil, err
	}
	if cur != st.ID {
		h.lives.drop(id)
		return nil, syncpoint.Errorf(syncpoint.CodeSessionSuperseded, "a newer start of this device replaced this session; use the newer one")
	}
	for _, sr := range st.Channels {
		if b, ok := h.reg.Get(sr.Channel.Biz); ok && !c.id.CanRead(b, sr.Channel) {
			return nil, syncpoint.Errorf(syncpoint.CodeForbidden, "this token no longer reads %s; start a new session", sr.Channel)
		}
	}
	if err := h.bind(ctx, c); err != nil {
		return nil, err
	}
	s, err := h.stream(ctx, c, st)
	if err != nil {
		return nil, err
	}
	items, err := h.read(ctx, s, st, limit)
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := h.keep(ctx, s, st, len(items) == 0); err != nil {
		s.Close()
		return nil, err
	}
	h.tokens.touchSession(st.Token, st.ID, st.Expires)
	h.lives.put(st.ID, s, st.Version, h.clock.Now(), h.cfg.SessionIdle)
	if len(items) == 0 {
		return &page{}, nil
	}
	key, err := h.key(ctx)
	if err != nil {
		return nil, err
	}
	h.metrics.items.Add(float64(len(items)))
	return &page{Items: items, Left: st.left(), keys: newAckKeys(key, st.Device)}, nil
}

// keep stores where a page left the session, and, once it is drained,
// settles the device's sync points. It holds the device's lock, which
// starts and acks share, so a start that superseded the session while the
// page was read is seen, and never undone.
func (h *Handler) keep(ctx context.Context, s *feed.Stream, st *sessionState, drained bool) error {
	unlock, err := h.devices.Lock(ctx, st.Device)
	if err != nil {
		return err
	}
	defer unlock()
	cur, err := h.currentSession(ctx, st.Device)
	if err != nil {
		return err
	}
	if cur != st.ID {
		return syncpoint.Errorf(syncpoint.CodeSessionSuperseded, "a newer start of this device replaced this session; use the newer one")
	}
	st.Expires = h.clock.Now().Add(h.cfg.SessionIdle)
	if err := h.nameSession(ctx, st); err != nil {
		return err
	}
	if err := h.saveSession(ctx, st); err != nil {
		return err
	}
	if drained {
		return h.settle(ctx, s.Identity(), st)
	}
	return nil
}

// stream returns the stream a session's pages read through: the one this
// node kept, or a new one placed where the stored state says.
func (h *Handler) stream(ctx context.Context, c *caller, st *sessionState) (*feed.Stream, error) {
	if s := h.lives.take(st.ID, st.Version); s != nil {
		return s, nil
	}
	var bizzes []string
	for _, b := range st.Bizzes {
		if _, ok := h.reg.Get(b); ok {
			bizzes = append(bizzes, b)
		}
	}
	s, err := h.cfg.Feed.Resolve(ctx, feed.Request{
		Claims: c.claims, DeviceID: st.Device, Platform: st.Platform, AppVersion: st.AppVersion, Bizzes: bizzes,
	})
	if err != nil {
		return nil, err
	}
	for _, cur := range s.Cursors() {
		sr := st.rangeOf(cur.Channel)
		if sr == nil || sr.Done || cur.Ephemeral {
			cur.Off = true
			continue
		}
		cur.Epoch, cur.Seq, cur.Last, cur.Behind = sr.Epoch, sr.Read, sr.End, true
	}
	for i := range st.Channels {
		if s.Cursor(st.Channels[i].Channel) == nil {
			st.Channels[i].Done = true // its biz was deleted
		}
	}
	return s, nil
}

// eventOf is a queue item's event type. A put is "created" unless the page
// already carried a version of its key: the store keeps only what the
// retention, trimming and compaction leave, so the server cannot always
// tell whether the device holds an older version, and "created" is the one
// a client following the protocol applies correctly either way (it must
// take a created record it holds already, as redelivery repeats items).
func eventOf(e *syncpoint.Entry, seen map[string]bool) string {
	switch e.Op {
	case syncpoint.OpDelete:
		return eventDeleted
	case syncpoint.OpPut:
		k := e.Channel.String() + "\x00" + e.Key
		if seen[k] {
			return eventUpdated
		}
		seen[k] = true
		return eventCreated
	}
	return eventMsg
}

// itemData is a queue item's data: the record, flat, for a put; its id
// only for a delete; a message's data as it was published.
func itemData(dst []byte, e *syncpoint.Entry) []byte {
	switch e.Op {
	case syncpoint.OpPut:
		return appendRecord(dst, e.Key, 0, false, e.Data)
	case syncpoint.OpDelete:
		return appendRecord(dst, e.Key, 0, false, nil)
	}
	if len(e.Data) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, e.Data...)
}
