package httpsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// ackStateTTL is how long a device's ack state outlives its last ack; it
// matches the default retention, after which its entries are gone anyway.
const ackStateTTL = syncpoint.DefaultRetention

// MaxAckKeys bounds the keys of one ack request.
const MaxAckKeys = 100_000

// walkPage is how many entries one store read of an ack walk takes.
const walkPage = 1000

// ackState is what a device acked over HTTP, per channel: Base, the end
// of the hole-free acked prefix (its sync point), and the acks above a
// hole, kept until the hole is acked. It is one blob per device, written
// before an ack is answered, so a restart loses no ack even when the
// batched sync point write did not happen yet.
type ackState struct {
	Channels []*ackRange `json:"channels"`
}

type ackRange struct {
	Channel syncpoint.Channel `json:"channel"`
	Epoch   string            `json:"epoch"`
	Base    uint64            `json:"base"`
	Pending []uint64          `json:"pending,omitempty"` // sorted, all above Base
}

func (s *ackState) get(ch syncpoint.Channel) *ackRange {
	for _, r := range s.Channels {
		if r.Channel == ch {
			return r
		}
	}
	r := &ackRange{Channel: ch}
	s.Channels = append(s.Channels, r)
	return r
}

func (h *Handler) loadAcks(ctx context.Context, device string) (*ackState, error) {
	b, err := h.store.Blob(ctx, blobAcks+device)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return &ackState{}, nil
	} else if err != nil {
		return nil, fmt.Errorf("load acks: %w", err)
	}
	var s ackState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("load acks of %s: %w", device, err)
	}
	return &s, nil
}

func (h *Handler) saveAcks(ctx context.Context, device string, s *ackState) error {
	s.Channels = slices.DeleteFunc(s.Channels, func(r *ackRange) bool { return r.Base == 0 && len(r.Pending) == 0 })
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("save acks: %w", err)
	}
	if err := h.store.PutBlob(ctx, blobAcks+device, b, h.clock.Now().Add(ackStateTTL)); err != nil {
		return fmt.Errorf("save acks: %w", err)
	}
	return nil
}

// sync lines r up with the channel's current epoch and the device's stored
// sync point, which a socket session may have moved further.
func (r *ackRange) sync(epoch string, stored syncpoint.Position) {
	if r.Epoch != epoch {
		r.Epoch, r.Base, r.Pending = epoch, 0, nil
	}
	if stored.Epoch == epoch && stored.Seq > r.Base {
		r.Base = stored.Seq
	}
	r.dropBelow()
}

// add records acked seqs above Base; max bounds the pending list, which
// forgets its highest acks past it (their items come again).
func (r *ackRange) add(seqs []uint64, max int) {
	for _, s := range seqs {
		if s <= r.Base {
			continue
		}
		if i, found := slices.BinarySearch(r.Pending, s); !found {
			r.Pending = slices.Insert(r.Pending, i, s)
		}
	}
	if len(r.Pending) > max {
		r.Pending = r.Pending[:max]
	}
}

func (r *ackRange) dropBelow() {
	i, _ := slices.BinarySearch(r.Pending, r.Base+1)
	r.Pending = r.Pending[i:]
}

// advance moves Base over the acked prefix: over every entry that is acked
// or that the device was never sent (conditions, expiry), up to the first
// entry it was sent and did not ack, and never past read, how far its
// session's pages went. It stops at a gap (entries gone after Base) or a
// new epoch, which the next start reports. It reports whether Base moved.
func (h *Handler) advance(ctx context.Context, r *ackRange, id syncpoint.Identity, read uint64) (bool, error) {
	if n := len(r.Pending); n > 0 {
		read = max(read, r.Pending[n-1])
	}
	start := r.Base
	now := h.clock.Now()
	for r.Base < read {
		page, err := h.store.Read(ctx, r.Channel, r.Base, walkPage, now)
		if err != nil {
			return false, fmt.Errorf("read %s: %w", r.Channel, err)
		}
		if page.Info.Epoch != r.Epoch || page.Info.FirstSeq > r.Base+1 {
			break
		}
		hole := false
		for i := range page.Entries {
			e := &page.Entries[i]
			if e.Seq > read {
				break
			}
			// Acks of entries gone since they were sent need no match.
			r.dropBelow()
			for len(r.Pending) > 0 && r.Pending[0] < e.Seq {
				r.Pending = r.Pending[1:]
			}
			if len(r.Pending) > 0 && r.Pending[0] == e.Seq || !feed.Wanted(id, e, now) {
				r.Base = e.Seq
				continue
			}
			hole = true
			break
		}
		if hole {
			break
		}
		if len(page.Entries) < walkPage {
			// The read reached the channel's end: what lies between the
			// last entry and read was compacted or expired, and no item.
			r.Base = max(r.Base, min(read, page.Info.LastSeq))
			break
		}
	}
	r.dropBelow()
	return r.Base != start, nil
}

// storedPoints returns the device's stored sync points by channel.
func (h *Handler) storedPoints(ctx context.Context, device string) (map[syncpoint.Channel]syncpoint.Position, error) {
	sps, err := h.store.SyncPoints(ctx, device)
	if err != nil {
		return nil, fmt.Errorf("load sync points: %w", err)
	}
	out := make(map[syncpoint.Channel]syncpoint.Position, len(sps))
	for _, sp := range sps {
		out[sp.Channel] = sp.Position
	}
	return out, nil
}

