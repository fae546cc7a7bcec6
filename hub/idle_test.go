package hub_test

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// goroutinesIn counts the goroutines whose stack passes through fn.
func goroutinesIn(fn string) int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	n := 0
	for _, g := range bytes.Split(buf.Bytes(), []byte("\n\n")) {
		if bytes.Contains(g, []byte(fn)) {
			n++
		}
	}
	return n
}

// An idle session holds its reader only: the writer starts for what there
// is to send and ends after it, on every transport, and starts again for
// the next entry.
func TestIdleSessionHasNoWriter(t *testing.T) {
	e := newEnv(t, nil)
	const perTransport = 5
	var clients []*client
	for _, tr := range []transport{wsJSON, wsProto, tcpRaw, tcpTLS} {
		for i := range perTransport {
			user := fmt.Sprintf("u-%s-%d", tr, i)
			c := e.dial(tr)
			c.mustHello(e.token(user), "d-"+user, "chat")
			e.publish("chat", syncpoint.UserTarget(user), `"first"`)
			clients = append(clients, c)
		}
	}
	for _, c := range clients {
		c.collect(1, 5*time.Second)
	}
	waitFor(t, "one goroutine a session, its reader", func() bool {
		return goroutinesIn("hub.(*session).") == len(clients) && goroutinesIn("hub.(*session).readLoop") == len(clients)
	})
	for i, c := range clients {
		user := fmt.Sprintf("u-%s-%d", c.tr, i%perTransport)
		e.publish("chat", syncpoint.UserTarget(user), `"second"`)
		if got := c.collect(2, 5*time.Second); string(got[1].Data) != `"second"` {
			t.Fatalf("%s: second entry %s", user, got[1].Data)
		}
	}
	waitFor(t, "the writers ended again", func() bool { return goroutinesIn("hub.(*session).") == len(clients) })
}

// A quiet session parks its reader: it has no goroutine at all until the
// device sends something, over every transport with a file descriptor
// (TLS keeps its reader). It parks when it opens, and again after each
// heartbeat, and a parked session still takes pushes and acks, sees its
// device hang up, and closes with the hub.
func TestQuietSessionParks(t *testing.T) {
	e := newEnv(t, nil)
	const perTransport = 3
	type dev struct {
		c    *client
		user string
	}
	var devs []dev
	tlsDevs := 0
	for _, tr := range []transport{wsJSON, wsProto, tcpRaw, tcpTLS} {
		for i := range perTransport {
			user := fmt.Sprintf("u-%s-%d", tr, i)
			c := e.dial(tr)
			c.mustHello(e.token(user), "d-"+user, "chat")
			devs = append(devs, dev{c, user})
			if tr == tcpTLS {
				tlsDevs++
			}
		}
	}
	parked := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool {
			return goroutinesIn("hub.(*session).") == tlsDevs && goroutinesIn("hub.(*session).readLoop") == tlsDevs
		})
	}
	parked("every session but the TLS ones parked once opened")

	for round := 1; round <= 3; round++ {
		for _, d := range devs {
			e.publish("chat", syncpoint.UserTarget(d.user), fmt.Sprintf(`"entry %d"`, round))
		}
		for _, d := range devs {
			if got := d.c.collect(round, 5*time.Second); string(got[round-1].Data) != fmt.Sprintf(`"entry %d"`, round) {
				t.Fatalf("%s round %d: got %s", d.user, round, got[round-1].Data)
			}
		}
		// The acks woke every reader, and they stay awake for more.
		waitFor(t, "the readers awake after the acks", func() bool {
			return goroutinesIn("hub.(*session).readLoop") == len(devs)
		})
		// A heartbeat from the device: the reader answers and parks.
		for i, d := range devs {
			nonce := uint64(round*100 + i)
			d.c.send(&wire.Frame{Ping: &wire.Ping{Nonce: nonce}})
			f, err := d.c.recv(5 * time.Second)
			if err != nil || f.Pong == nil || f.Pong.Nonce != nonce {
				t.Fatalf("%s: ping %d answered with %v, %v", d.user, nonce, f, err)
			}
		}
		parked(fmt.Sprintf("round %d: parked again after the heartbeat", round))
	}

	// A parked session sees its device hang up.
	gone := devs[0]
	gone.c.close()
	waitFor(t, "the hung-up session ended", func() bool { return !e.hub.Online("d-" + gone.user) })
	for _, d := range devs[1:] {
		if !e.hub.Online("d-" + d.user) {
			t.Fatalf("%s went offline with another's hang-up", d.user)
		}
	}

	// And closes with the hub, sending its close.
	closed := make(chan struct{})
	go func() { e.hub.Close(); close(closed) }()
	for _, d := range devs[1:] {
		if ef := d.c.waitClose(5 * time.Second); ef.Code != wire.CloseGoingAway {
			t.Fatalf("%s: closed with %v, want going away", d.user, ef)
		}
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the hub did not close with parked sessions")
	}
}
