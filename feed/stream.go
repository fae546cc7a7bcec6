package feed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Request is who opens a stream and where it starts.
type Request struct {
	// Claims are the verified token's. TokenID, when set, makes the
	// stream end on Revoke.
	Claims syncpoint.Claims
	// DeviceID is bound to Claims.User on first use; a device of another
	// user is refused.
	DeviceID string
	// Platform and AppVersion are matched against entry conditions. When
	// both are empty, those the device gave last are used.
	Platform   string
	AppVersion string
	// Bizzes are expanded into channels in this order; an unknown one is
	// refused. With AllBizzes, every persistent biz in which the claims
	// read a channel is taken instead, by name.
	Bizzes    []string
	AllBizzes bool
	// Positions are where the device says it stands. Positions of channels
	// not in the stream are ignored.
	Positions map[syncpoint.Channel]syncpoint.Position
	// FromStored starts channels that Positions does not name from the
	// device's stored sync points (including those confirmed but not yet
	// written); without it they start at seq 0, which is everything
	// retained.
	FromStored bool
	// Watch registers the stream with Deliver so that it can Wait, and
	// receive entries of non-persistent bizzes.
	Watch bool
}

// Status is a channel's status at the start of a stream.
type Status struct {
	Cursor *Cursor
	Status syncpoint.Status
	// Info is the channel's retained range; zero for a non-persistent biz.
	Info syncpoint.ChannelInfo
	// From is the seq delivery resumes after.
	From uint64
	// Position is the position the stream started from: the device's, its
	// stored sync point, or the user's for a multi_device: false channel.
	Position syncpoint.Position
}

// Cursor is the stream's place in one channel. The fields below the line
// belong to the stream's goroutine.
type Cursor struct {
	Channel   syncpoint.Channel
	Name      string // Channel.String()
	Index     int    // in Stream.Cursors
	Ephemeral bool   // a non-persistent biz: live entries only, no positions
	Single    bool   // multi_device: false

	// Epoch and Seq are how far the stream has read or skipped.
	Epoch string
	Seq   uint64
	// Behind means entries after Seq may be in the store; Read reads only
	// channels that are behind.
	Behind bool
	// Off makes Read pass the channel by, for an owner that pauses it.
	Off bool
	// Last is the channel's last seq as of the stream's latest read.
	Last uint64
}

// Position returns the cursor's position.
func (c *Cursor) Position() syncpoint.Position {
	return syncpoint.Position{Epoch: c.Epoch, Seq: c.Seq}
}

// Adopt takes the channel's epoch when the stream first learns it (the
// channel was empty at the start), and fails with a *ChannelError when the
// history changed under the stream.
func (c *Cursor) Adopt(epoch string) error {
	switch {
	case epoch == "" || epoch == c.Epoch:
		return nil
	case c.Epoch == "" && c.Seq == 0:
		c.Epoch = epoch
		return nil
	}
	return &ChannelError{Cursor: c, Status: syncpoint.StatusReset}
}

// ChannelError is a channel whose history cannot continue from the
// stream's position: reset (a new epoch) or gap (entries after the
// position are gone). Recheck gives where the channel now stands.
type ChannelError struct {
	Cursor *Cursor
	Status syncpoint.Status
	After  uint64 // for a gap: the seq after which entries are gone
}

func (e *ChannelError) Error() string {
	if e.Status == syncpoint.StatusGap {
		return fmt.Sprintf("entries of %s after seq %d are gone", e.Cursor.Name, e.After)
	}
	return fmt.Sprintf("channel %s was reset", e.Cursor.Name)
}

// Stream is one device reading its channels; see the package doc.
type Stream struct {
	feed    *Feed
	id      syncpoint.Identity
	tokenID string
	expires time.Time
	cursors []*Cursor
	// The cursors by channel and by name, for a stream with more than it
	// looks through (see Cursor).
	byChan map[syncpoint.Channel]*Cursor
	byName map[string]*Cursor
	start  map[syncpoint.Channel]syncpoint.Position
	rr     int // where the next read starts, for fairness
	watch  bool
	users  []syncpoint.Channel // user positions held in feed.users
	// observer is an operator's stream (Observe): no device, no sync
	// points, no conditions; head starts it at the channel's last seq.
	observer bool
	head     bool

	notify  chan struct{}
	revoked chan struct{}

	mu        sync.Mutex
	dirty     []bool // per cursor: an entry arrived
	anyDirty  bool
	live      []*syncpoint.Entry // of non-persistent bizzes, until Read
	overflow  bool
	isRevoked bool
	onRevoke  func()
	closed    bool
}