// channelInfo is the channel's info, with the empty info of a channel that
// has never had an entry.
func (h *Handler) channelInfo(ctx context.Context, ch syncpoint.Channel) (syncpoint.ChannelInfo, error) {
	info, err := h.store.Channel(ctx, ch)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}, nil
	}
	if err != nil {
		return info, fmt.Errorf("channel info %s: %w", ch, err)
	}
	return info, nil
}

// ack records a device's ack keys (any order, any batch, again and again)
// and moves its sync points over the acked prefix. A key that does not
// check fails the whole request with CodeInvalidAckKey before anything is
// recorded; a key of an epoch gone by is ignored.
func (h *Handler) ack(ctx context.Context, c *caller, keys []string) error {
	if len(keys) > MaxAckKeys {
		return syncpoint.Errorf(syncpoint.CodeTooLarge, "ack_keys: %d given; one request takes at most %d", len(keys), MaxAckKeys)
	}
	key, err := h.key(ctx)
	if err != nil {
		return err
	}
	ak := newAckKeys(key, c.id.DeviceID)
	byChan := make(map[syncpoint.Channel][]position)
	var order []syncpoint.Channel
	for _, k := range keys {
		p, err := ak.parse(k)
		if err != nil {
			return err
		}
		if byChan[p.Channel] == nil {
			order = append(order, p.Channel)
		}
		byChan[p.Channel] = append(byChan[p.Channel], p)
	}
	for _, ch := range order {
		b, ok := h.reg.Get(ch.Biz)
		if ok && !c.id.CanRead(b, ch) {
			return syncpoint.Errorf(syncpoint.CodeForbidden, "channel %s is not one this token reads", ch)
		}
	}
	if err := h.bind(ctx, c); err != nil {
		return err
	}
	if len(order) == 0 {
		return nil
	}
	unlock, err := h.devices.Lock(ctx, c.id.DeviceID)
	if err != nil {
		return err
	}
	defer unlock()
	st, err := h.loadAcks(ctx, c.id.DeviceID)
	if err != nil {
		return err
	}
	stored, err := h.storedPoints(ctx, c.id.DeviceID)
	if err != nil {
		return err
	}
	sess, err := h.deviceSession(ctx, c.id.DeviceID)
	if err != nil {
		return err
	}
	id := c.id
	if sess != nil {
		id.Platform, id.AppVersion = sess.Platform, sess.AppVersion
	}
	var moved []feed.ChannelPosition
	for _, ch := range order {
		if _, ok := h.reg.Get(ch.Biz); !ok {
			continue // deleted since: nothing left to confirm
		}
		info, err := h.channelInfo(ctx, ch)
		if err != nil {
			return err
		}
		if info.Epoch == "" {
			continue
		}
		r := st.get(ch)
		r.sync(info.Epoch, stored[ch])
		var seqs []uint64
		for _, p := range byChan[ch] {
			if p.Epoch == info.Epoch {
				seqs = append(seqs, p.Seq)
			}
		}
		r.add(seqs, h.cfg.MaxPendingAcks)
		var read uint64
		if sr := sess.rangeOf(ch); sr != nil && sr.Epoch == info.Epoch {
			read = sr.Read
		}
		ok, err := h.advance(ctx, r, id, read)
		if err != nil {
			return err
		}
		if ok {
			moved = append(moved, feed.ChannelPosition{Channel: ch, Position: syncpoint.Position{Epoch: r.Epoch, Seq: r.Base}})
		}
	}
	if err := h.saveAcks(ctx, c.id.DeviceID, st); err != nil {
		return err
	}
	h.metrics.acks.Add(float64(len(keys)))
	return h.confirm(ctx, c.id, moved)
}

// confirm hands moved sync points to the feed, which writes them in its
// next batch.
func (h *Handler) confirm(ctx context.Context, id syncpoint.Identity, moved []feed.ChannelPosition) error {
	if len(moved) == 0 {
		return nil
	}
	if err := h.cfg.Feed.Confirm(ctx, id, moved); err != nil {
		if syncpoint.Code(err) == syncpoint.CodeInternal {
			return fmt.Errorf("confirm: %w", err)
		}
		return err
	}
	return nil
}

// deviceSession is the device's open session, or nil.
func (h *Handler) deviceSession(ctx context.Context, device string) (*sessionState, error) {
	cur, err := h.currentSession(ctx, device)
	if err != nil || cur == "" || cur == noSession {
		return nil, err
	}
	s, err := h.loadSession(ctx, cur)
	if syncpoint.Code(err) == syncpoint.CodeUnknownSession {
		return nil, nil
	}
	return s, err
}

// rangeOf is the session's range of ch, or nil (also for a nil session).
func (s *sessionState) rangeOf(ch syncpoint.Channel) *sessionRange {
	if s == nil {
		return nil
	}
	for i := range s.Channels {
		if s.Channels[i].Channel == ch {
			return &s.Channels[i]
		}
	}
	return nil
}
