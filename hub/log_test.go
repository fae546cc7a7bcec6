package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/wire"
)

// logBuffer collects a JSON handler's lines; the hub logs from many
// goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the logged records whose msg is msg.
func (b *logBuffer) lines(t testing.TB, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitLine waits for a line with msg whose fields include want.
func (b *logBuffer) waitLine(t testing.TB, msg string, want map[string]any) map[string]any {
	t.Helper()
	var found map[string]any
	waitFor(t, "log line "+msg, func() bool {
		for _, rec := range b.lines(t, msg) {
			match := true
			for k, v := range want {
				match = match && rec[k] == v
			}
			if match {
				found = rec
				return true
			}
		}
		return false
	})
	return found
}

func newLoggedEnv(t *testing.T) (*env, *logBuffer) {
	logs := &logBuffer{}
	e := newEnv(t, func(c *hub.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	return e, logs
}

// Every session's connect and close is logged at info with the fields that
// name it; so are refused tokens and resets, and no token ever is.
func TestSessionsAreLogged(t *testing.T) {
	e, logs := newLoggedEnv(t)
	good := e.token("u1")
	c := e.dial(wsJSON)
	w := c.mustHello(good, "d1", "chat")
	open := logs.waitLine(t, "session opened", map[string]any{"session": w.SessionID})
	for k, v := range map[string]any{"level": "INFO", "device": "d1", "user": "u1", "transport": "ws", "platform": "ios", "app_version": "2.0.0"} {
		if open[k] != v {
			t.Errorf("session opened: %s = %v, want %v (line %v)", k, open[k], v, open)
		}
	}
	if r, _ := open["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("session opened: remote = %v, want the device's address", open["remote"])
	}
	c.close()
	closed := logs.waitLine(t, "session closed", map[string]any{"session": w.SessionID})
	for k, v := range map[string]any{"level": "INFO", "device": "d1", "user": "u1", "transport": "ws", "code": float64(wire.CloseNormal), "close": "normal"} {
		if closed[k] != v {
			t.Errorf("session closed: %s = %v, want %v (line %v)", k, closed[k], v, closed)
		}
	}
	if _, ok := closed["duration"].(float64); !ok || closed["reason"] == nil {
		t.Errorf("session closed: no duration or reason in %v", closed)
	}

	// A refused token: why, from where, but never the token.
	forged := forge(good)
	bad := e.dial(tcpRaw)
	if _, err := bad.hello(forged, "d2", "chat"); err == nil {
		t.Fatal("a forged token was accepted")
	}
	refused := logs.waitLine(t, "token refused", map[string]any{"device": "d2", "transport": "tcp"})
	if refused["code"] != float64(wire.CloseUnauthorized) || !strings.Contains(refused["reason"].(string), "signature") {
		t.Errorf("token refused: %v, want code 4001 and the reason", refused)
	}

	// A connection that fails before its hello, here a TLS handshake with
	// a client that speaks plain text.
	nc, err := net.Dial("tcp", e.tlsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	ended := logs.waitLine(t, "connection ended before the hello", map[string]any{"transport": "tls"})
	if e, _ := ended["err"].(string); !strings.Contains(e, "tls") {
		t.Errorf("connection ended: %v, want the TLS error", ended)
	}

	// A reset closes its sessions with resync, and says so.
	c2 := e.dial(tcpRaw)
	w2 := c2.mustHello(good, "d3", "chat")
	e.publish("chat", u1, `{}`)
	c2.collect(1, 5*time.Second)
	ch := syncpoint.Channel{Biz: "chat", Target: u1}
	if _, err := e.store.ResetChannel(context.Background(), ch); err != nil {
		t.Fatal(err)
	}
	e.hub.ResetChannel(ch)
	logs.waitLine(t, "channel reset", map[string]any{"channel": "chat/user:u1", "sessions": float64(1)})
	logs.waitLine(t, "session closed", map[string]any{"session": w2.SessionID, "code": float64(wire.CloseResync), "close": "resync"})
	// The device comes back with its old position and is told reset.
	c3 := e.dial(tcpRaw)
	c3.positions = c2.positions
	c3.mustHello(good, "d3", "chat")
	logs.waitLine(t, "channel reset at hello", map[string]any{"device": "d3", "channel": "chat/user:u1"})

	for _, tok := range []string{good, forged} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), sig) {
			t.Fatalf("a token appears in the log:\n%s", logs.String())
		}
	}
}