// Open resolves and starts a stream: Resolve, then Start.
func (f *Feed) Open(ctx context.Context, req Request) (*Stream, []Status, error) {
	s, err := f.Resolve(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.Start(ctx)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, st, nil
}

// Resolve checks the request as a hello is checked, expands its bizzes into
// channels, finds where each starts, and stores the device. The stream
// reads nothing until Start.
func (f *Feed) Resolve(ctx context.Context, req Request) (*Stream, error) {
	if err := syncpoint.ValidateID("device_id", req.DeviceID); err != nil {
		return nil, err
	}
	if len(req.Platform) > MaxDeviceField || len(req.AppVersion) > MaxDeviceField {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "platform and app_version are limited to %d bytes", MaxDeviceField)
	}
	if len(req.Bizzes) > MaxBizzes {
		return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "at most %d bizzes may be named", MaxBizzes)
	}
	id := syncpoint.Identity{
		DeviceID:   req.DeviceID,
		UserID:     req.Claims.User,
		Groups:     req.Claims.Groups,
		Platform:   req.Platform,
		AppVersion: req.AppVersion,
	}
	// The device is written only once the stream is sure to open.
	if _, err := CheckDevice(ctx, f.store, &id); err != nil {
		return nil, err
	}

	s := &Stream{
		feed:    f,
		id:      id,
		tokenID: req.Claims.TokenID,
		expires: cmp.Or(req.Claims.ValidUntil, req.Claims.ExpiresAt),
		watch:   req.Watch,
	}
	bizzes := req.Bizzes
	if req.AllBizzes {
		bizzes = nil
		for _, b := range f.registry.List() {
			if b.Persistent {
				bizzes = append(bizzes, b.Name)
			}
		}
	}
	for _, name := range bizzes {
		b, ok := f.registry.Get(name)
		if !ok {
			return nil, syncpoint.Errorf(syncpoint.CodeForbidden, "biz %q does not exist", name)
		}
		for _, ch := range id.Channels(b) {
			if s.Cursor(ch) != nil {
				continue
			}
			s.addCursor(&Cursor{Channel: ch, Name: ch.String(), Index: len(s.cursors), Ephemeral: !b.Persistent, Single: single(b)})
		}
	}
	s.dirty = make([]bool, len(s.cursors))
	if s.watch {
		// Only Wait and Changed take it; a hub session is told of its
		// entries by the hub, and would hold it idle for nothing.
		s.notify = make(chan struct{}, 1)
	}

	s.start = make(map[syncpoint.Channel]syncpoint.Position, len(s.cursors))
	for ch, p := range req.Positions {
		if c := s.Cursor(ch); c != nil && !c.Ephemeral {
			s.start[ch] = p
		}
	}
	if req.FromStored {
		stored, err := f.storedPositions(ctx, id.DeviceID)
		if err != nil {
			return nil, fmt.Errorf("load sync points: %w", err)
		}
		for ch, p := range stored {
			if c := s.Cursor(ch); c != nil && !c.Ephemeral {
				if _, given := s.start[ch]; !given {
					s.start[ch] = p
				}
			}
		}
	}
	if err := s.loadUserPositions(ctx); err != nil {
		s.releaseUsers()
		return nil, err
	}

	now := f.clock.Now()
	if err := SaveDevice(ctx, f.store, id, now); err != nil {
		s.releaseUsers()
		return nil, err
	}
	if err := f.register(s); err != nil {
		s.releaseUsers()
		return nil, err
	}
	return s, nil
}

// loadUserPositions merges the stored user-wide positions of multi_device:
// false channels into the start, so the user's next device resumes where
// any of their devices stopped.
func (s *Stream) loadUserPositions(ctx context.Context) error {
	if !slices.ContainsFunc(s.cursors, func(c *Cursor) bool { return c.Single }) {
		return nil
	}
	f := s.feed
	points, err := f.store.UserPositions(ctx, s.id.UserID)
	if err != nil {
		return fmt.Errorf("load user positions: %w", err)
	}
	f.usersMu.Lock()
	defer f.usersMu.Unlock()
	for _, c := range s.cursors {
		if !c.Single {
			continue
		}
		u := f.users[c.Channel]
		if u == nil {
			u = &userPos{}
			f.users[c.Channel] = u
		}
		u.refs++
		s.users = append(s.users, c.Channel)
	}
	for _, p := range points {
		if c := s.Cursor(p.Channel); c == nil || !c.Single {
			continue
		}
		if u := f.users[p.Channel]; u.pos.Epoch != p.Position.Epoch || u.pos.Seq < p.Position.Seq {
			u.pos = p.Position
		}
	}
	for _, ch := range s.users {
		ua := f.users[ch].pos
		if cp := s.start[ch]; ua.Seq > 0 && (cp.Seq == 0 || (cp.Epoch == ua.Epoch && cp.Seq < ua.Seq)) {
			s.start[ch] = ua
		}
	}
	return nil
}

