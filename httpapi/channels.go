package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Read limits of GET /v1/channels/{biz}/{target}.
const (
	DefaultReadLimit = 100
	MaxReadLimit     = 1000
)

// channelView is a channel's info and one page of its entries.
type channelView struct {
	Channel  syncpoint.Channel `json:"channel"`
	Epoch    string            `json:"epoch"`
	FirstSeq uint64            `json:"first_seq"`
	LastSeq  uint64            `json:"last_seq"`
	Entries  []entryView       `json:"entries"`
	More     bool              `json:"more"`
}

// channelInfoView is a channel's info without entries.
type channelInfoView struct {
	Channel  syncpoint.Channel `json:"channel"`
	Epoch    string            `json:"epoch"`
	FirstSeq uint64            `json:"first_seq"`
	LastSeq  uint64            `json:"last_seq"`
}

// entryView is an entry as the API shows it; the channel is the page's.
type entryView struct {
	Seq            uint64               `json:"seq"`
	Op             syncpoint.Op         `json:"op"`
	Key            string               `json:"key,omitempty"`
	Data           json.RawMessage      `json:"data,omitempty"`
	CreatedAt      time.Time            `json:"created_at"`
	ExpiresAt      time.Time            `json:"expires_at,omitzero"`
	Conditions     syncpoint.Conditions `json:"conditions,omitzero"`
	Origin         string               `json:"origin"`
	IdempotencyKey string               `json:"idempotency_key,omitempty"`
}

// channelOf parses the {biz}/{target} of a path and checks it against the
// registry: an unknown biz is 404, a target of the wrong kind 422.
func (s *Server) channelOf(r *http.Request) (syncpoint.Channel, error) {
	biz, err := s.registry.Lookup(r.PathValue("biz"))
	if err != nil {
		return syncpoint.Channel{}, err
	}
	t, err := syncpoint.ParseTarget(r.PathValue("target"))
	if err != nil {
		return syncpoint.Channel{}, err
	}
	if t.Kind != biz.Target {
		return syncpoint.Channel{}, syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s takes %s targets, not %s", biz.Name, biz.Target, t.Kind)
	}
	return syncpoint.Channel{Biz: biz.Name, Target: t}, nil
}

func (s *Server) handleReadChannel(w http.ResponseWriter, r *http.Request) error {
	ch, err := s.channelOf(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	after, err := uintParam(q.Get("after"), "after", 0, 0)
	if err != nil {
		return err
	}
	limit, err := uintParam(q.Get("limit"), "limit", DefaultReadLimit, MaxReadLimit)
	if err != nil {
		return err
	}
	if limit == 0 {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "limit: want 1 to %d", MaxReadLimit)
	}
	// One entry more than asked tells whether there is more to read.
	page, err := s.store.Read(r.Context(), ch, after, int(limit)+1, s.now())
	if err != nil {
		return fmt.Errorf("read channel %s: %w", ch, err)
	}
	v := channelView{
		Channel:  ch,
		Epoch:    page.Info.Epoch,
		FirstSeq: page.Info.FirstSeq,
		LastSeq:  page.Info.LastSeq,
		Entries:  make([]entryView, 0, min(len(page.Entries), int(limit))),
	}
	for i, e := range page.Entries {
		if i == int(limit) {
			v.More = true
			break
		}
		v.Entries = append(v.Entries, entryView{
			Seq:            e.Seq,
			Op:             e.Op,
			Key:            e.Key,
			Data:           e.Data,
			CreatedAt:      e.CreatedAt,
			ExpiresAt:      e.ExpiresAt,
			Conditions:     e.Conditions,
			Origin:         e.Origin,
			IdempotencyKey: e.IdempotencyKey,
		})
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) handleResetChannel(w http.ResponseWriter, r *http.Request) error {
	ch, err := s.channelOf(r)
	if err != nil {
		return err
	}
	info, err := s.store.ResetChannel(r.Context(), ch)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "channel %s has no entries", ch)
	}
	if err != nil {
		return fmt.Errorf("reset channel %s: %w", ch, err)
	}
	if s.onReset != nil {
		s.onReset(ch)
	}
	writeJSON(w, http.StatusOK, channelInfoView{Channel: ch, Epoch: info.Epoch, FirstSeq: info.FirstSeq, LastSeq: info.LastSeq})
	return nil
}

// handleTailChannel streams the channel's new entries as Server-Sent
// Events, for an operator holding the API key (the console's live tail).
func (s *Server) handleTailChannel(w http.ResponseWriter, r *http.Request) error {
	ch, err := s.channelOf(r)
	if err != nil {
		return err
	}
	if s.tail == nil {
		return syncpoint.Errorf(syncpoint.CodeUnavailable, "this server has no channel tail")
	}
	return s.tail(w, r, ch)
}

// uintParam parses an optional non-negative query parameter; max 0 means
// no maximum.
func uintParam(v, name string, def, max uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, syncpoint.Errorf(syncpoint.CodeInvalid, "%s %q: want a non-negative integer", name, v)
	}
	if max > 0 && n > max {
		return 0, syncpoint.Errorf(syncpoint.CodeInvalid, "%s %d: the most is %d", name, n, max)
	}
	return n, nil
}
