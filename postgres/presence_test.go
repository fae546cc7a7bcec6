package postgres

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

func sessionIDs(ps []syncpoint.Presence) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Session)
	}
	return out
}

func wantSessions(tb testing.TB, what string, ps []syncpoint.Presence, err error, want ...string) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("%s: %v", what, err)
	}
	if got := sessionIDs(ps); !slices.Equal(got, append([]string{}, want...)) {
		tb.Fatalf("%s: sessions %v, want %v", what, got, want)
	}
}

// TestDirectory lists sessions joined through two handles, as two nodes
// share one database: oldest first, join order breaking ties, beats
// replacing a node's set, and the sessions of a silent node dropping out
// after the grace period, to be deleted later.
func TestDirectory(t *testing.T) {
	url := MustCreateSchema(t)
	t0 := time.Date(2030, 1, 2, 3, 4, 5, 6000, time.UTC)
	clk := clock.NewFake(t0)
	const grace = 10 * time.Second
	opts := Options{Clock: clk, PresenceGrace: grace}
	da := MustOpenStoreURL(t, url, opts).Directory()
	db := MustOpenStoreURL(t, url, opts).Directory()
	ctx := context.Background()

	pres := func(session, node, device, user string, at time.Duration) syncpoint.Presence {
		return syncpoint.Presence{Session: session, Node: node, DeviceID: device, UserID: user, Transport: "ws", ConnectedAt: t0.Add(at)}
	}
	a1 := pres("a1", "a", "d1", "u1", 0)
	a1.Singles = []syncpoint.Channel{chatU1, {Biz: "notes", Target: syncpoint.UserTarget("u1")}}
	a2 := pres("a2", "a", "d2", "u1", time.Second)
	b1 := pres("b1", "b", "d1", "u1", -time.Second)
	b2 := pres("b2", "b", "d1", "u1", 0) // connected with a1: joined after it
	for _, j := range []struct {
		d *Directory
		p syncpoint.Presence
	}{{da, a1}, {da, a2}, {db, b1}, {db, b2}} {
		if err := j.d.Join(ctx, j.p); err != nil {
			t.Fatal(err)
		}
	}
	for name, d := range map[string]*Directory{"a": da, "b": db} {
		ps, err := d.Device(ctx, "d1")
		wantSessions(t, "device d1 on node "+name, ps, err, "b1", "a1", "b2")
		got := ps[1]
		if got.Node != "a" || got.DeviceID != "d1" || got.UserID != "u1" || got.Transport != "ws" ||
			!got.ConnectedAt.Equal(a1.ConnectedAt) || !slices.Equal(got.Singles, a1.Singles) {
			t.Fatalf("a1 read back as %+v, want %+v", got, a1)
		}
		if ps[0].Singles != nil {
			t.Fatalf("b1 read back with singles %v, want none", ps[0].Singles)
		}
		ps, err = d.User(ctx, "u1")
		wantSessions(t, "user u1 on node "+name, ps, err, "b1", "a1", "b2", "a2")
		ps, err = d.Device(ctx, "nobody")
		wantSessions(t, "an unknown device", ps, err)
	}

	// Leave, once and again.
	for range 2 {
		if err := db.Leave(ctx, "b2"); err != nil {
			t.Fatal(err)
		}
	}
	ps, err := da.Device(ctx, "d1")
	wantSessions(t, "device d1 after b2 left", ps, err, "b1", "a1")

	// A beat makes the node's sessions exactly the given ones: a1 goes,
	// a2 changes device, a3 is new and sorts after a2 of the same time.
	a2.DeviceID = "d3"
	a3 := pres("a3", "elsewhere", "d3", "u1", time.Second)
	if err := da.Beat(ctx, "a", []syncpoint.Presence{a2, a3, a3}); err != nil {
		t.Fatal(err)
	}
	ps, err = db.User(ctx, "u1")
	wantSessions(t, "user u1 after a's beat", ps, err, "b1", "a2", "a3")
	ps, err = db.Device(ctx, "d3")
	wantSessions(t, "device d3 after a's beat", ps, err, "a2", "a3")
	if ps[1].Node != "a" {
		t.Fatalf("a3 beaten by node a is on node %q", ps[1].Node)
	}
	// Repeating a beat changes nothing, order included.
	if err := da.Beat(ctx, "a", []syncpoint.Presence{a3, a2}); err != nil {
		t.Fatal(err)
	}
	ps, err = db.Device(ctx, "d3")
	wantSessions(t, "device d3 after the same beat", ps, err, "a2", "a3")

	// Node a falls silent; b beats on. a's sessions are listed for the
	// grace period, and not after.
	clk.Advance(grace - time.Millisecond)
	if err := db.Beat(ctx, "b", []syncpoint.Presence{b1}); err != nil {
		t.Fatal(err)
	}
	ps, err = db.User(ctx, "u1")
	wantSessions(t, "user u1 just within a's grace", ps, err, "b1", "a2", "a3")
	clk.Advance(2 * time.Millisecond)
	ps, err = db.User(ctx, "u1")
	wantSessions(t, "user u1 past a's grace", ps, err, "b1")
	// A Join of the silent node waits for its next beat, which lists
	// what it holds.
	a4 := pres("a4", "a", "d4", "u1", 2*time.Second)
	if err := da.Join(ctx, a4); err != nil {
		t.Fatal(err)
	}
	ps, err = db.User(ctx, "u1")
	wantSessions(t, "user u1 after a join of the silent node", ps, err, "b1")
	if err := da.Beat(ctx, "a", []syncpoint.Presence{a3, a4}); err != nil {
		t.Fatal(err)
	}
	ps, err = db.User(ctx, "u1")
	wantSessions(t, "user u1 after a beats again", ps, err, "b1", "a3", "a4")

	// A node's first Join lists it at once.
	c1 := pres("c1", "c", "d1", "u2", 0)
	if err := db.Join(ctx, c1); err != nil {
		t.Fatal(err)
	}
	ps, err = da.User(ctx, "u2")
	wantSessions(t, "user u2 on a new node", ps, err, "c1")

	// Long silent nodes go, rows and all, at another node's beat.
	clk.Advance(deadNodeFactor*grace + time.Second)
	if err := db.Beat(ctx, "b", nil); err != nil {
		t.Fatal(err)
	}
	var sessions, nodes int
	if err := db.s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM presence), (SELECT count(*) FROM presence_nodes)`).Scan(&sessions, &nodes); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 || nodes != 1 {
		t.Fatalf("after a beat of b with no sessions, long past a's and c's last beat: %d sessions and %d nodes, want 0 and 1 (b)", sessions, nodes)
	}

	for name, err := range map[string]error{
		"Join without a session": da.Join(ctx, syncpoint.Presence{Node: "a", DeviceID: "d1", UserID: "u1"}),
		"Join without a node":    da.Join(ctx, syncpoint.Presence{Session: "x", DeviceID: "d1", UserID: "u1"}),
		"Join with a bad single": da.Join(ctx, syncpoint.Presence{Session: "x", Node: "a", DeviceID: "d1", UserID: "u1", Singles: []syncpoint.Channel{{Biz: "Bad!"}}}),
		"Join with a NUL":        da.Join(ctx, syncpoint.Presence{Session: "x\x00", Node: "a", DeviceID: "d1", UserID: "u1"}),
		"Beat without a node":    da.Beat(ctx, "", nil),
		"Beat of a bad presence": da.Beat(ctx, "a", []syncpoint.Presence{{Session: "x"}}),
	} {
		if syncpoint.Code(err) != syncpoint.CodeInvalid {
			t.Errorf("%s: %v, want code %q", name, err, syncpoint.CodeInvalid)
		}
	}
	if err := da.Leave(ctx, "x\x00"); err != nil {
		t.Fatalf("Leave of a session that cannot exist: %v", err)
	}
	ps, err = da.Device(ctx, "d\x00")
	wantSessions(t, "a device that cannot exist", ps, err)
}