func (s *Stream) releaseUsers() {
	f := s.feed
	f.usersMu.Lock()
	for _, ch := range s.users {
		if u := f.users[ch]; u != nil {
			if u.refs--; u.refs <= 0 {
				delete(f.users, ch)
			}
		}
	}
	f.usersMu.Unlock()
	s.users = nil
}

// Start reads each channel's info and compares it with the stream's
// starting position. A starting position that is ok is recorded as the
// device's sync point.
func (s *Stream) Start(ctx context.Context) ([]Status, error) {
	f := s.feed
	out := make([]Status, 0, len(s.cursors))
	for _, c := range s.cursors {
		if c.Ephemeral {
			out = append(out, Status{Cursor: c, Status: syncpoint.StatusOK})
			continue
		}
		info, err := f.store.Channel(ctx, c.Channel)
		if errors.Is(err, syncpoint.ErrNotFound) {
			info = syncpoint.ChannelInfo{Channel: c.Channel, FirstSeq: 1}
		} else if err != nil {
			return nil, fmt.Errorf("channel info %s: %w", c.Channel, err)
		}
		pos := s.start[c.Channel]
		switch {
		case s.head:
			pos = syncpoint.Position{Epoch: info.Epoch, Seq: info.LastSeq}
		case s.observer && pos.Epoch == "":
			pos.Epoch = info.Epoch
		}
		status, from := info.Check(pos)
		c.Epoch, c.Seq, c.Behind, c.Last = info.Epoch, from, info.LastSeq > from, info.LastSeq
		if status == syncpoint.StatusOK && pos.Seq > 0 && !s.observer {
			f.record(s.id.DeviceID, c.Channel, false, pos)
		}
		out = append(out, Status{Cursor: c, Status: status, Info: info, From: from, Position: pos})
	}
	s.start = nil
	return out, nil
}

// Recheck reads c's channel info again after Read returned a *ChannelError
// for it, and moves c to where delivery now resumes: the start of the new
// epoch after a reset, the first retained entry after a gap.
func (s *Stream) Recheck(ctx context.Context, c *Cursor) (Status, error) {
	info, err := s.feed.store.Channel(ctx, c.Channel)
	if errors.Is(err, syncpoint.ErrNotFound) {
		info = syncpoint.ChannelInfo{Channel: c.Channel, FirstSeq: 1}
	} else if err != nil {
		return Status{}, fmt.Errorf("channel info %s: %w", c.Channel, err)
	}
	pos := c.Position()
	status, from := info.Check(pos)
	c.Epoch, c.Seq, c.Behind, c.Last = info.Epoch, from, info.LastSeq > from, info.LastSeq
	return Status{Cursor: c, Status: status, Info: info, From: from, Position: pos}, nil
}

// Identity is who the stream reads for: the claims' user and groups, the
// device and what it said about itself.
func (s *Stream) Identity() syncpoint.Identity { return s.id }

// Expires is when the token stops being accepted (zero: never).
func (s *Stream) Expires() time.Time { return s.expires }

// Cursors are the stream's channels, in the order of the bizzes.
func (s *Stream) Cursors() []*Cursor { return s.cursors }

// Cursor returns the cursor of ch, or nil when ch is not in the stream.
func (s *Stream) Cursor(ch syncpoint.Channel) *Cursor {
	return findCursor(s.cursors, s.byChan, ch, func(c *Cursor) syncpoint.Channel { return c.Channel })
}

// CursorNamed returns the cursor of the channel named name (Cursor.Name, as
// devices spell it), or nil.
func (s *Stream) CursorNamed(name string) *Cursor {
	return findCursor(s.cursors, s.byName, name, func(c *Cursor) string { return c.Name })
}

// findCursor looks k up in m, or, when the stream keeps no maps, looks
// through cursors for the one whose key is k.
func findCursor[K comparable](cursors []*Cursor, m map[K]*Cursor, k K, key func(*Cursor) K) *Cursor {
	if m != nil {
		return m[k]
	}
	for _, c := range cursors {
		if key(c) == k {
			return c
		}
	}
	return nil
}

