package hub_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// Deleting a biz tells each session that reads it, with a non-fatal error
// naming the biz, and stops its channels there; the session's other bizzes
// go on. A biz created again under the name is not streamed to sessions
// that were told it is gone.
func TestDeletedBizStopsInLiveSessions(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	c := e.dial(wsJSON)
	c.mustHello(e.token("u1"), "d1", "chat", "config")
	// Two devices on the multi_device: false biz: the newer one leaving
	// must not hand the deleted channel to the older.
	older := e.dial(tcpRaw)
	older.mustHello(e.token("u1"), "phone", "pay")
	newer := e.dial(tcpRaw)
	newer.mustHello(e.token("u1"), "tablet", "pay")

	e.publish("config", syncpoint.GlobalTarget(), `"before"`)
	c.collect(1, 5*time.Second)
	for _, name := range []string{"config", "pay"} {
		if err := e.reg.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, dc := range []*client{c, older, newer} {
		f, err := dc.recv(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if f.Error == nil || f.Error.Fatal || f.Error.Code != wire.CloseForbidden || !strings.Contains(f.Error.Message, "was deleted") {
			t.Fatalf("got %+v, want a non-fatal 4003 saying the biz was deleted", f)
		}
		if !strings.Contains(f.Error.Message, `"config"`) && !strings.Contains(f.Error.Message, `"pay"`) {
			t.Fatalf("error %q does not name the biz", f.Error.Message)
		}
	}
	newer.close()
	waitFor(t, "tablet offline", func() bool { return !e.hub.Online("tablet") })

	// Created again: live sessions do not get it, and chat goes on.
	for _, b := range testBizzes() {
		if b.Name == "config" || b.Name == "pay" {
			if err := e.reg.Put(ctx, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.publish("config", syncpoint.GlobalTarget(), `"after"`)
	e.publish("pay", u1, `"after"`)
	e.publish("chat", u1, `"still here"`)
	got := c.collect(2, 5*time.Second)
	if got[1].Channel != "chat/user:u1" || string(got[1].Data) != `"still here"` {
		t.Fatalf("after the delete the session got %s %s, want only chat", got[1].Channel, got[1].Data)
	}
	for n := uint64(1); n <= 2; n++ {
		older.send(&wire.Frame{Ping: &wire.Ping{Nonce: n}})
		if f, err := older.recv(5 * time.Second); err != nil || f.Pong == nil {
			t.Fatalf("the older device got %+v, %v; want only its pong, nothing of the deleted biz", f, err)
		}
	}
	// A new session may subscribe to the biz created again.
	c2 := e.dial(tcpRaw)
	c2.mustHello(e.token("u1"), "d2", "config")
	for {
		got := c2.collect(len(c2.got)+1, 5*time.Second)
		if string(got[len(got)-1].Data) == `"after"` {
			break
		}
	}
}
