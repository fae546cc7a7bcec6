package feed

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// Defaults and limits.
const (
	DefaultFlushInterval = time.Second
	DefaultQueueLimit    = 4096
	// flushChunk is how many sync points one store call of Flush saves.
	flushChunk = 256
	// MaxBizzes bounds the bizzes of one Request.
	MaxBizzes = 256
	// MaxDeviceField bounds Request.Platform and Request.AppVersion.
	MaxDeviceField = 64
	// revokedMemory is how long a revoked token id is remembered, to refuse
	// an Open that verified the token just before the revocation.
	revokedMemory = time.Minute
)

// Config configures a Feed. Store and Registry are required.
type Config struct {
	Store      syncpoint.Store
	Registry   *syncpoint.Registry
	Clock      clock.Clock
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// FlushInterval is how often Run writes confirmed positions.
	FlushInterval time.Duration
	// QueueLimit bounds the entries of non-persistent bizzes a watching
	// stream holds until its next Read.
	QueueLimit int
}

// Feed serves streams over one store. It is safe for concurrent use.
type Feed struct {
	store    syncpoint.Store
	registry *syncpoint.Registry
	clock    clock.Clock
	log      *slog.Logger
	interval time.Duration
	queue    int
	writes   prometheus.Counter

	pendingMu sync.Mutex
	pending   map[spKey]syncpoint.SyncPoint // confirmed positions not yet stored
	// pendingUser is pending for the users of multi_device: false
	// channels, by channel, which names the user.
	pendingUser map[syncpoint.Channel]syncpoint.UserPosition

	// users is the position each user reached in a multi_device: false
	// channel, kept while a stream of the user reads the channel.
	usersMu sync.Mutex
	users   map[syncpoint.Channel]*userPos

	watchMu  sync.RWMutex
	watchers map[syncpoint.Channel]map[*Stream]int // stream -> cursor index
	watching atomic.Int64                          // streams in watchers, so Deliver can skip the lock

	tokensMu sync.Mutex
	tokens   map[string]map[*Stream]struct{}
	revoked  map[string]time.Time

	stopWatch func()
	stop      chan struct{}
	closeOnce sync.Once
}

type spKey struct {
	device  string
	channel syncpoint.Channel
}

type userPos struct {
	pos  syncpoint.Position
	refs int
}

// New returns a feed; call Run to have confirmed positions written.
func New(cfg Config) *Feed {
	f := &Feed{
		store:       cfg.Store,
		registry:    cfg.Registry,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		interval:    cfg.FlushInterval,
		queue:       cfg.QueueLimit,
		pending:     make(map[spKey]syncpoint.SyncPoint),
		pendingUser: make(map[syncpoint.Channel]syncpoint.UserPosition),
		users:       make(map[syncpoint.Channel]*userPos),
		watchers:    make(map[syncpoint.Channel]map[*Stream]int),
		tokens:      make(map[string]map[*Stream]struct{}),
		revoked:     make(map[string]time.Time),
		stop:        make(chan struct{}),
		writes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "syncpoint_sync_point_writes_total", Help: "Device sync points stored."}),
	}
	if f.clock == nil {
		f.clock = clock.Real{}
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.interval <= 0 {
		f.interval = DefaultFlushInterval
	}
	if f.queue <= 0 {
		f.queue = DefaultQueueLimit
	}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(f.writes)
	}
	f.stopWatch = cfg.Registry.OnDelete(f.bizDeleted)
	return f
}

// Run writes confirmed positions every FlushInterval until ctx is done or
// the feed is closed, then writes what is left.
func (f *Feed) Run(ctx context.Context) error {
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			f.Flush(ctx)
		case <-ctx.Done():
			f.Flush(context.Background())
			return nil
		case <-f.stop:
			f.Flush(context.Background())
			return nil
		}
	}
}

// Close stops Run and writes the confirmed positions not yet stored.
// Streams stay usable, but what they confirm from now on is stored only by
// an explicit Flush.
func (f *Feed) Close() error {
	f.closeOnce.Do(func() {
		f.stopWatch()
		close(f.stop)
	})
	f.Flush(context.Background())
	return nil
}

// Deliver tells the watching streams of each entry's channel that it
// arrived. It never blocks on a stream. It is the Broker subscription
// callback, beside the hub's.
func (f *Feed) Deliver(entries []syncpoint.Entry) {
	if f.watching.Load() == 0 {
		return
	}
	f.watchMu.RLock()
	defer f.watchMu.RUnlock()
	for i := range entries {
		e := &entries[i]
		for s, idx := range f.watchers[e.Channel] {
			s.notice(idx, e)
		}
	}
}

// ChannelChanged has the watching streams of ch read it again, as after a
// reset, which stores no entry and so is never delivered.
func (f *Feed) ChannelChanged(ch syncpoint.Channel) {
	f.watchMu.RLock()
	defer f.watchMu.RUnlock()
	for s, idx := range f.watchers[ch] {
		s.notice(idx, nil)
	}
}

