package hub

import (
	"context"
	"log/slog"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// clusterTimeout bounds one directory or broker call made for a session's
// start or end, so a slow PostgreSQL or NATS never holds a session up for
// long; the periodic Beat repairs what a timed-out call missed.
const clusterTimeout = 5 * time.Second

// clustered reports whether the hub shares presence with other nodes.
func (h *Hub) clustered() bool { return h.cfg.Directory != nil }

// joined lists a new session in the directory and tells the other nodes,
// after it is registered here: they close older sessions of the device and
// hand the user's multi_device: false channels to it.
func (h *Hub) joined(s *session) {
	if h.cfg.Directory != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
		if err := h.cfg.Directory.Join(ctx, s.presence()); err != nil {
			h.log.Warn("directory: join", s.logAttrs(slog.Any("err", err))...)
		}
		cancel()
	}
	h.announce(syncpoint.Event{Kind: syncpoint.EventConnect, DeviceID: s.id.DeviceID, UserID: s.id.UserID, Session: s.sessionID, At: s.started})
}

// handoverTimeout is how long a new session waits for another node to
// hand over a multi_device: false channel before it takes it anyway: that
// node may be dead, or its event lost.
const handoverTimeout = 2 * time.Second

// awaitHandover marks the multi_device: false channels of a new session
// that a session on another node reads: those start inactive, and the
// other node, told of this session, stores the user's position and says
// so (left, handedOver), whereupon resolveUser activates them from it.
// Without that, the new device would start from a user position up to a
// flush interval old and get again what the old device already had.
func (h *Hub) awaitHandover(ctx context.Context, s *session) {
	if !h.clustered() || !s.hasSingles() {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, clusterTimeout)
	defer cancel()
	list, err := h.cfg.Directory.User(ctx, s.id.UserID)
	if err != nil {
		h.log.Warn("directory: user sessions; taking the channels at once", s.logAttrs(slog.Any("err", err))...)
		return
	}
	remote := make(map[syncpoint.Channel]bool)
	for _, p := range list {
		if p.Node != h.cfg.Node && p.DeviceID != s.id.DeviceID {
			for _, ch := range p.Singles {
				remote[ch] = true
			}
		}
	}
	waiting := false
	for _, cs := range s.order {
		if cs.cur.Single && remote[cs.cur.Channel] {
			cs.handover, waiting = true, true
		}
	}
	if waiting {
		userID := s.id.UserID
		time.AfterFunc(handoverTimeout, func() {
			if !s.isDead() {
				h.background(func() { h.resolveUser(userID) })
			}
		})
	}
}

// left unlists an ended session and tells the other nodes, so that the
// newest remaining session of the user, wherever it is, takes over its
// multi_device: false channels. The user positions this node holds are
// stored first, so the next session starts where this one stopped.
func (h *Hub) left(s *session) {
	if !h.clustered() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := h.cfg.Directory.Leave(ctx, s.sessionID); err != nil {
		h.log.Warn("directory: leave", s.logAttrs(slog.Any("err", err))...)
	}
	if !s.hasSingles() {
		return
	}
	h.feed.Flush(ctx)
	h.announce(syncpoint.Event{Kind: syncpoint.EventDisconnect, DeviceID: s.id.DeviceID, UserID: s.id.UserID, Session: s.sessionID})
	h.resolveUser(s.id.UserID)
}

func (h *Hub) announce(ev syncpoint.Event) {
	if h.cfg.Broker == nil {
		return
	}
	ev.Node = h.cfg.Node
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := h.cfg.Broker.Announce(ctx, ev); err != nil {
		h.log.Warn("broker: announce", "kind", string(ev.Kind), "err", err)
	}
}

// HandleEvent acts on another node's presence events: a device that
// connected there loses its session here, and the user's multi_device:
// false channels go to the newest session in the cluster. Events of this
// node and other kinds are ignored. It never blocks: directory reads run on
// their own goroutine.
func (h *Hub) HandleEvent(ev syncpoint.Event) {
	if ev.Node == h.cfg.Node || !h.clustered() {
		return
	}
	switch ev.Kind {
	case syncpoint.EventConnect:
		h.mu.RLock()
		old := h.devices[ev.DeviceID]
		h.mu.RUnlock()
		if old != nil && old.sessionID != ev.Session && !old.started.After(ev.At) {
			go old.kill(wire.CloseNormal, "replaced by a newer connection of this device")
		}
		h.background(func() { h.resolveUser(ev.UserID) })
	case syncpoint.EventDisconnect:
		h.background(func() { h.resolveUser(ev.UserID) })
	case syncpoint.EventHead:
		h.Nudge(syncpoint.ChannelInfo{Channel: ev.Channel, Epoch: ev.Epoch, LastSeq: ev.Seq})
	}
}

// background runs fn on its own goroutine unless the hub is closed; Close
// waits for it.
func (h *Hub) background(fn func()) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed {
		return
	}
	h.bg.Go(fn)
}

