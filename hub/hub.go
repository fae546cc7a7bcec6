// Package hub is the device session core that every transport shares.
//
// A transport (WebSocket, TCP) turns a network connection into a Conn that
// reads and writes decoded frames, and calls Hub.Serve. The hub checks the
// hello (token, device, subscriptions), answers with a welcome that gives
// each channel's status, then streams: the backlog after each sync point
// from the store, then live entries from the broker, merged across channels,
// with no gap or duplicate at the seam. Live entries go into a small bounded
// queue per session; a session that falls behind reads from the store
// instead, so a publish never waits for a device, and a device whose queue
// overflows is disconnected with the slow-consumer code and resumes from its
// sync point. A session holds a goroutine only while it reads or writes: the
// writer runs when there is something to send, and a quiet session's reader
// waits with no goroutine when its Conn can park (Parker).
//
// What a session may read, where each channel starts, the store reads,
// conditions, expiry and sync points are the feed's (package feed), which
// every other surface shares; the hub adds the live queue and its seam
// with the store, multi_device: false hand-over between sessions, and the
// protocol.
package hub

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults for Config.
const (
	DefaultHeartbeatInterval = 20 * time.Second
	DefaultHelloTimeout      = 10 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultMaxBatch          = 256
	DefaultMaxBatchBytes     = 1 << 20
	DefaultQueueLimit        = 4096
	DefaultFlushInterval     = feed.DefaultFlushInterval
	// missedHeartbeats is how many intervals without a frame from the
	// device mean the connection is dead (half-open).
	missedHeartbeats = 3
)

// Verifier checks a device token.
type Verifier interface {
	Verify(token string) (syncpoint.Claims, error)
}

// RecordWriter applies record uploads (writable bizzes).
type RecordWriter interface {
	Write(ctx context.Context, id syncpoint.Identity, w *wire.Write) *wire.WriteResult
}

// Conn is one device connection as a transport presents it: whole decoded
// frames in, whole frames out.
type Conn interface {
	// Read blocks for the next frame. A frame that does not decode is an
	// error with syncpoint.CodeMalformed; the session answers it and goes
	// on when the transport says it can (Recoverable).
	Read(ctx context.Context) (*wire.Frame, error)
	// Write sends one frame; ctx bounds how long it may block.
	Write(ctx context.Context, f *wire.Frame) error
	// WriteFrames sends frames in order in one write, bounded by a
	// deadline rather than a context: a session's pushes go this way, with
	// no context or timer made for each.
	WriteFrames(deadline time.Time, frames ...*wire.Frame) error
	// Close ends the connection with a close code.
	Close(code wire.CloseCode, reason string) error
}

// A Parker is a Conn that can wait for the device's next frame with no
// goroutine. A session that has nothing to read parks once it is quiet: when
// it has just opened, and after a heartbeat's ping or pong, frames a live
// device sends only while it has nothing else to say. Any other frame keeps
// the reader in its goroutine until the next heartbeat, so a device that is
// acking pushes pays nothing for the parking.
type Parker interface {
	// ReadIdle is Read, but fails with wire.ErrIdle at once, reading
	// nothing, when no byte of a frame has come.
	ReadIdle(ctx context.Context) (*wire.Frame, error)
	// Park arranges for ready to run on a new goroutine once the connection
	// has bytes, is hung up or fails; false means it cannot park now, and
	// the caller reads. Never called at the same time as a read or Unpark.
	Park(ready func()) bool
	// Unpark cancels a Park whose ready has not started, reporting whether
	// it did.
	Unpark() bool
}

// Config configures a Hub. Store, Registry and Verifier are required.
type Config struct {
	Store    syncpoint.Store
	Registry *syncpoint.Registry
	Verifier Verifier
	// Feed is shared with the other surfaces; its owner runs and closes it.
	// Nil: the hub makes its own over Store and Registry, with
	// FlushInterval, and runs it.
	Feed    *feed.Feed
	Records RecordWriter // nil: writes are refused
	// Node names this node in a cluster. Broker, when set, carries this
	// hub's presence events to the other nodes; Directory, when set, is the
	// cluster's list of sessions, which decides who receives multi_device:
	// false channels. Both nil: one node, decided in memory.
	Node       string
	Broker     syncpoint.Broker
	Directory  syncpoint.Directory
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer

	HeartbeatInterval time.Duration
	HelloTimeout      time.Duration
	WriteTimeout      time.Duration // a device that takes longer to take a frame is a slow consumer (up to an eighth sooner: see wire.WriteDeadline)
	MaxBatch          int           // entries per push
	MaxBatchBytes     int           // payload bytes per push (at least one entry is always sent)
	QueueLimit        int           // live entries queued per session before it is a slow consumer
	FlushInterval     time.Duration // how often acked sync points are written, by a feed of the hub's own
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.HelloTimeout <= 0 {
		c.HelloTimeout = DefaultHelloTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.QueueLimit <= 0 {
		c.QueueLimit = DefaultQueueLimit
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = DefaultFlushInterval
	}
}

// Hub holds the sessions of one node.
type Hub struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	feed    *feed.Feed
	ownFeed bool // made by New, so run and closed by the hub

	mu       sync.RWMutex
	channels map[syncpoint.Channel]map[*session]struct{} // who receives live entries
	devices  map[string]*session
	users    map[string][]*session // online sessions per user, oldest first
	closed   bool

	wg        sync.WaitGroup
	bg        sync.WaitGroup // cluster work started by events (background)
	stop      chan struct{}
	stopWatch func() // stops the registry's delete notices
}

