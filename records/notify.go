package records

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Notice tells a biz's NotifyURL of one applied upload. The same change can
// be told more than once; a receiver dedupes by (Channel, Seq).
type Notice struct {
	Channel   string          `json:"channel"` // where the change was appended
	Seq       uint64          `json:"seq"`     // its entry's seq there
	Op        string          `json:"op"`      // put or delete
	Change    string          `json:"change"`  // create, update or delete
	ID        string          `json:"id"`
	Data      json.RawMessage `json:"data,omitempty"` // put: the whole record as saved
	Overwrote bool            `json:"overwrote,omitempty"`
	DeviceID  string          `json:"device_id"`
	UserID    string          `json:"user_id"`
	WriteID   string          `json:"write_id"`
	CreatedAt int64           `json:"created_at"` // unix milliseconds
}

// NoticeBatch is the body POSTed to a NotifyURL: notices of one biz, in the
// order they were applied.
type NoticeBatch struct {
	Biz     string            `json:"biz"`
	Notices []json.RawMessage `json:"notices"` // each a Notice
}

// noticeChannel is the log of biz's upload notices.
func noticeChannel(biz string) syncpoint.Channel {
	return syncpoint.Channel{Biz: NoticeBiz, Target: syncpoint.GroupTarget(biz)}
}

