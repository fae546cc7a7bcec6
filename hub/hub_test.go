package hub_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/wire"
)

var u1 = syncpoint.UserTarget("u1")

func TestBacklogThenLiveOnEveryTransport(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("config", syncpoint.GlobalTarget(), `{"flag":true}`)
	for _, tr := range []transport{wsJSON, wsProto, tcpRaw, tcpTLS} {
		t.Run(string(tr), func(t *testing.T) {
			user := syncpoint.UserTarget("u-" + string(tr))
			for i := range 5 {
				e.publish("chat", user, fmt.Sprintf(`{"n":%d}`, i))
			}
			c := e.dial(tr)
			w := c.mustHello(e.token(user.ID), "dev-"+string(tr), "chat", "config")
			if w.SessionID == "" || len(w.Channels) != 2 {
				t.Fatalf("welcome = %+v, want a session id and 2 channels", w)
			}
			for _, st := range w.Channels {
				if st.Status != "ok" {
					t.Fatalf("channel %s status %s, want ok", st.Channel, st.Status)
				}
			}
			c.collect(6, 5*time.Second)
			for i := 5; i < 8; i++ {
				e.publish("chat", user, fmt.Sprintf(`{"n":%d}`, i))
			}
			got := c.collect(9, 5*time.Second)
			checkSeqs(t, got, "chat/"+user.String(), 1, 8)
			if string(got[0].Data) != `{"n":0}` && string(got[1].Data) != `{"n":0}` {
				t.Fatalf("first entries carry %s and %s, want {\"n\":0} among them", got[0].Data, got[1].Data)
			}
		})
	}
}

func TestAcksBecomeStoredSyncPoints(t *testing.T) {
	e := newEnv(t, nil)
	for range 3 {
		e.publish("chat", u1, `{}`)
	}
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat")
	c.collect(3, 5*time.Second)
	ch := syncpoint.Channel{Biz: "chat", Target: u1}
	waitFor(t, "sync point stored", func() bool {
		points, err := e.store.SyncPoints(context.Background(), "d1")
		return err == nil && len(points) == 1 && points[0].Channel == ch && points[0].Position.Seq == 3
	})
	if !e.hub.Online("d1") {
		t.Fatal("d1 not online while connected")
	}
	d, err := e.store.Device(context.Background(), "d1")
	if err != nil || d.UserID != "u1" || d.Platform != "ios" || d.AppVersion != "2.0.0" {
		t.Fatalf("device = %+v, %v", d, err)
	}
}

// The seam: a device connects while a publisher races it; it must get every
// entry exactly once, in order, whichever of backlog or live carried it.
func TestSeamUnderRacingPublishes(t *testing.T) {
	e := newEnv(t, nil)
	const total = 3000
	var published atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			e.publish("chat", u1, fmt.Sprintf(`{"i":%d}`, i))
			published.Add(1)
		}
	}()
	waitFor(t, "some backlog", func() bool { return published.Load() > 200 })
	c := e.dial(wsProto)
	c.mustHello(e.token("u1"), "d1", "chat")
	got := c.collect(total, 30*time.Second)
	<-done
	checkSeqs(t, got, "chat/user:u1", 1, total)
}

// Many forced reconnects while publishing: the client keeps its own sync
// point, acks only some of what it got, and drops the connection at random.
// In the end it has every entry exactly once, in order.
func TestOrderAcrossForcedReconnects(t *testing.T) {
	e := newEnv(t, nil)
	const total = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			e.publish("chat", u1, fmt.Sprintf(`{"i":%d}`, i))
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	positions := map[string]wire.Position{}
	var got []wire.Entry
	for round := 0; len(got) < total; round++ {
		if round > 500 {
			t.Fatalf("no progress: %d of %d after %d rounds", len(got), total, round)
		}
		c := e.dial([]transport{wsJSON, wsProto, tcpRaw}[round%3])
		c.positions = positions
		c.got = got
		c.mustHello(e.token("u1"), "d1", "chat")
		want := min(len(got)+1+rng.IntN(300), total)
		c.collect(want, 30*time.Second)
		got = c.got
		c.close()
	}
	<-done
	checkSeqs(t, got, "chat/user:u1", 1, total)
}

