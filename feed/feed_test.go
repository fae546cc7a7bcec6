package feed_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
)

// env is a real store, broker and publisher with a feed subscribed to the
// broker, as on a node.
type env struct {
	t     *testing.T
	store *pebble.Store
	reg   *syncpoint.Registry
	pub   *publish.Publisher
	feed  *feed.Feed
}

func testBizzes() []syncpoint.Biz {
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	config := syncpoint.NewBiz("config", syncpoint.TargetGlobal)
	inbox := syncpoint.NewBiz("inbox", syncpoint.TargetDevice)
	team := syncpoint.NewBiz("team", syncpoint.TargetGroup)
	pay := syncpoint.NewBiz("pay", syncpoint.TargetUser)
	pay.MultiDevice = false
	presence := syncpoint.NewBiz("presence", syncpoint.TargetUser)
	presence.Persistent = false
	short := syncpoint.NewBiz("short", syncpoint.TargetUser)
	short.MaxBacklog = 5
	return []syncpoint.Biz{chat, config, inbox, team, pay, presence, short}
}

func newEnv(t *testing.T, mod func(*feed.Config)) *env {
	t.Helper()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), testBizzes()); err != nil {
		t.Fatal(err)
	}
	cfg := feed.Config{Store: store, Registry: reg, FlushInterval: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	f := feed.New(cfg)
	broker := local.New()
	unsub, err := broker.Subscribe(f.Deliver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unsub()
		f.Close()
		store.Close()
	})
	return &env{t: t, store: store, reg: reg, feed: f, pub: publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})}
}

func (e *env) publish(r publish.Request) uint64 {
	e.t.Helper()
	res, err := e.pub.Publish(context.Background(), r)
	if err != nil {
		e.t.Fatalf("publish: %v", err)
	}
	if res[0].Err != nil {
		e.t.Fatalf("publish: %v", res[0].Err)
	}
	return res[0].Seq
}

func (e *env) msg(biz string, target syncpoint.Target, data string) uint64 {
	e.t.Helper()
	return e.publish(publish.Request{Biz: biz, Targets: []syncpoint.Target{target}, Data: json.RawMessage(data)})
}

func claims(user string, groups ...string) syncpoint.Claims {
	return syncpoint.Claims{User: user, Groups: groups, ExpiresAt: time.Now().Add(time.Hour)}
}

func (e *env) open(req feed.Request) (*feed.Stream, []feed.Status) {
	e.t.Helper()
	s, st, err := e.feed.Open(context.Background(), req)
	if err != nil {
		e.t.Fatalf("open: %v", err)
	}
	e.t.Cleanup(s.Close)
	return s, st
}

var (
	u1     = syncpoint.UserTarget("u1")
	chatU1 = syncpoint.Channel{Biz: "chat", Target: u1}
)

// drain pages through the stream until nothing is behind.
func drain(t *testing.T, s *feed.Stream, limit int) []syncpoint.Entry {
	t.Helper()
	var out []syncpoint.Entry
	for range 10000 {
		p, err := s.Page(context.Background(), limit, 0)
		if err != nil {
			t.Fatalf("page: %v", err)
		}
		if len(p.Entries) > limit {
			t.Fatalf("a page of %d entries; the limit is %d", len(p.Entries), limit)
		}
		out = append(out, p.Entries...)
		if !p.More {
			return out
		}
	}
	t.Fatal("the stream never ran dry")
	return nil
}

func names(st []feed.Status) string {
	var s []string
	for _, x := range st {
		s = append(s, x.Cursor.Name+"="+string(x.Status))
	}
	return fmt.Sprint(s)
}