// Revoke ends every stream opened with the token id at once: each one's
// Revoked channel closes, and its owner ends it. An Open with that token id
// that is still under way is refused. An empty id does nothing (JWTs have
// none).
func (f *Feed) Revoke(tokenID string) {
	if tokenID == "" {
		return
	}
	now := f.clock.Now()
	f.tokensMu.Lock()
	for id, at := range f.revoked {
		if now.Sub(at) > revokedMemory {
			delete(f.revoked, id)
		}
	}
	f.revoked[tokenID] = now
	victims := f.tokens[tokenID]
	delete(f.tokens, tokenID)
	f.tokensMu.Unlock()
	if len(victims) > 0 {
		f.log.Info("token revoked; its streams end", "streams", len(victims))
	}
	for s := range victims {
		s.revoke()
	}
}

// register indexes s for revocation and, when it watches, for Deliver.
func (f *Feed) register(s *Stream) error {
	if s.tokenID != "" {
		f.tokensMu.Lock()
		if _, gone := f.revoked[s.tokenID]; gone {
			f.tokensMu.Unlock()
			return errRevoked
		}
		set := f.tokens[s.tokenID]
		if set == nil {
			set = make(map[*Stream]struct{}, 1)
			f.tokens[s.tokenID] = set
		}
		set[s] = struct{}{}
		f.tokensMu.Unlock()
	}
	if s.watch {
		f.watchMu.Lock()
		for i, c := range s.cursors {
			set := f.watchers[c.Channel]
			if set == nil {
				set = make(map[*Stream]int, 1)
				f.watchers[c.Channel] = set
			}
			set[s] = i
		}
		f.watchMu.Unlock()
		f.watching.Add(1)
	}
	return nil
}

func (f *Feed) unregister(s *Stream) {
	if s.tokenID != "" {
		f.tokensMu.Lock()
		if set := f.tokens[s.tokenID]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(f.tokens, s.tokenID)
			}
		}
		f.tokensMu.Unlock()
	}
	if s.watch {
		f.watchMu.Lock()
		for _, c := range s.cursors {
			if set := f.watchers[c.Channel]; set != nil {
				delete(set, s)
				if len(set) == 0 {
					delete(f.watchers, c.Channel)
				}
			}
		}
		f.watchMu.Unlock()
		f.watching.Add(-1)
	}
}

// bizDeleted forgets the user positions of a deleted biz's channels; a biz
// created again under the name starts in new epochs.
func (f *Feed) bizDeleted(name string) {
	f.usersMu.Lock()
	for ch := range f.users {
		if ch.Biz == name {
			delete(f.users, ch)
		}
	}
	f.usersMu.Unlock()
}

// UserPosition returns the position the channel's user reached in a
// multi_device: false channel, as far as the streams reading it know; the
// zero Position when none does.
func (f *Feed) UserPosition(ch syncpoint.Channel) syncpoint.Position {
	f.usersMu.Lock()
	defer f.usersMu.Unlock()
	if u := f.users[ch]; u != nil {
		return u.pos
	}
	return syncpoint.Position{}
}

// Flush writes the confirmed positions not yet stored. Those the store
// refuses are kept for the next flush unless newer ones replaced them.
func (f *Feed) Flush(ctx context.Context) {
	f.pendingMu.Lock()
	if len(f.pending) == 0 && len(f.pendingUser) == 0 {
		f.pendingMu.Unlock()
		return
	}
	points := make([]syncpoint.SyncPoint, 0, len(f.pending))
	for _, p := range f.pending {
		points = append(points, p)
	}
	clear(f.pending)
	users := make([]syncpoint.UserPosition, 0, len(f.pendingUser))
	for _, p := range f.pendingUser {
		users = append(users, p)
	}
	clear(f.pendingUser)
	f.pendingMu.Unlock()
	if len(users) > 0 {
		if err := f.store.SaveUserPositions(ctx, users); err != nil && !errors.Is(err, syncpoint.ErrClosed) {
			f.log.Error("save user positions", "err", err, "count", len(users))
			f.pendingMu.Lock()
			for _, p := range users {
				if _, newer := f.pendingUser[p.Channel]; !newer {
					f.pendingUser[p.Channel] = p
				}
			}
			f.pendingMu.Unlock()
		}
	}
	// In chunks: the embedded store checks each row against the stored one
	// inside its single committer, and a thousand rows there at once held
	// every publish back for about 2 ms.
	for len(points) > 0 {
		n := min(len(points), flushChunk)
		if err := f.store.SaveSyncPoints(ctx, points[:n]); err != nil {
			if errors.Is(err, syncpoint.ErrClosed) {
				return
			}
			f.log.Error("save sync points", "err", err, "count", len(points))
			f.pendingMu.Lock()
			for _, p := range points {
				k := spKey{p.DeviceID, p.Channel}
				if _, newer := f.pending[k]; !newer {
					f.pending[k] = p
				}
			}
			f.pendingMu.Unlock()
			return
		}
		f.writes.Add(float64(n))
		points = points[n:]
	}
}