func TestResetAndGap(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	for range 3 {
		e.publish("chat", u1, `{}`)
	}
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat")
	c.collect(3, 5*time.Second)
	oldEpoch := c.positions["chat/user:u1"].Epoch

	t.Run("reset while connected closes with resync", func(t *testing.T) {
		ch := syncpoint.Channel{Biz: "chat", Target: u1}
		if _, err := e.store.ResetChannel(ctx, ch); err != nil {
			t.Fatal(err)
		}
		e.hub.ResetChannel(ch)
		if got := c.waitClose(5 * time.Second); got.Code != wire.CloseResync {
			t.Fatalf("close = %v, want resync", got)
		}
	})
	t.Run("welcome says reset for the old epoch", func(t *testing.T) {
		e.publish("chat", u1, `{"after":"reset"}`)
		c2 := e.dial(wsJSON)
		c2.positions["chat/user:u1"] = wire.Position{Channel: "chat/user:u1", Epoch: oldEpoch, Seq: 3}
		w := c2.mustHello(e.token("u1"), "d1", "chat")
		st := w.Channels[0]
		if st.Status != "reset" || st.Epoch == oldEpoch || st.From != 0 {
			t.Fatalf("status = %+v, want reset with a new epoch from 0", st)
		}
		got := c2.collect(1, 5*time.Second)
		if got[0].Seq != 1 || string(got[0].Data) != `{"after":"reset"}` {
			t.Fatalf("after reset got %+v", got[0])
		}
	})
	t.Run("gap when entries were trimmed", func(t *testing.T) {
		u := syncpoint.UserTarget("gappy")
		for range 20 {
			e.publish("short", u, `{}`) // max_backlog 5
		}
		c3 := e.dial(wsJSON)
		info, _ := e.store.Channel(ctx, syncpoint.Channel{Biz: "short", Target: u})
		c3.positions["short/user:gappy"] = wire.Position{Channel: "short/user:gappy", Epoch: info.Epoch, Seq: 3}
		w := c3.mustHello(e.token("gappy"), "dg", "short")
		st := w.Channels[0]
		if st.Status != "gap" || st.FirstSeq != 16 || st.From != 15 {
			t.Fatalf("status = %+v, want gap, first_seq 16, from 15", st)
		}
		checkSeqs(t, c3.collect(5, 5*time.Second), "short/user:gappy", 16, 20)
	})
}

func TestConditionsAndExpiry(t *testing.T) {
	e := newEnv(t, nil)
	pub := func(data string, cond syncpoint.Conditions, ttl time.Duration) {
		e.publishReq(publish.Request{Biz: "chat", Targets: []syncpoint.Target{u1}, Data: []byte(data), Conditions: cond, TTL: ttl})
	}
	pub(`"all"`, syncpoint.Conditions{}, 0)
	pub(`"android only"`, syncpoint.Conditions{Platforms: []string{"android"}}, 0)
	pub(`"ios"`, syncpoint.Conditions{Platforms: []string{"iOS", "web"}}, 0)
	pub(`"too new"`, syncpoint.Conditions{MinAppVersion: "2.1.0"}, 0)
	pub(`"too old"`, syncpoint.Conditions{MaxAppVersion: "1.9.9"}, 0)
	pub(`"in range"`, syncpoint.Conditions{MinAppVersion: "1.0", MaxAppVersion: "2.0.0"}, 0)
	pub(`"expires"`, syncpoint.Conditions{}, 50*time.Millisecond)
	time.Sleep(60 * time.Millisecond) // let the last entry expire; the store filters by wall clock
	pub(`"last"`, syncpoint.Conditions{}, 0)

	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat") // platform ios, app 2.0.0
	got := c.collect(4, 5*time.Second)
	var datas []string
	for _, g := range got {
		datas = append(datas, string(g.Data))
	}
	want := []string{`"all"`, `"ios"`, `"in range"`, `"last"`}
	if fmt.Sprint(datas) != fmt.Sprint(want) {
		t.Fatalf("device received %v, want %v", datas, want)
	}
	if p := c.positions["chat/user:u1"]; p.Seq != 8 {
		t.Fatalf("position = %d, want 8: it must move past entries not sent", p.Seq)
	}
	// Live entries are filtered the same way.
	pub(`"live android"`, syncpoint.Conditions{Platforms: []string{"android"}}, 0)
	pub(`"live ios"`, syncpoint.Conditions{Platforms: []string{"ios"}}, 0)
	got = c.collect(5, 5*time.Second)
	if string(got[4].Data) != `"live ios"` || got[4].Seq != 10 {
		t.Fatalf("live: got %s seq %d, want \"live ios\" seq 10", got[4].Data, got[4].Seq)
	}
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	e.publish("chat", syncpoint.UserTarget("u2"), `"secret of u2"`)
	e.publish("team", syncpoint.GroupTarget("g1"), `"g1 news"`)
	e.publish("team", syncpoint.GroupTarget("g2"), `"g2 news"`)
	e.publish("inbox", syncpoint.DeviceTarget("d-other"), `"for another device"`)

	t.Run("only own channels, granted groups and own device", func(t *testing.T) {
		c := e.dial(wsJSON)
		c.positions["chat/user:u2"] = wire.Position{Channel: "chat/user:u2"} // asking for u2's log gets nothing
		w := c.mustHello(e.token("u1", "g1"), "d1", "chat", "team", "inbox")
		var names []string
		for _, st := range w.Channels {
			names = append(names, st.Channel)
		}
		if fmt.Sprint(names) != "[chat/user:u1 team/group:g1 inbox/device:d1]" {
			t.Fatalf("channels = %v", names)
		}
		got := c.collect(1, 5*time.Second)
		if string(got[0].Data) != `"g1 news"` {
			t.Fatalf("got %s, want only g1 news", got[0].Data)
		}
	})
	cases := []struct {
		name  string
		token string
		dev   string
		bizz  []string
		code  wire.CloseCode
	}{
		{"forged token", forge(e.token("u1")), "d9", []string{"chat"}, wire.CloseUnauthorized},
		{"expired token", expired(t), "d9", []string{"chat"}, wire.CloseUnauthorized},
		{"no token", "", "d9", []string{"chat"}, wire.CloseUnauthorized},
		{"unknown biz", e.token("u1"), "d9", []string{"nope"}, wire.CloseForbidden},
		{"device of another user", e.token("u2"), "d1", []string{"chat"}, wire.CloseForbidden},
		{"bad device id", e.token("u1"), "d 1/x", []string{"chat"}, wire.CloseBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := e.dial(tcpRaw)
			_, err := c.hello(tc.token, tc.dev, tc.bizz...)
			if err == nil || c.closed == nil || c.closed.Code != tc.code || !c.closed.Fatal {
				t.Fatalf("hello: err %v, error frame %+v; want fatal %v", err, c.closed, tc.code)
			}
		})
	}
	t.Run("unsupported version", func(t *testing.T) {
		c := e.dial(wsJSON)
		_, err := c.helloWith(&wire.Hello{Versions: []uint32{99}, Token: e.token("u1"), DeviceID: "d1"})
		if err == nil || c.closed.Code != wire.CloseUnsupportedVersion {
			t.Fatalf("err %v frame %+v", err, c.closed)
		}
	})
	t.Run("first frame not hello", func(t *testing.T) {
		c := e.dial(wsJSON)
		c.send(&wire.Frame{Ping: &wire.Ping{Nonce: 1}})
		if got := c.waitClose(5 * time.Second); got.Code != wire.CloseBadRequest {
			t.Fatalf("close %+v, want bad request", got)
		}
	})
}