// resolveUser gives each multi_device: false channel of the user that this
// node's sessions read to the newest session in the directory that reads
// it: a local winner is activated from the user's stored position, a local
// loser stops receiving. A winner already active moves on to the stored
// position too, when that is further, which is how the position a losing
// session reached on another node reaches the winner.
func (h *Hub) resolveUser(userID string) {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	list, err := h.cfg.Directory.User(ctx, userID)
	if err != nil {
		h.log.Warn("directory: user sessions; keeping the current receivers", "user", userID, "err", err)
		return
	}
	winners := make(map[syncpoint.Channel]string)
	for _, p := range list { // oldest first: the newest is written last
		for _, ch := range p.Singles {
			winners[ch] = p.Session
		}
	}
	if !h.anyLocalWinner(userID, winners) {
		if h.applyWinners(userID, winners, nil) > 0 {
			h.handedOver(ctx, userID)
		}
		return
	}
	points, err := h.cfg.Store.UserPositions(ctx, userID)
	if err != nil {
		h.log.Warn("store: user positions; keeping the current receivers", "user", userID, "err", err)
		return
	}
	stored := make(map[syncpoint.Channel]syncpoint.Position, len(points))
	for _, p := range points {
		stored[p.Channel] = p.Position
	}
	if h.applyWinners(userID, winners, stored) > 0 {
		h.handedOver(ctx, userID)
	}
}

// handedOver stores the user positions this node's losing sessions reached
// and tells the winner's node, which moves its session on to them.
func (h *Hub) handedOver(ctx context.Context, userID string) {
	h.feed.Flush(ctx)
	h.announce(syncpoint.Event{Kind: syncpoint.EventDisconnect, UserID: userID})
}

func (h *Hub) anyLocalWinner(userID string, winners map[syncpoint.Channel]string) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range h.users[userID] {
		for _, cs := range s.order {
			if cs.cur.Single && winners[cs.cur.Channel] == s.sessionID {
				return true
			}
		}
	}
	return false
}

// applyWinners activates this node's winning sessions of the user and
// deactivates the rest, and returns how many channels it took from one;
// stored is nil when no local session wins.
func (h *Hub) applyWinners(userID string, winners map[syncpoint.Channel]string, stored map[syncpoint.Channel]syncpoint.Position) (lost int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.users[userID] {
		for _, cs := range s.order {
			if !cs.cur.Single || !s.reads(cs.cur.Channel) {
				continue
			}
			ch := cs.cur.Channel
			_, active := h.channels[ch][s]
			switch {
			case winners[ch] == s.sessionID:
				from := h.feed.UserPosition(ch)
				if p, ok := stored[ch]; ok && (p.Epoch != from.Epoch || p.Seq > from.Seq) {
					from = p
				}
				if !active {
					h.addLocked(ch, s)
				}
				s.setActive(ch, true, from)
			case active:
				s.setActive(ch, false, syncpoint.Position{})
				h.removeLocked(ch, s)
				lost++
			}
		}
	}
	return lost
}

// Presences lists this node's sessions, for the directory's Beat.
func (h *Hub) Presences() []syncpoint.Presence {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]syncpoint.Presence, 0, len(h.devices))
	for _, s := range h.devices {
		out = append(out, s.presence())
	}
	return out
}

// Channels lists the channels that sessions here receive live, for the
// check of channel heads that finds entries a broker lost.
func (h *Hub) Channels() []syncpoint.Channel {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]syncpoint.Channel, 0, len(h.channels))
	for ch := range h.channels {
		out = append(out, ch)
	}
	return out
}

// Nudge tells the sessions receiving a channel that its log reaches
// info.LastSeq: one that has not been sent that far reads the rest from the
// store, which is how an entry the broker lost still reaches every device.
func (h *Hub) Nudge(info syncpoint.ChannelInfo) {
	if info.LastSeq == 0 {
		return
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for s := range h.channels[info.Channel] {
		s.nudge(info)
	}
}

func (s *session) nudge(info syncpoint.ChannelInfo) {
	s.mu.Lock()
	cs := s.chanOf(info.Channel)
	behind := cs != nil && !cs.gone && cs.active && info.LastSeq > cs.pushed.Seq &&
		(cs.pushed.Epoch == "" || cs.pushed.Epoch == info.Epoch)
	if behind && info.LastSeq > cs.headSeq {
		cs.headSeq = info.LastSeq
	}
	s.mu.Unlock()
	if behind {
		s.wake()
	}
}

func (s *session) presence() syncpoint.Presence {
	p := syncpoint.Presence{
		Session: s.sessionID, Node: s.hub.cfg.Node, DeviceID: s.id.DeviceID, UserID: s.id.UserID,
		Transport: s.peer.Transport, ConnectedAt: s.started,
	}
	for _, cs := range s.order {
		if cs.cur.Single {
			p.Singles = append(p.Singles, cs.cur.Channel)
		}
	}
	return p
}

func (s *session) hasSingles() bool {
	for _, cs := range s.order {
		if cs.cur.Single {
			return true
		}
	}
	return false
}
