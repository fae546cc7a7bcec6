package hub_test

import (
	"bytes"
	"fmt"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
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