// Open reads what a hello would: the user's, the device's, global and
// granted group channels, and nothing else.
func TestOpenAuthorizesAsTheHello(t *testing.T) {
	e := newEnv(t, nil)
	_, st := e.open(feed.Request{Claims: claims("u1", "g1", "g2"), DeviceID: "d1", Bizzes: []string{"chat", "config", "inbox", "team", "presence"}})
	want := "[chat/user:u1=ok config/global=ok inbox/device:d1=ok team/group:g1=ok team/group:g2=ok presence/user:u1=ok]"
	if got := names(st); got != want {
		t.Fatalf("channels %s, want %s", got, want)
	}
	_, st = e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", AllBizzes: true})
	if got := names(st); got != "[chat/user:u1=ok config/global=ok inbox/device:d1=ok pay/user:u1=ok short/user:u1=ok]" {
		t.Fatalf("every persistent biz: %s (no group is granted, presence is not persistent)", got)
	}

	cases := []struct {
		name string
		req  feed.Request
		code syncpoint.ErrorCode
	}{
		{"unknown biz", feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"nope"}}, syncpoint.CodeForbidden},
		{"device of another user", feed.Request{Claims: claims("u2"), DeviceID: "d1", Bizzes: []string{"chat"}}, syncpoint.CodeForbidden},
		{"bad device id", feed.Request{Claims: claims("u1"), DeviceID: "d 1", Bizzes: []string{"chat"}}, syncpoint.CodeInvalid},
		{"no device id", feed.Request{Claims: claims("u1"), Bizzes: []string{"chat"}}, syncpoint.CodeInvalid},
		{"long platform", feed.Request{Claims: claims("u1"), DeviceID: "d1", Platform: string(make([]byte, 65)), Bizzes: []string{"chat"}}, syncpoint.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := e.feed.Open(context.Background(), tc.req); syncpoint.Code(err) != tc.code {
				t.Fatalf("open: %v, want %s", err, tc.code)
			}
		})
	}
	d, err := e.store.Device(context.Background(), "d1")
	if err != nil || d.UserID != "u1" {
		t.Fatalf("device d1 = %+v, %v; want it bound to u1", d, err)
	}
}

// A position names ok, reset (other epoch, or ahead of the log) or gap
// (trimmed); an ok one becomes the device's sync point.
func TestStatusPerChannel(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 3 {
		e.msg("chat", u1, `{}`)
	}
	for range 20 {
		e.msg("short", u1, `{}`) // max_backlog 5: 16..20 are kept
	}
	chat, _ := e.store.Channel(ctx, chatU1)
	shortCh := syncpoint.Channel{Biz: "short", Target: u1}
	short, _ := e.store.Channel(ctx, shortCh)
	cases := []struct {
		name   string
		ch     syncpoint.Channel
		pos    syncpoint.Position
		status syncpoint.Status
		from   uint64
	}{
		{"nothing yet", chatU1, syncpoint.Position{}, syncpoint.StatusOK, 0},
		{"continues", chatU1, syncpoint.Position{Epoch: chat.Epoch, Seq: 2}, syncpoint.StatusOK, 2},
		{"other epoch", chatU1, syncpoint.Position{Epoch: "old", Seq: 2}, syncpoint.StatusReset, 0},
		{"ahead of the log", chatU1, syncpoint.Position{Epoch: chat.Epoch, Seq: 9}, syncpoint.StatusReset, 0},
		{"trimmed", shortCh, syncpoint.Position{Epoch: short.Epoch, Seq: 3}, syncpoint.StatusGap, 15},
		{"trimmed from zero", shortCh, syncpoint.Position{}, syncpoint.StatusGap, 15},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dev := fmt.Sprint("d", i)
			s, st := e.open(feed.Request{Claims: claims("u1"), DeviceID: dev, Bizzes: []string{tc.ch.Biz}, Positions: map[syncpoint.Channel]syncpoint.Position{tc.ch: tc.pos}})
			if st[0].Status != tc.status || st[0].From != tc.from || st[0].Position != tc.pos {
				t.Fatalf("status %+v, want %s from %d", st[0], tc.status, tc.from)
			}
			if c := s.Cursors()[0]; c.Seq != tc.from {
				t.Fatalf("cursor at %d, want %d", c.Seq, tc.from)
			}
			e.feed.Flush(ctx)
			points, _ := e.store.SyncPoints(ctx, dev)
			stored := len(points) == 1 && points[0].Position == tc.pos
			if want := tc.status == syncpoint.StatusOK && tc.pos.Seq > 0; stored != want {
				t.Fatalf("sync points %+v; want the position stored: %v", points, want)
			}
		})
	}
}