// linearCursors is how many cursors a stream looks through before it keeps
// maps of them. Most devices read a handful of channels, and a map costs
// an idle session about half a KiB for its first entry.
const linearCursors = 8

func (s *Stream) addCursor(c *Cursor) {
	s.cursors = append(s.cursors, c)
	if s.byChan == nil && len(s.cursors) > linearCursors {
		s.byChan = make(map[syncpoint.Channel]*Cursor, 2*len(s.cursors))
		s.byName = make(map[string]*Cursor, 2*len(s.cursors))
		for _, c := range s.cursors[:len(s.cursors)-1] {
			s.byChan[c.Channel], s.byName[c.Name] = c, c
		}
	}
	if s.byChan != nil {
		s.byChan[c.Channel], s.byName[c.Name] = c, c
	}
}

// Positions returns where each persistent channel of the stream stands.
func (s *Stream) Positions() []ChannelPosition {
	out := make([]ChannelPosition, 0, len(s.cursors))
	for _, c := range s.cursors {
		if !c.Ephemeral {
			out = append(out, ChannelPosition{Channel: c.Channel, Position: c.Position()})
		}
	}
	return out
}

// Left estimates the entries still to read: at most this many, since
// conditions, expiry and compaction skip some.
func (s *Stream) Left() uint64 {
	var n uint64
	for _, c := range s.cursors {
		if !c.Ephemeral && !c.Off && c.Last > c.Seq {
			n += c.Last - c.Seq
		}
	}
	return n
}

// Wanted applies expiry and the entry's conditions to this device; an
// observer's stream applies expiry only.
func (s *Stream) Wanted(e *syncpoint.Entry, now time.Time) bool { return s.wanted(e, now) }

// Wanted applies expiry and the entry's conditions to the device id names,
// for a caller without a stream (the HTTP acks, which skip what a device
// was never sent).
func Wanted(id syncpoint.Identity, e *syncpoint.Entry, now time.Time) bool {
	if e.Expired(now) {
		return false
	}
	return e.Conditions.IsZero() || e.Conditions.Match(id.Platform, id.AppVersion)
}

// Confirm records that the device applied c up to p, for the next flush.
// The caller vouches that p was delivered on this stream (the hub caps an
// ack at what it pushed).
func (s *Stream) Confirm(c *Cursor, p syncpoint.Position) {
	if c.Ephemeral || p.Seq == 0 || s.observer {
		return
	}
	s.feed.record(s.id.DeviceID, c.Channel, c.Single, p)
}

// SaveLastSeen stores the device with now as its last-seen time, for a
// surface that held the stream open a while.
func (s *Stream) SaveLastSeen(ctx context.Context) error {
	if s.observer {
		return nil
	}
	return SaveDevice(ctx, s.feed.store, s.id, s.feed.clock.Now())
}

// Close ends the stream: it stops being told of entries and revocations.
// It is safe to call more than once.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.live = nil
	s.mu.Unlock()
	s.feed.unregister(s)
	s.releaseUsers()
}

// Changed receives after an entry arrived in one of the stream's channels
// (with Watch), so that a select can wait for it; Read or Page take it.
func (s *Stream) Changed() <-chan struct{} { return s.notify }

// Revoked is closed when the stream's token is revoked.
// It is made on the first call, since most owners never ask (OnRevoke and
// IsRevoked cost an idle stream nothing).
func (s *Stream) Revoked() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.revoked == nil {
		s.revoked = make(chan struct{})
		if s.isRevoked {
			close(s.revoked)
		}
	}
	return s.revoked
}

// IsRevoked reports whether the stream's token was revoked.
func (s *Stream) IsRevoked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.isRevoked
}

// Wait blocks until an entry arrives in one of the stream's channels (with
// Watch) and returns nil, or until the token is revoked (an error with
// CodeUnauthorized) or ctx ends (ctx's error). An entry that arrived since
// the last Read counts, so nothing is missed between a Read that found
// nothing and Wait.
func (s *Stream) Wait(ctx context.Context) error {
	if !s.watch {
		return errors.New("feed: Wait on a stream opened without Watch")
	}
	select {
	case <-s.notify:
		// What arrived counts even when ctx is done too.
		return nil
	default:
	}
	select {
	case <-s.notify:
		return nil
	case <-s.Revoked():
		return errRevoked
	case <-ctx.Done():
		return ctx.Err()
	}
}