// New returns a hub; call Run to start its background work.
func New(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{
		cfg:      cfg,
		log:      cfg.Logger,
		metrics:  newMetrics(cfg.Registerer),
		channels: make(map[syncpoint.Channel]map[*session]struct{}),
		devices:  make(map[string]*session),
		users:    make(map[string][]*session),
		stop:     make(chan struct{}),
		feed:     cfg.Feed,
	}
	if h.feed == nil {
		h.feed = feed.New(feed.Config{
			Store: cfg.Store, Registry: cfg.Registry, Clock: cfg.Clock, Logger: cfg.Logger,
			Registerer: cfg.Registerer, FlushInterval: cfg.FlushInterval,
		})
		h.ownFeed = true
	}
	h.stopWatch = cfg.Registry.OnDelete(h.bizDeleted)
	return h
}

// Run runs the hub's own feed, which writes acked sync points every
// FlushInterval, until ctx is done or the hub is closed; with a shared
// feed it only waits for that.
func (h *Hub) Run(ctx context.Context) error {
	if h.ownFeed {
		return h.feed.Run(ctx)
	}
	select {
	case <-ctx.Done():
	case <-h.stop:
	}
	return nil
}

// Close disconnects every session with GoingAway, waits for them to end and
// stores their sync points. Serve refuses new sessions afterwards.
func (h *Hub) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	h.stopWatch()
	sessions := make([]*session, 0, len(h.devices))
	for _, s := range h.devices {
		sessions = append(sessions, s)
	}
	h.mu.Unlock()
	for _, s := range sessions {
		s.kill(wire.CloseGoingAway, "the server is shutting down")
	}
	h.wg.Wait()
	h.bg.Wait()
	close(h.stop)
	if h.ownFeed {
		return h.feed.Close()
	}
	h.feed.Flush(context.Background())
	return nil
}

// Revoke closes every session opened with the token id with 4001 at once,
// and so does every other surface reading through the hub's feed (SSE
// streams). An empty id does nothing.
func (h *Hub) Revoke(tokenID string) { h.feed.Revoke(tokenID) }

// Online reports whether the device has a session on this node.
func (h *Hub) Online(deviceID string) bool {
	h.mu.RLock()
	_, ok := h.devices[deviceID]
	h.mu.RUnlock()
	return ok
}

// Deliver hands freshly stored (or ephemeral) entries to the sessions that
// receive their channels. It never blocks on a device: it only appends to
// bounded queues. It is the Broker subscription callback.
func (h *Hub) Deliver(entries []syncpoint.Entry) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var live []liveEntry
	for i := range entries {
		e := &entries[i]
		sessions := h.channels[e.Channel]
		if len(sessions) == 0 {
			continue
		}
		if live == nil {
			live = make([]liveEntry, len(entries))
		}
		le := &live[i]
		le.Entry = e
		for s := range sessions {
			s.enqueue(le)
		}
	}
}

// liveEntry is an entry on its way to the sessions that read its channel.
// They share its encodings: the first to send it encodes it.
type liveEntry struct {
	*syncpoint.Entry
	cache wire.EntryCache
}

// ResetChannel tells sessions reading ch that its history was reset: they
// are closed with the resync code, and their welcome on reconnect says
// reset.
func (h *Hub) ResetChannel(ch syncpoint.Channel) {
	h.mu.RLock()
	var victims []*session
	for s := range h.channels[ch] {
		victims = append(victims, s)
	}
	h.mu.RUnlock()
	h.log.Info("channel reset", "channel", ch.String(), "sessions", len(victims))
	for _, s := range victims {
		s.kill(wire.CloseResync, fmt.Sprintf("channel %s was reset", ch))
	}
	h.feed.ChannelChanged(ch)
}

// bizDeleted stops the channels of a deleted biz in every session that
// reads them and tells each with a non-fatal error naming the biz; the rest
// of the session goes on.
func (h *Hub) bizDeleted(name string) {
	h.mu.Lock()
	var told []*session
	for _, s := range h.devices {
		dropped := false
		for _, cs := range s.order {
			if cs.cur.Channel.Biz != name {
				continue
			}
			s.mu.Lock()
			cs.gone, cs.active = true, false
			s.mu.Unlock()
			h.removeLocked(cs.cur.Channel, s)
			dropped = true
		}
		if dropped {
			told = append(told, s)
		}
	}
	h.mu.Unlock()
	h.log.Info("biz deleted; its channels stop in every session", "biz", name, "sessions", len(told))
	err := syncpoint.Errorf(syncpoint.CodeForbidden, "biz %q was deleted; its channels are no longer sent", name)
	for _, s := range told {
		s.send(&wire.Frame{Error: wire.ErrorFrom(err, false)})
	}
}

