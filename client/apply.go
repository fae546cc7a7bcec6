package client

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// applyWelcome acts on each channel's status in one transaction: a reset
// drops the channel's records and position, a gap moves the position to
// where delivery resumes. Each leaves a notice for deliverNotices. The
// channels are kept too: they give each biz's default channel.
func (c *Client) applyWelcome(ctx context.Context, w *wire.Welcome, epochs map[string]string) error {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("apply welcome: %w", err)
	}
	defer tx.Rollback()
	c.mu.Lock()
	pos := maps.Clone(c.pos)
	c.mu.Unlock()
	nowMs := c.clock.Now().UnixMilli()
	for _, st := range w.Channels {
		epochs[st.Channel] = st.Epoch
		switch st.Status {
		case wire.StatusOK:
		case wire.StatusReset:
			c.log.Warn("client: channel was reset; dropping its local data", "channel", st.Channel, "epoch", st.Epoch)
			if err := dropChannel(ctx, tx, st.Channel); err != nil {
				return fmt.Errorf("apply welcome: %w", err)
			}
			delete(pos, st.Channel)
			if c.cfg.OnReset != nil {
				if err := addNotice(ctx, tx, notice{channel: st.Channel, kind: noticeReset}); err != nil {
					return fmt.Errorf("apply welcome: %w", err)
				}
			}
		case wire.StatusGap:
			c.log.Warn("client: entries expired or were trimmed before this device got them", "channel", st.Channel, "first_seq", st.FirstSeq)
			p := syncpoint.Position{Epoch: st.Epoch, Seq: st.From}
			if cur := pos[st.Channel]; cur.Seq < p.Seq || cur.Epoch != p.Epoch {
				if err := savePosition(ctx, tx, st.Channel, p, nowMs); err != nil {
					return fmt.Errorf("apply welcome: %w", err)
				}
				pos[st.Channel] = p
			}
			if c.cfg.OnGap != nil {
				if err := addNotice(ctx, tx, notice{channel: st.Channel, kind: noticeGap, firstSeq: st.FirstSeq}); err != nil {
					return fmt.Errorf("apply welcome: %w", err)
				}
			}
		default:
			c.log.Warn("client: unknown channel status in welcome", "channel", st.Channel, "status", st.Status)
		}
	}
	chans := make([]string, len(w.Channels))
	for i, st := range w.Channels {
		chans[i] = st.Channel
	}
	if err := saveChannels(ctx, tx, chans); err != nil {
		return fmt.Errorf("apply welcome: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("apply welcome: %w", err)
	}
	c.mu.Lock()
	c.defaults = defaultsOf(chans)
	c.pos = pos
	clear(c.serverLast)
	for _, st := range w.Channels {
		c.serverLast[st.Channel] = st.LastSeq
	}
	c.mu.Unlock()
	return nil
}

// applied is what one push changed.
type applied struct {
	positions []wire.Position // committed, to ack
	applied   int             // entries handed to the Handler
	stopped   bool            // the Handler returned StopAfter
}