// notice is Deliver's: e arrived in cursor idx (nil: read the channel
// again).
func (s *Stream) notice(idx int, e *syncpoint.Entry) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if e != nil && s.cursors[idx].Ephemeral {
		if len(s.live) >= s.feed.queue {
			s.overflow = true
		} else {
			s.live = append(s.live, e)
		}
	} else {
		s.dirty[idx], s.anyDirty = true, true
	}
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Stream) revoke() {
	s.mu.Lock()
	if s.isRevoked {
		s.mu.Unlock()
		return
	}
	s.isRevoked = true
	f, ch := s.onRevoke, s.revoked
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	if f != nil {
		f()
	}
}

// OnRevoke has f called, on a goroutine of the revoker's, when the stream's
// token is revoked, and at once if it already was: an owner that has no
// goroutine waiting on Revoked learns of it so. One f per stream; stop
// unregisters it and reports whether it was still registered.
func (s *Stream) OnRevoke(f func()) (stop func() bool) {
	s.mu.Lock()
	if s.isRevoked {
		s.mu.Unlock()
		f()
		return func() bool { return false }
	}
	s.onRevoke = f
	s.mu.Unlock()
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		was := s.onRevoke != nil && !s.isRevoked
		s.onRevoke = nil
		return was
	}
}

// Sink takes what Read yields.
type Sink interface {
	// Room is how many more entries the sink takes; Read stops at 0.
	Room() int
	// Add takes an entry for the device, conditions and expiry applied.
	Add(c *Cursor, e *syncpoint.Entry)
	// Moved says c.Seq advanced; it may come more than once per Read.
	Moved(c *Cursor)
}

// Read hands the sink what the device gets next: entries of non-persistent
// bizzes that arrived (with Watch), then store reads of the channels that
// are behind, round robin from where the last Read stopped. It returns a
// *ChannelError for a channel that was reset or trimmed past c.Seq, and an
// error with CodeSlowConsumer when more live entries arrived than the
// queue holds.
func (s *Stream) Read(ctx context.Context, sink Sink) error {
	// The clock is read only when there is something to read: a live
	// session calls Read on every push, mostly with no channel behind.
	var now time.Time
	if s.watch {
		now = s.feed.clock.Now()
		if err := s.takeNotices(sink, now); err != nil {
			return err
		}
	}
	n := len(s.cursors)
	// The turn starts where the last Read stopped and passes every channel
	// once; s.rr moves as it goes, so it is read only here.
	start := s.rr
	for i := range n {
		room := sink.Room()
		if room <= 0 {
			break
		}
		k := (start + i) % n
		c := s.cursors[k]
		if !c.Behind || c.Off {
			continue
		}
		before := c.Seq
		if now.IsZero() {
			now = s.feed.clock.Now()
		}
		page, buf, err := s.feed.readPage(ctx, c.Channel, c.Seq, room, now)
		if err != nil {
			return fmt.Errorf("read %s: %w", c.Channel, err)
		}
		if err := c.Adopt(page.Info.Epoch); err != nil {
			buf.put(page.Entries)
			return err
		}
		if page.Info.FirstSeq > c.Seq+1 {
			buf.put(page.Entries)
			return &ChannelError{Cursor: c, Status: syncpoint.StatusGap, After: c.Seq}
		}
		full := false
		for j := range page.Entries {
			// The sink may fill up on bytes before the page ends; the rest
			// is read again next time.
			if full = sink.Room() <= 0; full {
				break
			}
			e := &page.Entries[j]
			c.Seq = e.Seq
			if s.Wanted(e, now) {
				sink.Add(c, e)
			}
		}
		got := len(page.Entries)
		// Every Sink copies what it keeps of an entry: the array is free.
		buf.put(page.Entries)
		c.Last = page.Info.LastSeq
		if !full && got < room {
			// The read reached the channel's durable end.
			c.Seq = max(c.Seq, page.Info.LastSeq)
			c.Behind = false
		}
		if c.Seq != before {
			sink.Moved(c)
		}
		s.rr = k + 1
	}
	return nil
}

// pageBuf is a page's array, lent from pageBufs to the store's reads.
type pageBuf struct{ entries []syncpoint.Entry }

// maxPooledPage is the largest page array kept for the next read: a page of
// at most a push's worth (256 entries by default) is what catch-ups read.
const maxPooledPage = 1024

var pageBufs = sync.Pool{New: func() any { return new(pageBuf) }}