// queueNotices appends a notice of every saved change of a biz with a
// NotifyURL to that biz's notice log. A notice's idempotency key is its
// change's (target, seq), so a resent write queues nothing twice; a crash
// before this point is made good by that resend, which the device makes
// until it gets a result.
func (s *Service) queueNotices(ctx context.Context, id syncpoint.Identity, writeID string, all []*change, now time.Time) error {
	var reqs []syncpoint.AppendRequest
	for _, c := range all {
		if c.state != stateSaved || !c.appended || c.biz.Webhook == nil || c.biz.Webhook.NotifyURL == "" {
			continue
		}
		n := Notice{Channel: c.chName, Seq: c.seq, Op: string(syncpoint.OpPut), Change: c.kind.String(), ID: c.rec.ID, Data: c.data,
			Overwrote: c.overwrote, DeviceID: id.DeviceID, UserID: id.UserID, WriteID: writeID, CreatedAt: now.UnixMilli()}
		if c.cur != nil && c.cur.Seq == c.seq {
			n.Data = c.cur.Data // applied by an earlier try
		}
		if c.kind == kindDelete {
			n.Op, n.Data = string(syncpoint.OpDelete), nil
		}
		b, err := json.Marshal(n)
		if err != nil {
			return fmt.Errorf("queue notice: %w", err)
		}
		reqs = append(reqs, syncpoint.AppendRequest{
			Entry: syncpoint.Entry{
				Channel:        noticeChannel(c.biz.Name),
				Op:             syncpoint.OpMsg,
				Data:           b,
				CreatedAt:      now,
				ExpiresAt:      now.Add(s.cfg.NoticeRetention),
				Origin:         "device:" + id.DeviceID,
				IdempotencyKey: c.ch.Target.String() + "/" + strconv.FormatUint(c.seq, 10),
			},
			Policy:      syncpoint.Policy{Retention: s.cfg.NoticeRetention},
			ContentHash: noticeHash,
		})
	}
	if len(reqs) == 0 {
		return nil
	}
	res, err := s.store.Append(ctx, reqs)
	if err != nil {
		return fmt.Errorf("queue notices: %w", err)
	}
	for i, r := range res {
		if !r.Duplicate {
			s.metrics.notice(reqs[i].Entry.Channel.Target.ID, "queued", 1)
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return nil
}

// deliveryState is the notify progress of one biz.
type deliveryState struct {
	pos   syncpoint.Position // the last notice delivered
	delay time.Duration      // the current backoff; 0 after a success
	next  time.Time          // no attempt before this
}

// Run delivers upload notices to each biz's NotifyURL until ctx ends: in
// order, in batches, at least once. A failed request is retried with a
// backoff that doubles up to NotifyMaxBackoff; the position of each biz is
// kept as a cursor in the store, so a restart resumes where delivery stopped. It
// returns nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	states, err := s.loadCursors(ctx)
	for err != nil {
		s.log.Error("records: load notice cursors", "err", err)
		if !s.sleep(ctx, s.cfg.NotifyMinBackoff) {
			return nil
		}
		states, err = s.loadCursors(ctx)
	}
	for {
		wait := s.cfg.NotifyPoll
		for _, b := range s.registry.List() {
			if b.Webhook == nil || b.Webhook.NotifyURL == "" {
				continue
			}
			st := states[b.Name]
			if st == nil {
				st = &deliveryState{}
				states[b.Name] = st
			}
			if now := s.clock.Now(); now.Before(st.next) {
				wait = min(wait, st.next.Sub(now))
				continue
			}
			if err := s.deliver(ctx, &b, st); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				st.delay = min(max(2*st.delay, s.cfg.NotifyMinBackoff), s.cfg.NotifyMaxBackoff)
				st.next = s.clock.Now().Add(st.delay)
				wait = min(wait, st.delay)
				s.log.Warn("records: notify webhook failed", "biz", b.Name, "err", err, "retry_in", st.delay)
				continue
			}
			st.delay = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (s *Service) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (s *Service) loadCursors(ctx context.Context) (map[string]*deliveryState, error) {
	cursors, err := s.store.Cursors(ctx, noticeReader)
	if err != nil {
		return nil, fmt.Errorf("load notice cursors: %w", err)
	}
	states := make(map[string]*deliveryState)
	for _, p := range cursors {
		if p.Channel.Biz == NoticeBiz && p.Channel.Target.Kind == syncpoint.TargetGroup {
			states[p.Channel.Target.ID] = &deliveryState{pos: p.Position}
		}
	}
	return states, nil
}

// deliver sends the biz's notices after its cursor, a batch at a time,
// until none are left or a request fails.
func (s *Service) deliver(ctx context.Context, b *syncpoint.Biz, st *deliveryState) error {
	ch := noticeChannel(b.Name)
	for {
		page, err := s.store.Read(ctx, ch, st.pos.Seq, s.cfg.NotifyBatch, s.clock.Now())
		if err != nil {
			return fmt.Errorf("read notices: %w", err)
		}
		if page.Info.Epoch == "" {
			return nil // nothing was ever queued
		}
		if st.pos.Seq > 0 && (st.pos.Epoch != page.Info.Epoch || st.pos.Seq > page.Info.LastSeq) {
			// The log was reset or restored: start over, at least once.
			s.log.Warn("records: notice log history changed; delivering it again from the start", "biz", b.Name)
			st.pos = syncpoint.Position{Epoch: page.Info.Epoch}
			continue
		}
		if len(page.Entries) == 0 {
			return nil
		}
		if first := page.Entries[0].Seq; first > st.pos.Seq+1 {
			s.log.Warn("records: notices expired before they were delivered", "biz", b.Name, "from", st.pos.Seq+1, "to", first-1)
		}
		batch := NoticeBatch{Biz: b.Name}
		size := 0
		for _, e := range page.Entries {
			if len(batch.Notices) > 0 && size+len(e.Data) > s.cfg.NotifyBatchBytes {
				break
			}
			batch.Notices = append(batch.Notices, e.Data)
			size += len(e.Data)
		}
		body, err := json.Marshal(batch)
		if err != nil {
			return fmt.Errorf("encode notices: %w", err)
		}
		status, _, err := s.post(ctx, b.Webhook, b.Webhook.NotifyURL, body)
		if err == nil && (status < 200 || status > 299) {
			err = fmt.Errorf("%w: status %d", errWebhook, status)
		}
		if err != nil {
			s.metrics.webhook("notify", "failed")
			return fmt.Errorf("notify: %w", err)
		}
		s.metrics.webhook("notify", "delivered")
		s.metrics.notice(b.Name, "delivered", len(batch.Notices))
		last := page.Entries[len(batch.Notices)-1].Seq
		st.pos = syncpoint.Position{Epoch: page.Info.Epoch, Seq: last}
		err = s.store.SaveCursor(ctx, syncpoint.Cursor{Reader: noticeReader, Channel: ch, Position: st.pos, UpdatedAt: s.clock.Now()})
		if err != nil && !errors.Is(err, syncpoint.ErrClosed) {
			// Delivered, but the cursor may lag: a restart sends it again.
			s.log.Error("records: save notice cursor", "biz", b.Name, "err", err)
		}
	}
}