// Pages merge channels round robin, in seq order per channel, bounded, and
// move positions past what conditions and expiry leave out.
func TestPagesMergeBoundedAndFiltered(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 30 {
		e.msg("chat", u1, fmt.Sprint(i))
		e.msg("config", syncpoint.GlobalTarget(), fmt.Sprint(i))
	}
	e.publish(publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}, Data: json.RawMessage(`"android"`), Conditions: syncpoint.Conditions{Platforms: []string{"android"}}})
	e.publish(publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}, Data: json.RawMessage(`"old apps"`), Conditions: syncpoint.Conditions{MaxAppVersion: "1.0.0"}})
	s, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Platform: "ios", AppVersion: "2.0.0", Bizzes: []string{"chat", "config"}})

	// A full page comes from one channel; the next starts with the other,
	// so neither waits for the other's backlog.
	var all []syncpoint.Entry
	var firsts []string
	for range 2 {
		p, err := s.Page(context.Background(), 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) != 10 || !p.More {
			t.Fatalf("page: %d entries, more %v; want 10 and more", len(p.Entries), p.More)
		}
		firsts = append(firsts, p.Entries[0].Channel.String())
		all = append(all, p.Entries...)
	}
	if firsts[0] == firsts[1] {
		t.Fatalf("two pages both start with %s", firsts[0])
	}
	all = append(all, drain(t, s, 7)...)
	last := map[string]uint64{}
	for _, en := range all {
		ch := en.Channel.String()
		if en.Seq != last[ch]+1 {
			t.Fatalf("%s: seq %d after %d", ch, en.Seq, last[ch])
		}
		if en.Epoch == "" {
			t.Fatalf("%s seq %d has no epoch", ch, en.Seq)
		}
		last[ch] = en.Seq
	}
	if last["chat/user:u1"] != 30 || last["config/global"] != 30 {
		t.Fatalf("got up to %v; want 30 of each and neither filtered entry", last)
	}
	if c := s.Cursor(chatU1); c.Seq != 32 || c.Behind {
		t.Fatalf("chat cursor at %d (behind %v); want 32, past the two entries not for this device", c.Seq, c.Behind)
	}
	if s.Left() != 0 {
		t.Fatalf("Left = %d after draining", s.Left())
	}
	p, err := s.Page(context.Background(), 10, 0)
	if err != nil || len(p.Entries) != 0 || p.More {
		t.Fatalf("page after the end: %+v, %v", p, err)
	}

	// Bytes bound a page too, but one entry always goes.
	e.msg("chat", u1, fmt.Sprintf(`"%0100d"`, 0))
	e.msg("chat", u1, fmt.Sprintf(`"%0100d"`, 1))
	s2, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d2", Bizzes: []string{"chat"},
		Positions: map[syncpoint.Channel]syncpoint.Position{chatU1: s.Cursor(chatU1).Position()}})
	p, err = s2.Page(context.Background(), 10, 50)
	if err != nil || len(p.Entries) != 1 || !p.More || p.Positions[0].Position.Seq != 33 {
		t.Fatalf("byte-bounded page: %+v, %v; want one entry, position 33 and more", p, err)
	}
}

// One Read passes every channel that is behind while the sink has room,
// so a page is filled from the others when the first runs dry.
func TestReadTakesEveryChannelInTurn(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 3 {
		e.msg("chat", u1, fmt.Sprint(i))
		e.msg("config", syncpoint.GlobalTarget(), fmt.Sprint(i))
	}
	s, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat", "config"}})
	for range 2 {
		// The second turn starts past the channel the first ended on.
		p, err := s.Page(context.Background(), 4, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Entries) == 0 {
			t.Fatal("an empty page while both channels have entries")
		}
	}
	p, err := s.Page(context.Background(), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if p.More {
		t.Fatal("entries left after pages of 4, 4 and 100 of six")
	}
	s2, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d2", Bizzes: []string{"chat", "config"}})
	if p, err := s2.Page(context.Background(), 100, 0); err != nil || len(p.Entries) != 6 {
		t.Fatalf("one page of room for six took %d entries (%v); want both channels' three", len(p.Entries), err)
	}
}

// Confirmed positions are stored by Flush, never backwards within an
// epoch, and a new stream can start from them before they are written.
func TestConfirmedPositionsBecomeSyncPoints(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 5 {
		e.msg("chat", u1, `{}`)
	}
	s, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat"}})
	drain(t, s, 100)
	c := s.Cursor(chatU1)
	s.Confirm(c, syncpoint.Position{Epoch: c.Epoch, Seq: 4})
	s.Confirm(c, syncpoint.Position{Epoch: c.Epoch, Seq: 2})

	// Not flushed yet: FromStored sees the pending one.
	s2, st := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat"}, FromStored: true})
	if st[0].From != 4 {
		t.Fatalf("a stream from the stored positions starts after %d, want 4", st[0].From)
	}
	s2.Close()
	e.feed.Flush(ctx)
	points, err := e.store.SyncPoints(ctx, "d1")
	if err != nil || len(points) != 1 || points[0].Position.Seq != 4 {
		t.Fatalf("sync points %+v, %v; want seq 4, which a later, lower confirm did not undo", points, err)
	}
	_, st = e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat"}, FromStored: true})
	if st[0].From != 4 {
		t.Fatalf("after the flush the stream starts after %d, want 4", st[0].From)
	}
	// Given positions win over stored ones.
	_, st = e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat"}, FromStored: true,
		Positions: map[syncpoint.Channel]syncpoint.Position{chatU1: {Epoch: c.Epoch, Seq: 1}}})
	if st[0].From != 1 {
		t.Fatalf("with a given position the stream starts after %d, want 1", st[0].From)
	}
}