func TestSlowConsumerIsCutAndResumes(t *testing.T) {
	logs := &logBuffer{}
	e := newEnv(t, func(c *hub.Config) {
		c.QueueLimit = 32
		c.MaxBatch = 8
		c.WriteTimeout = time.Hour // only the queue bound may end it
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	})
	c := e.dial(tcpRaw)
	c.mustHello(e.token("u1"), "d1", "chat")
	// Stop reading; publish big entries until the socket buffers fill and the
	// queue overflows.
	big := fmt.Sprintf(`"%0100000d"`, 0)
	published := 0
	for published < 2000 && e.hub.Online("d1") {
		e.publish("chat", u1, big)
		published++
	}
	if e.hub.Online("d1") {
		t.Fatalf("still online after %d unread 100 KB entries; the queue bound did not hold", published)
	}
	if got := c.waitClose(10 * time.Second); got.Code != wire.CloseSlowConsumer {
		t.Fatalf("close = %+v, want slow consumer", got)
	}
	logs.waitLine(t, "slow consumer cut", map[string]any{"level": "WARN", "device": "d1", "user": "u1"})
	// Resume from the client's own position and miss nothing.
	c2 := e.dial(tcpRaw)
	c2.positions, c2.got = c.positions, c.got
	c2.mustHello(e.token("u1"), "d1", "chat")
	checkSeqs(t, c2.collect(published, 30*time.Second), "chat/user:u1", 1, uint64(published))
}

func TestHeartbeatTimeout(t *testing.T) {
	e := newEnv(t, func(c *hub.Config) { c.HeartbeatInterval = 40 * time.Millisecond })
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat")
	// Read without answering pings, as a half-open peer would.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		f, err := c.read(ctx)
		cancel()
		if err != nil {
			t.Fatalf("no heartbeat timeout: %v", err)
		}
		if f.Error != nil {
			if f.Error.Code != wire.CloseHeartbeatTimeout {
				t.Fatalf("error %+v, want heartbeat timeout", f.Error)
			}
			checkReason(t, f.Error)
			return
		}
	}
}