// put takes the array back, cleared so that the pool keeps no entry data:
// used is the page's entries, in buf's array or one the store made. A nil
// b, from a store that reads into no buffer, does nothing.
func (b *pageBuf) put(used []syncpoint.Entry) {
	if b == nil {
		return
	}
	if used != nil {
		b.entries = used
	}
	if cap(b.entries) > maxPooledPage {
		b.entries = nil
	}
	clear(b.entries[:cap(b.entries)])
	b.entries = b.entries[:0]
	pageBufs.Put(b)
}

// readPage reads a page from the store, into a pooled array when the store
// can (syncpoint.PageReader); the caller then puts buf back, done with the
// page.
func (f *Feed) readPage(ctx context.Context, ch syncpoint.Channel, after uint64, limit int, now time.Time) (syncpoint.Page, *pageBuf, error) {
	pr, ok := f.store.(syncpoint.PageReader)
	if !ok {
		p, err := f.store.Read(ctx, ch, after, limit, now)
		return p, nil, err
	}
	buf := pageBufs.Get().(*pageBuf)
	p, err := pr.ReadInto(ctx, ch, after, limit, now, buf.entries)
	if err != nil {
		buf.put(nil)
		return p, nil, err
	}
	return p, buf, nil
}

// takeNotices marks the channels that got entries behind and hands the
// sink the live entries of non-persistent bizzes, as many as it has room
// for; the rest wait for the next Read.
func (s *Stream) takeNotices(sink Sink, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.overflow {
		return syncpoint.Errorf(syncpoint.CodeSlowConsumer, "more than %d live entries waiting; resume from your position", s.feed.queue)
	}
	if s.anyDirty {
		for i, d := range s.dirty {
			if d {
				s.cursors[i].Behind = true
				s.dirty[i] = false
			}
		}
		s.anyDirty = false
	}
	taken := 0
	for _, e := range s.live {
		if sink.Room() <= 0 {
			break
		}
		taken++
		if c := s.Cursor(e.Channel); c != nil && !c.Off && s.Wanted(e, now) {
			sink.Add(c, e)
		}
	}
	if taken == len(s.live) {
		s.live = s.live[:0]
	} else {
		s.live = s.live[taken:]
	}
	return nil
}

// Page is a merged page of a stream.
type Page struct {
	// Entries are in seq order within each channel; Entry.Channel and
	// Entry.Epoch say where each belongs.
	Entries []syncpoint.Entry
	// Positions is where each channel the page moved now stands; it can be
	// past the last entry sent, over entries that were not for the device.
	Positions []ChannelPosition
	// More means some channel still has entries to read.
	More bool
}

// Page reads up to limit entries (at least 1; about maxBytes of data and
// keys, at least one entry) across the stream's channels. It reads on
// while the page is empty and some channel is behind, so an empty page
// with More false means there is nothing new.
func (s *Stream) Page(ctx context.Context, limit, maxBytes int) (Page, error) {
	p := &pageSink{limit: max(limit, 1), maxBytes: maxBytes, moved: make([]bool, len(s.cursors))}
	for {
		if err := s.Read(ctx, p); err != nil {
			return Page{}, err
		}
		if len(p.page.Entries) > 0 || p.Room() <= 0 || !s.behind() {
			break
		}
	}
	for i, m := range p.moved {
		if m {
			c := s.cursors[i]
			p.page.Positions = append(p.page.Positions, ChannelPosition{Channel: c.Channel, Position: c.Position()})
		}
	}
	p.page.More = s.behind()
	return p.page, nil
}

// behind reports whether a channel the stream reads has more in the store.
func (s *Stream) behind() bool {
	for _, c := range s.cursors {
		if c.Behind && !c.Off {
			return true
		}
	}
	return false
}

type pageSink struct {
	page     Page
	limit    int
	maxBytes int
	bytes    int
	moved    []bool
}

func (p *pageSink) Room() int {
	if p.maxBytes > 0 && p.bytes >= p.maxBytes {
		return 0
	}
	return p.limit - len(p.page.Entries)
}

func (p *pageSink) Add(c *Cursor, e *syncpoint.Entry) {
	p.page.Entries = append(p.page.Entries, *e)
	p.page.Entries[len(p.page.Entries)-1].Epoch = c.Epoch
	p.bytes += e.Size()
	if !c.Ephemeral {
		p.moved[c.Index] = true
	}
}

func (p *pageSink) Moved(c *Cursor) { p.moved[c.Index] = true }