// Feed.Confirm, for callers without a stream, checks what the stream would
// have: the identity reads the channel, the epoch is current.
func TestConfirmWithoutStream(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 3 {
		e.msg("chat", u1, `{}`)
	}
	e.msg("chat", syncpoint.UserTarget("u2"), `{}`)
	info, _ := e.store.Channel(ctx, chatU1)
	id := syncpoint.Identity{DeviceID: "d1", UserID: "u1"}
	u2 := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u2")}
	mark := func(ch syncpoint.Channel, epoch string, seq uint64) []feed.ChannelPosition {
		return []feed.ChannelPosition{{Channel: ch, Position: syncpoint.Position{Epoch: epoch, Seq: seq}}}
	}
	if err := e.feed.Confirm(ctx, id, mark(u2, info.Epoch, 1)); syncpoint.Code(err) != syncpoint.CodeForbidden {
		t.Fatalf("confirm in another user's channel: %v, want forbidden", err)
	}
	if err := e.feed.Confirm(ctx, id, mark(syncpoint.Channel{Biz: "presence", Target: u1}, "", 1)); syncpoint.Code(err) != syncpoint.CodeInvalid {
		t.Fatalf("confirm in a non-persistent biz: %v, want invalid", err)
	}
	if err := e.feed.Confirm(ctx, id, mark(syncpoint.Channel{Biz: "nope", Target: u1}, "", 1)); syncpoint.Code(err) != syncpoint.CodeForbidden {
		t.Fatalf("confirm in an unknown biz: %v, want forbidden", err)
	}
	if err := e.feed.Confirm(ctx, id, mark(chatU1, "stale", 2)); err != nil {
		t.Fatal(err)
	}
	e.feed.Flush(ctx)
	if points, _ := e.store.SyncPoints(ctx, "d1"); len(points) != 0 {
		t.Fatalf("a position of another epoch was stored: %+v", points)
	}
	if err := e.feed.Confirm(ctx, id, mark(chatU1, info.Epoch, 99)); err != nil {
		t.Fatal(err)
	}
	e.feed.Flush(ctx)
	if points, _ := e.store.SyncPoints(ctx, "d1"); len(points) != 1 || points[0].Position.Seq != 3 {
		t.Fatalf("sync points %+v; want seq 3, the channel's last", points)
	}
}

// In a multi_device: false channel the user's next device starts where the
// user got to, on any device.
func TestUserWidePositions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	pay := syncpoint.Channel{Biz: "pay", Target: u1}
	for range 4 {
		e.msg("pay", u1, `{}`)
	}
	phone, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "phone", Bizzes: []string{"pay"}})
	drain(t, phone, 100)
	c := phone.Cursor(pay)
	phone.Confirm(c, syncpoint.Position{Epoch: c.Epoch, Seq: 3})
	if got := e.feed.UserPosition(pay); got.Seq != 3 {
		t.Fatalf("user position %+v while the phone reads, want 3", got)
	}
	_, st := e.open(feed.Request{Claims: claims("u1"), DeviceID: "tablet", Bizzes: []string{"pay"}})
	if st[0].From != 3 {
		t.Fatalf("the tablet starts after %d, want 3 (the phone's)", st[0].From)
	}
	e.feed.Flush(ctx)
	points, _ := e.store.UserPositions(ctx, "u1")
	if len(points) != 1 || points[0].Position.Seq != 3 {
		t.Fatalf("stored user positions %+v, want seq 3", points)
	}
}