// applyPush applies a push in one transaction (section 8 of the protocol):
// it drops entries at or below the local position, stores records, calls the
// Handler and advances the positions. Nothing is kept if any step fails.
func (c *Client) applyPush(ctx context.Context, p *wire.Push, epochs map[string]string) (applied, error) {
	c.mu.Lock()
	pos := maps.Clone(c.pos)
	c.mu.Unlock()

	// Seqs only grow within a channel; anything at or below the running
	// mark is a repeat, from an earlier session or within this push.
	mark := make(map[string]uint64)
	var fresh []Entry
	repeats := 0
	for i := range p.Entries {
		we := &p.Entries[i]
		if we.Seq == 0 {
			fresh = append(fresh, entryOf(we))
			continue
		}
		last, ok := mark[we.Channel]
		if !ok {
			last = pos[we.Channel].Seq
		}
		if we.Seq <= last {
			repeats++
			continue
		}
		mark[we.Channel] = we.Seq
		fresh = append(fresh, entryOf(we))
	}
	pushEpoch := make(map[string]string, len(p.Positions))
	for _, pp := range p.Positions {
		pushEpoch[pp.Channel] = pp.Epoch
		if e := epochs[pp.Channel]; e != "" && pp.Epoch != e {
			return applied{}, syncpoint.Errorf(syncpoint.CodeMalformed, "push moves %s to epoch %q, but the session is in %q", pp.Channel, pp.Epoch, e)
		}
		if cur := pos[pp.Channel]; cur.Seq > 0 && cur.Epoch != "" && cur.Epoch != pp.Epoch {
			return applied{}, syncpoint.Errorf(syncpoint.CodeMalformed, "push moves %s to epoch %q, but the local position is in %q", pp.Channel, pp.Epoch, cur.Epoch)
		}
	}

	// Without an epoch a position cannot be kept, and the entries would come
	// again; better to refuse the push and let the next welcome name it.
	for ch := range mark {
		if pushEpoch[ch] == "" && epochs[ch] == "" {
			return applied{}, syncpoint.Errorf(syncpoint.CodeMalformed, "push carries entries of %s but no epoch for it", ch)
		}
	}
	if repeats > 0 {
		c.log.Debug("client: dropped entries already applied", "count", repeats)
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return applied{}, fmt.Errorf("apply push: %w", err)
	}
	defer tx.Rollback()

	stopped := false
	if len(fresh) > 0 && c.cfg.Handler != nil {
		if err := c.cfg.Handler(tx, fresh); err != nil {
			var se *StopError
			if !errors.As(err, &se) {
				return applied{}, fmt.Errorf("handler: %w", err)
			}
			stopped = true
			fresh = fresh[:min(max(se.N, 0), len(fresh))]
		}
	}
	// Records go in after the Handler so that a StopAfter keeps the records
	// of exactly the entries it took.
	rtx := newCachedTx(tx)
	guarded, err := anyServerRecs(ctx, rtx)
	if err != nil {
		return applied{}, fmt.Errorf("apply push: %w", err)
	}
	for i := range fresh {
		e := &fresh[i]
		if e.Seq == 0 || e.Key == "" || (e.Op != OpPut && e.Op != OpDelete) {
			continue
		}
		if guarded {
			// Local changes pending for the record win until their result.
			skip, err := pushServerRec(ctx, rtx, e)
			if err != nil {
				return applied{}, fmt.Errorf("apply push: %w", err)
			}
			if skip {
				continue
			}
		}
		if e.Op == OpPut {
			err = putRecord(ctx, rtx, e)
		} else {
			err = deleteRecord(ctx, rtx, e.Channel, e.Key, e.Seq)
		}
		if err != nil {
			return applied{}, fmt.Errorf("apply push: %w", err)
		}
	}

	next := c.nextPositions(p, fresh, mark, pos, epochs, stopped)
	nowMs := c.clock.Now().UnixMilli()
	for _, np := range next {
		if err := savePosition(ctx, tx, np.Channel, syncpoint.Position{Epoch: np.Epoch, Seq: np.Seq}, nowMs); err != nil {
			return applied{}, fmt.Errorf("apply push: %w", err)
		}
		if guarded {
			if err := dropGuards(ctx, rtx, np.Channel, np.Seq); err != nil {
				return applied{}, fmt.Errorf("apply push: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return applied{}, fmt.Errorf("apply push: %w", err)
	}

	c.mu.Lock()
	for _, np := range next {
		c.pos[np.Channel] = syncpoint.Position{Epoch: np.Epoch, Seq: np.Seq}
		epochs[np.Channel] = np.Epoch
	}
	for _, pp := range p.Positions {
		c.serverLast[pp.Channel] = max(c.serverLast[pp.Channel], pp.Seq)
	}
	for ch, seq := range mark {
		c.serverLast[ch] = max(c.serverLast[ch], seq)
	}
	c.mu.Unlock()
	n := 0
	for i := range fresh {
		if fresh[i].Seq != 0 {
			n++
		}
	}
	return applied{positions: next, applied: n, stopped: stopped}, nil
}

// nextPositions returns the positions to store once the push (or, after
// StopAfter, the part of it the Handler took) is applied. A position never
// moves backwards, and a channel with entries left out stops at the last
// entry taken.
func (c *Client) nextPositions(p *wire.Push, taken []Entry, mark map[string]uint64, pos map[string]syncpoint.Position, epochs map[string]string, stopped bool) []wire.Position {
	lastTaken := make(map[string]uint64)
	for i := range taken {
		if e := &taken[i]; e.Seq != 0 {
			lastTaken[e.Channel] = e.Seq
		}
	}
	var out []wire.Position
	seen := make(map[string]bool)
	advance := func(ch, epoch string, seq uint64) {
		if seen[ch] || epoch == "" || seq == 0 {
			return
		}
		cur := pos[ch]
		if cur.Epoch == epoch && seq <= cur.Seq {
			return
		}
		seen[ch] = true
		out = append(out, wire.Position{Channel: ch, Epoch: epoch, Seq: seq})
	}
	for _, pp := range p.Positions {
		seq := max(pp.Seq, mark[pp.Channel])
		if stopped && lastTaken[pp.Channel] < mark[pp.Channel] {
			seq = lastTaken[pp.Channel] // entries of it were left out
		}
		advance(pp.Channel, pp.Epoch, seq)
	}
	// A push should list every channel it advances; if it did not, the
	// entries taken still count, in the epoch the session knows.
	for ch, seq := range lastTaken {
		advance(ch, epochs[ch], seq)
	}
	return out
}

func entryOf(we *wire.Entry) Entry {
	return Entry{
		Channel:   we.Channel,
		Seq:       we.Seq,
		Op:        we.Op,
		Key:       we.Key,
		Data:      we.Data,
		CreatedAt: we.CreatedAt,
		ExpiresAt: we.ExpiresAt,
		Origin:    we.Origin,
	}
}
