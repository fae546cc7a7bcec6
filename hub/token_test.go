package hub_test

import (
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/wire"
)

// A token is accepted by one rule, with one leeway, at the hello and for
// the whole session: until exp + auth.DefaultLeeway, and not from then on.
func TestTokenLeewayIsOneRule(t *testing.T) {
	start := time.Now()
	clk := clock.NewFake(start)
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: testSecret, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *hub.Config) {
		c.Clock, c.Verifier = clk, verifier
		c.HeartbeatInterval = time.Minute // the fake clock moves less than 3 intervals
	})
	token := func(exp time.Time) string {
		tok, err := auth.Mint(testSecret, auth.Claims{User: "u1", ExpiresAt: exp}, exp.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	const leeway = auth.DefaultLeeway

	// The hello, just inside the leeway and at its end.
	inside := e.dial(tcpRaw)
	inside.mustHello(token(clk.Now().Add(-leeway+time.Second)), "d-inside", "chat")
	at := e.dial(tcpRaw)
	if _, err := at.hello(token(clk.Now().Add(-leeway)), "d-at", "chat"); err == nil || at.closed.Code != wire.CloseUnauthorized {
		t.Fatalf("hello at exp + leeway: %v, want 4001", err)
	}

	// A session, the same two instants later.
	exp := clk.Now().Add(time.Minute)
	c := e.dial(wsJSON)
	c.mustHello(token(exp), "d-session", "chat")
	ping := func(n uint64) *wire.Frame {
		c.send(&wire.Frame{Ping: &wire.Ping{Nonce: n}})
		f, err := c.recv(5 * time.Second)
		if err != nil {
			t.Fatalf("after ping %d: %v", n, err)
		}
		return f
	}
	clk.Advance(exp.Add(leeway - time.Second).Sub(clk.Now()))
	if f := ping(1); f.Pong == nil {
		t.Fatalf("1 s before exp + leeway: got %+v, want the pong of a live session", f)
	}
	clk.Advance(time.Second)
	c.send(&wire.Frame{Ping: &wire.Ping{Nonce: 2}}) // wakes the session
	if got := c.waitClose(5 * time.Second); got.Code != wire.CloseUnauthorized {
		t.Fatalf("at exp + leeway: close %+v, want 4001", got)
	}
}