// A watching stream wakes on a publish to its channels, not on others,
// and gets entries of non-persistent bizzes, which are never stored.
func TestWaitWakesOnNewEntries(t *testing.T) {
	e := newEnv(t, func(c *feed.Config) { c.QueueLimit = 3 })
	s, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"chat", "presence"}, Watch: true})
	if p, err := s.Page(context.Background(), 10, 0); err != nil || len(p.Entries) != 0 {
		t.Fatalf("first page %+v, %v; want nothing", p, err)
	}
	woke := make(chan error, 1)
	go func() { woke <- s.Wait(context.Background()) }()
	e.msg("chat", syncpoint.UserTarget("u2"), `"not for u1"`)
	e.msg("chat", u1, `"for u1"`)
	if err := <-woke; err != nil {
		t.Fatalf("wait: %v", err)
	}
	p, err := s.Page(context.Background(), 10, 0)
	if err != nil || len(p.Entries) != 1 || string(p.Entries[0].Data) != `"for u1"` {
		t.Fatalf("page after the wake: %+v, %v", p, err)
	}

	e.publish(publish.Request{Biz: "presence", Targets: []syncpoint.Target{u1}, Data: json.RawMessage(`"here"`)})
	if err := s.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	p, err = s.Page(context.Background(), 10, 0)
	if err != nil || len(p.Entries) != 1 || string(p.Entries[0].Data) != `"here"` || p.Entries[0].Seq != 0 || len(p.Positions) != 0 {
		t.Fatalf("live entry page: %+v, %v; want the entry, seq 0, no position", p, err)
	}

	// An entry that arrived before Wait is not missed.
	e.msg("chat", u1, `"early"`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Wait(ctx); err != nil {
		t.Fatalf("wait after an entry arrived: %v, want nil even with ctx done", err)
	}
	if err := s.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with nothing new and ctx done: %v", err)
	}

	// More live entries than the queue holds: the stream is a slow consumer.
	for range 4 {
		e.publish(publish.Request{Biz: "presence", Targets: []syncpoint.Target{u1}, Data: json.RawMessage(`"spam"`)})
	}
	if _, err := s.Page(context.Background(), 10, 0); syncpoint.Code(err) != syncpoint.CodeSlowConsumer {
		t.Fatalf("page after the queue overflowed: %v, want slow_consumer", err)
	}
}

// Revoking a token ends its streams at once and refuses an Open that
// raced it; other tokens' streams go on.
func TestRevoke(t *testing.T) {
	e := newEnv(t, nil)
	tok := claims("u1")
	tok.TokenID = "tok-1"
	other := claims("u1")
	other.TokenID = "tok-2"
	s, _ := e.open(feed.Request{Claims: tok, DeviceID: "d1", Bizzes: []string{"chat"}, Watch: true})
	s2, _ := e.open(feed.Request{Claims: other, DeviceID: "d2", Bizzes: []string{"chat"}, Watch: true})
	e.feed.Revoke("tok-1")
	select {
	case <-s.Revoked():
	default:
		t.Fatal("the stream's Revoked did not close")
	}
	if err := s.Wait(context.Background()); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("wait on a revoked stream: %v, want unauthorized", err)
	}
	select {
	case <-s2.Revoked():
		t.Fatal("another token's stream was revoked")
	default:
	}
	if _, _, err := e.feed.Open(context.Background(), feed.Request{Claims: tok, DeviceID: "d1", Bizzes: []string{"chat"}}); syncpoint.Code(err) != syncpoint.CodeUnauthorized {
		t.Fatalf("open with the revoked token: %v, want unauthorized", err)
	}
	e.feed.Revoke("") // JWTs have no id: nothing happens
}

