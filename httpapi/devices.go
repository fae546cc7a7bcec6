package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/syncpoint/syncpoint"
)

// deviceView is a device as GET /v1/users/{id}/devices lists it.
type deviceView struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	Platform   string    `json:"platform"`
	AppVersion string    `json:"app_version"`
	Online     bool      `json:"online"`
	LastSeen   time.Time `json:"last_seen,omitzero"`
}

// deviceDetail adds the device's sync points to deviceView.
type deviceDetail struct {
	deviceView
	Channels []syncPointView `json:"channels"`
}

// syncPointView is a device's position in one channel against the channel's
// head. Lag is null when the device's epoch is not the channel's, since seqs
// of different epochs do not compare.
type syncPointView struct {
	Channel      syncpoint.Channel `json:"channel"`
	Epoch        string            `json:"epoch"`
	Seq          uint64            `json:"seq"`
	ChannelEpoch string            `json:"channel_epoch"`
	LastSeq      uint64            `json:"last_seq"`
	Lag          *uint64           `json:"lag"`
	Status       syncpoint.Status  `json:"status"`
	UpdatedAt    time.Time         `json:"updated_at,omitzero"`
}

func (s *Server) view(d syncpoint.Device) deviceView {
	return deviceView{
		ID:         d.ID,
		UserID:     d.UserID,
		Platform:   d.Platform,
		AppVersion: d.AppVersion,
		Online:     s.presence != nil && s.presence.Online(d.ID),
		LastSeen:   d.LastSeen,
	}
}

func (s *Server) handleGetDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := syncpoint.ValidateID("device id", id); err != nil {
		return err
	}
	ctx := r.Context()
	d, err := s.store.Device(ctx, id)
	if errors.Is(err, syncpoint.ErrNotFound) {
		return syncpoint.Errorf(syncpoint.CodeNotFound, "unknown device %q", id)
	}
	if err != nil {
		return fmt.Errorf("get device %s: %w", id, err)
	}
	points, err := s.store.SyncPoints(ctx, id)
	if err != nil {
		return fmt.Errorf("sync points of %s: %w", id, err)
	}
	v := deviceDetail{deviceView: s.view(d), Channels: make([]syncPointView, 0, len(points))}
	for _, p := range points {
		info, err := s.store.Channel(ctx, p.Channel)
		switch {
		case errors.Is(err, syncpoint.ErrNotFound):
			info = syncpoint.ChannelInfo{Channel: p.Channel, FirstSeq: 1}
		case err != nil:
			return fmt.Errorf("channel %s: %w", p.Channel, err)
		}
		status, _ := info.Check(p.Position)
		sp := syncPointView{
			Channel:      p.Channel,
			Epoch:        p.Position.Epoch,
			Seq:          p.Position.Seq,
			ChannelEpoch: info.Epoch,
			LastSeq:      info.LastSeq,
			Status:       status,
			UpdatedAt:    p.UpdatedAt,
		}
		if (p.Position.Epoch == info.Epoch || p.Position.Seq == 0) && p.Position.Seq <= info.LastSeq {
			lag := info.LastSeq - p.Position.Seq
			sp.Lag = &lag
		}
		v.Channels = append(v.Channels, sp)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *Server) handleUserDevices(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := syncpoint.ValidateID("user id", id); err != nil {
		return err
	}
	ds, err := s.store.UserDevices(r.Context(), id)
	if err != nil {
		return fmt.Errorf("devices of user %s: %w", id, err)
	}
	out := make([]deviceView, 0, len(ds))
	for _, d := range ds {
		out = append(out, s.view(d))
	}
	writeJSON(w, http.StatusOK, struct {
		Devices []deviceView `json:"devices"`
	}{out})
	return nil
}