func TestMultiDeviceFalseGoesToNewestDevice(t *testing.T) {
	e := newEnv(t, nil)
	older := e.dial(wsJSON)
	older.mustHello(e.token("u1"), "phone", "pay")
	e.publish("pay", u1, `"one"`)
	older.collect(1, 5*time.Second)
	waitFor(t, "older device's ack stored for the user", func() bool {
		points, _ := e.store.UserPositions(context.Background(), "u1")
		return len(points) == 1 && points[0].Position.Seq == 1
	})

	newer := e.dial(wsJSON)
	newer.mustHello(e.token("u1"), "tablet", "pay")
	e.publish("pay", u1, `"two"`)
	got := newer.collect(1, 5*time.Second)
	if string(got[0].Data) != `"two"` {
		t.Fatalf("newest device got %s first, want \"two\" (\"one\" was taken by the older device)", got[0].Data)
	}
	waitFor(t, "user position stored", func() bool {
		points, _ := e.store.UserPositions(context.Background(), "u1")
		return len(points) == 1 && points[0].Position.Seq == 2
	})
	newer.close()
	waitFor(t, "tablet offline", func() bool { return !e.hub.Online("tablet") })
	e.publish("pay", u1, `"three"`)
	// Anything the older device had been sent while the newer one was online
	// would come first; it must get exactly "three" next.
	got = older.collect(2, 5*time.Second)
	if len(got) != 2 || string(got[1].Data) != `"three"` || got[1].Seq != 3 {
		t.Fatalf("older device took over with %s seq %d, want \"three\" seq 3 and nothing else", got[1].Data, got[1].Seq)
	}
}

// An older device that takes over a multi_device: false channel continues
// from the user's position, even when it never learned the channel's epoch
// (the channel was empty when it connected).
func TestMultiDeviceFalseTakeoverSkipsWhatTheUserAcked(t *testing.T) {
	e := newEnv(t, nil)
	older := e.dial(wsJSON)
	older.mustHello(e.token("u1"), "phone", "pay")
	newer := e.dial(tcpRaw)
	newer.mustHello(e.token("u1"), "tablet", "pay")
	e.publish("pay", u1, `"one"`)
	newer.collect(1, 5*time.Second) // acks seq 1
	waitFor(t, "tablet's ack stored", func() bool {
		points, _ := e.store.SyncPoints(context.Background(), "tablet")
		return len(points) == 1 && points[0].Position.Seq == 1
	})
	newer.close()
	waitFor(t, "tablet offline", func() bool { return !e.hub.Online("tablet") })
	e.publish("pay", u1, `"two"`)
	got := older.collect(1, 5*time.Second)
	if got[0].Seq != 2 || string(got[0].Data) != `"two"` {
		t.Fatalf("the phone took over with seq %d %s, want seq 2 \"two\": seq 1 was acked by the tablet", got[0].Seq, got[0].Data)
	}
}

func TestEphemeralReachesOnlyOnlineDevices(t *testing.T) {
	e := newEnv(t, nil)
	e.publishReq(publish.Request{Biz: "presence", Targets: []syncpoint.Target{u1}, Data: []byte(`"before"`)})
	c := e.dial(wsProto)
	c.mustHello(e.token("u1"), "d1", "presence", "chat")
	e.publishReq(publish.Request{Biz: "presence", Targets: []syncpoint.Target{u1}, Data: []byte(`"online"`)})
	e.publish("chat", u1, `"stored"`)
	got := c.collect(2, 5*time.Second)
	if string(got[0].Data) != `"online"` || got[0].Seq != 0 || string(got[1].Data) != `"stored"` {
		t.Fatalf("got %s (seq %d), %s; want only the live ephemeral entry then the stored one", got[0].Data, got[0].Seq, got[1].Data)
	}
	if _, err := e.store.Channel(context.Background(), syncpoint.Channel{Biz: "presence", Target: u1}); err == nil {
		t.Fatal("an ephemeral biz's entries were stored")
	}
}

func TestMalformedFrameKeepsSessionUsable(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat")
	c.send(&wire.Frame{Ack: &wire.Ack{Positions: []wire.Position{{Channel: "not a channel", Seq: 1}}}})
	f, err := c.recv(5 * time.Second)
	if err != nil || f.Error == nil || f.Error.Fatal {
		t.Fatalf("got %+v, %v; want a non-fatal error", f, err)
	}
	e.publish("chat", u1, `"still works"`)
	if got := c.collect(1, 5*time.Second); string(got[0].Data) != `"still works"` {
		t.Fatalf("got %s", got[0].Data)
	}
}

func TestServerShutdownSaysGoingAway(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.hub.Close() }()
	if got := c.waitClose(5 * time.Second); got.Code != wire.CloseGoingAway {
		t.Fatalf("close = %+v, want going away", got)
	}
	wg.Wait()
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// forge signs the same claims with a secret the server does not know.
func forge(string) string {
	tok, _ := auth.Mint([]byte("not-the-server-secret-xyz"), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	return tok
}

func mintAt(at time.Time) (string, error) {
	return auth.Mint(testSecret, auth.Claims{User: "u1", ExpiresAt: at.Add(time.Hour)}, at)
}

func expired(t testing.TB) string {
	t.Helper()
	past := time.Now().Add(-2 * time.Hour)
	tok, err := mintAt(past)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