// A stream finds each of its cursors by channel and by name, whether it
// has few (looked through) or many (kept in maps).
func TestCursorLookup(t *testing.T) {
	e := newEnv(t, nil)
	for _, groups := range [][]string{{"g1"}, {"g1", "g2", "g3", "g4", "g5", "g6", "g7", "g8", "g9", "g10"}} {
		s, _ := e.open(feed.Request{Claims: claims("u1", groups...), DeviceID: "d1", Bizzes: []string{"chat", "team"}})
		cursors := s.Cursors()
		if len(cursors) != 1+len(groups) {
			t.Fatalf("%d cursors for %d groups", len(cursors), len(groups))
		}
		for _, c := range cursors {
			if s.Cursor(c.Channel) != c || s.CursorNamed(c.Name) != c {
				t.Fatalf("%d cursors: %s not found as itself", len(cursors), c.Name)
			}
		}
		if s.Cursor(syncpoint.Channel{Biz: "team", Target: syncpoint.GroupTarget("g11")}) != nil || s.CursorNamed("team/group:g11") != nil {
			t.Fatalf("%d cursors: found a channel not in the stream", len(cursors))
		}
	}
}

// OnRevoke tells an owner with no goroutine on Revoked: once, at the
// revocation, or at once for a stream already revoked; never after stop.
func TestOnRevoke(t *testing.T) {
	e := newEnv(t, nil)
	tok := claims("u1")
	tok.TokenID = "tok-1"
	s, _ := e.open(feed.Request{Claims: tok, DeviceID: "d1", Bizzes: []string{"chat"}})
	stopped, _ := e.open(feed.Request{Claims: tok, DeviceID: "d2", Bizzes: []string{"chat"}})
	var calls, stoppedCalls int
	s.OnRevoke(func() { calls++ })
	stop := stopped.OnRevoke(func() { stoppedCalls++ })
	if s.IsRevoked() || calls != 0 {
		t.Fatal("revoked before Revoke")
	}
	if !stop() {
		t.Fatal("stop of a registered callback reported false")
	}
	e.feed.Revoke("tok-1")
	if calls != 1 || !s.IsRevoked() || stoppedCalls != 0 {
		t.Fatalf("after Revoke: %d calls, revoked %v, %d calls after stop", calls, s.IsRevoked(), stoppedCalls)
	}
	select {
	case <-s.Revoked(): // made after the revocation, closed already
	default:
		t.Fatal("Revoked of a revoked stream is not closed")
	}
	late := 0
	if s.OnRevoke(func() { late++ })(); late != 1 {
		t.Fatalf("OnRevoke on a revoked stream called %d times, want once at once", late)
	}
}

// A channel trimmed or reset under a stream makes Read say so; Recheck
// gives the status a new stream would get.
func TestGapAndResetWhileReading(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	short := syncpoint.Channel{Biz: "short", Target: u1}
	e.msg("short", u1, `{}`)
	s, _ := e.open(feed.Request{Claims: claims("u1"), DeviceID: "d1", Bizzes: []string{"short", "chat"}, Watch: true})
	drain(t, s, 10)
	for range 10 {
		e.msg("short", u1, `{}`) // max_backlog 5
	}
	_, err := s.Page(ctx, 10, 0)
	var ce *feed.ChannelError
	if !errors.As(err, &ce) || ce.Status != syncpoint.StatusGap || ce.Cursor.Channel != short {
		t.Fatalf("read after the trim: %v, want a gap in %s", err, short)
	}
	st, err := s.Recheck(ctx, ce.Cursor)
	if err != nil || st.Status != syncpoint.StatusGap || st.From != 6 {
		t.Fatalf("recheck: %+v, %v; want gap from 6", st, err)
	}
	if got := drain(t, s, 10); len(got) != 5 || got[0].Seq != 7 {
		t.Fatalf("after the gap got %d entries from seq %d, want 7..11", len(got), got[0].Seq)
	}

	e.msg("chat", u1, `{}`)
	drain(t, s, 10)
	if _, err := e.store.ResetChannel(ctx, chatU1); err != nil {
		t.Fatal(err)
	}
	e.feed.ChannelChanged(chatU1)
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	e.msg("chat", u1, `"new history"`)
	_, err = s.Page(ctx, 10, 0)
	if !errors.As(err, &ce) || ce.Status != syncpoint.StatusReset {
		t.Fatalf("read after the reset: %v, want reset", err)
	}
	if st, err := s.Recheck(ctx, ce.Cursor); err != nil || st.Status != syncpoint.StatusReset || st.From != 0 {
		t.Fatalf("recheck after reset: %+v, %v", st, err)
	}
	if got := drain(t, s, 10); len(got) != 1 || string(got[0].Data) != `"new history"` {
		t.Fatalf("after the reset got %+v", got)
	}
}