// record queues a device's confirmed position in ch for the next flush,
// and the user's too for a multi_device: false channel. Within an epoch a
// position only moves forward; a new epoch replaces the old one.
func (f *Feed) record(deviceID string, ch syncpoint.Channel, single bool, p syncpoint.Position) {
	now := f.clock.Now()
	f.pendingMu.Lock()
	k := spKey{deviceID, ch}
	if cur, ok := f.pending[k]; !ok || !behind(p, cur.Position) {
		f.pending[k] = syncpoint.SyncPoint{DeviceID: deviceID, Channel: ch, Position: p, UpdatedAt: now}
	}
	if single {
		if cur, ok := f.pendingUser[ch]; !ok || !behind(p, cur.Position) {
			f.pendingUser[ch] = syncpoint.UserPosition{UserID: ch.Target.ID, Channel: ch, Position: p, UpdatedAt: now}
		}
	}
	f.pendingMu.Unlock()
	if single {
		f.usersMu.Lock()
		if u := f.users[ch]; u != nil && !behind(p, u.pos) {
			u.pos = p
		}
		f.usersMu.Unlock()
	}
}

// behind reports whether p is before q in the same epoch.
func behind(p, q syncpoint.Position) bool { return p.Epoch == q.Epoch && p.Seq < q.Seq }

// storedPositions returns the device's sync points, the stored ones
// overlaid with those confirmed since the last flush.
func (f *Feed) storedPositions(ctx context.Context, deviceID string) (map[syncpoint.Channel]syncpoint.Position, error) {
	points, err := f.store.SyncPoints(ctx, deviceID)
	if err != nil {
		return nil, err
	}
	out := make(map[syncpoint.Channel]syncpoint.Position, len(points))
	for _, p := range points {
		out[p.Channel] = p.Position
	}
	f.pendingMu.Lock()
	for k, p := range f.pending {
		if k.device == deviceID {
			if cur, ok := out[k.channel]; !ok || !behind(p.Position, cur) {
				out[k.channel] = p.Position
			}
		}
	}
	f.pendingMu.Unlock()
	return out, nil
}

// ChannelPosition is a position in a named channel.
type ChannelPosition struct {
	Channel  syncpoint.Channel
	Position syncpoint.Position
}

// Confirm records positions a device applied, for a caller that holds no
// stream (an HTTP ack). The identity must read each channel, of a
// persistent biz: otherwise nothing is recorded and the error has
// CodeForbidden (CodeInvalid for a non-persistent biz). A position in
// another epoch than the channel's current one is ignored, and one past
// the channel's last seq is taken as its last seq.
func (f *Feed) Confirm(ctx context.Context, id syncpoint.Identity, points []ChannelPosition) error {
	type ok struct {
		ch     syncpoint.Channel
		single bool
		pos    syncpoint.Position
	}
	var take []ok
	for _, p := range points {
		b, found := f.registry.Get(p.Channel.Biz)
		switch {
		case !found:
			return syncpoint.Errorf(syncpoint.CodeForbidden, "biz %q does not exist", p.Channel.Biz)
		case !id.CanRead(b, p.Channel):
			return syncpoint.Errorf(syncpoint.CodeForbidden, "channel %s is not one this device reads", p.Channel)
		case !b.Persistent:
			return syncpoint.Errorf(syncpoint.CodeInvalid, "biz %q keeps no positions: it is not persistent", b.Name)
		}
		if p.Position.Seq == 0 {
			continue
		}
		info, err := f.store.Channel(ctx, p.Channel)
		if errors.Is(err, syncpoint.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		if p.Position.Epoch != info.Epoch {
			continue
		}
		pos := syncpoint.Position{Epoch: info.Epoch, Seq: min(p.Position.Seq, info.LastSeq)}
		take = append(take, ok{p.Channel, single(b), pos})
	}
	for _, t := range take {
		f.record(id.DeviceID, t.ch, t.single, t.pos)
	}
	return nil
}

// single reports whether b's channels go to the user's newest device only.
func single(b syncpoint.Biz) bool { return b.Target == syncpoint.TargetUser && !b.MultiDevice }

var errRevoked = syncpoint.Errorf(syncpoint.CodeUnauthorized, "the token was revoked")

// Watched lists the channels that watching streams read, for the check of
// channel heads that finds entries a broker lost.
func (f *Feed) Watched() []syncpoint.Channel {
	f.watchMu.RLock()
	defer f.watchMu.RUnlock()
	out := make([]syncpoint.Channel, 0, len(f.watchers))
	for ch := range f.watchers {
		out = append(out, ch)
	}
	return out
}