// register adds s to the indexes and resolves multi_device: false channels:
// the newest session of the user becomes their only receiver.
func (h *Hub) register(s *session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return syncpoint.ErrClosed
	}
	// A biz deleted since the hello looked it up is refused as the hello
	// would have been; one deleted from now on is dropped by bizDeleted.
	for _, cs := range s.order {
		if _, ok := h.cfg.Registry.Get(cs.cur.Channel.Biz); !ok {
			return syncpoint.Errorf(syncpoint.CodeForbidden, "biz %q does not exist", cs.cur.Channel.Biz)
		}
	}
	if s.stream.IsRevoked() {
		// Revoked since the feed took the token; the writer would end it
		// anyway, but no welcome should go out first.
		return errRevoked
	}
	if old := h.devices[s.id.DeviceID]; old != nil {
		go old.kill(wire.CloseNormal, "replaced by a newer connection of this device")
		h.unindexLocked(old)
	}
	h.devices[s.id.DeviceID] = s
	h.users[s.id.UserID] = append(h.users[s.id.UserID], s)
	for _, cs := range s.order {
		if cs.cur.Single {
			h.activateLocked(cs.cur.Channel)
			if cs.handover {
				s.setActive(cs.cur.Channel, false, syncpoint.Position{})
				h.removeLocked(cs.cur.Channel, s)
			}
			continue
		}
		h.addLocked(cs.cur.Channel, s)
	}
	h.metrics.sessions.Set(float64(len(h.devices)))
	return nil
}

// unregister removes s and ends its stream; another online device of the
// user may take over its multi_device: false channels.
func (h *Hub) unregister(s *session) {
	h.mu.Lock()
	if h.devices[s.id.DeviceID] == s {
		delete(h.devices, s.id.DeviceID)
	}
	h.unindexLocked(s)
	h.metrics.sessions.Set(float64(len(h.devices)))
	h.mu.Unlock()
	s.stream.Close()
	if s.unlisted.CompareAndSwap(false, true) {
		h.left(s)
	}
}

func (h *Hub) unindexLocked(s *session) {
	list := h.users[s.id.UserID]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(h.users, s.id.UserID)
	} else {
		h.users[s.id.UserID] = list
	}
	for _, cs := range s.order {
		h.removeLocked(cs.cur.Channel, s)
		// In a cluster the newest session may be on another node: left
		// asks the directory instead.
		if cs.cur.Single && !h.clustered() {
			h.activateLocked(cs.cur.Channel)
		}
	}
}

func (h *Hub) addLocked(ch syncpoint.Channel, s *session) {
	set := h.channels[ch]
	if set == nil {
		set = make(map[*session]struct{}, 1)
		h.channels[ch] = set
	}
	set[s] = struct{}{}
}

func (h *Hub) removeLocked(ch syncpoint.Channel, s *session) {
	if set := h.channels[ch]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.channels, ch)
		}
	}
}

// activateLocked makes the most recently connected session of the channel's
// user that subscribes to ch its only receiver.
func (h *Hub) activateLocked(ch syncpoint.Channel) {
	var winner *session
	list := h.users[ch.Target.ID]
	for i := len(list) - 1; i >= 0; i-- {
		if list[i].reads(ch) {
			winner = list[i]
			break
		}
	}
	for s := range h.channels[ch] {
		if s != winner {
			s.setActive(ch, false, syncpoint.Position{})
			h.removeLocked(ch, s)
		}
	}
	if winner != nil {
		if _, ok := h.channels[ch][winner]; !ok {
			h.addLocked(ch, winner)
			winner.setActive(ch, true, h.feed.UserPosition(ch))
		}
	}
}

type metrics struct {
	sessions      prometheus.Gauge
	pushes        prometheus.Counter
	pushedEntries prometheus.Counter
	// pushLag is how old each entry is when pushed: the delivery lag the
	// console's overview shows.
	pushLag     prometheus.Histogram
	disconnects *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		sessions:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "syncpoint_sessions", Help: "Device sessions on this node."}),
		pushes:        prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_pushes_total", Help: "Push frames sent to devices."}),
		pushedEntries: prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_pushed_entries_total", Help: "Entries sent to devices."}),
		pushLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "syncpoint_push_lag_seconds",
			Help:    "Age of each entry when it was pushed to a device: from its publish to its push, backlog included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 11), // 1ms to about 17 minutes
		}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "syncpoint_disconnects_total", Help: "Sessions ended, by close code."}, []string{"code"}),
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.pushes, m.pushedEntries, m.pushLag, m.disconnects)
	}
	return m
}
