package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/wire"
)

// TestShutdownOrder sends SIGTERM to the real binary while a device is
// connected and a publish is in flight (its body half sent), and checks
// the order docs/operations.md gives: no new connection is accepted at
// once, on either listener; the publish in flight still finishes with 200
// and is delivered; only then does the device hear 3000; the process
// exits 0 and the publish is stored.
func TestShutdownOrder(t *testing.T) {
	skipIfShort(t)
	data := filepath.Join(t.TempDir(), "data")
	config := writeConfig(t)
	proc := MustStartServe(t, data, config, nil)
	sec := secretsOf(t, data)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A device of u1, subscribed to chat.
	wc, _, err := websocket.Dial(ctx, "ws://"+proc.info.HTTP+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		t.Fatal(err)
	}
	defer wc.CloseNow()
	tok, err := auth.Mint([]byte(sec.TokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	hello, _ := wire.EncodeJSON(nil, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: "d1", Bizzes: []string{"chat"}}})
	if err := wc.Write(ctx, websocket.MessageText, hello); err != nil {
		t.Fatal(err)
	}
	frames := make(chan *wire.Frame, 16)
	closed := make(chan websocket.StatusCode, 1)
	go func() {
		for {
			_, b, err := wc.Read(ctx)
			if err != nil {
				closed <- websocket.CloseStatus(err)
				return
			}
			if f, err := wire.DecodeJSON(b); err == nil {
				frames <- f
			}
		}
	}()
	if f := <-frames; f.Welcome == nil {
		t.Fatalf("first frame %+v, want a welcome", f)
	}

	// A publish in flight: its handler is reading the body, as the 100
	// Continue shows, when SIGTERM comes.
	body := `{"biz":"chat","users":["u1"],"data":{"text":"in flight"}}`
	pc, err := net.Dial("tcp", proc.info.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	fmt.Fprintf(pc, "POST /v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", sec.APIKey, len(body))
	br := bufio.NewReader(pc)
	if line, err := br.ReadString('\n'); err != nil || !strings.Contains(line, "100 Continue") {
		t.Fatalf("want 100 Continue, got %q, %v", line, err)
	}
	br.ReadString('\n') // the blank line after it
	if _, err := pc.Write([]byte(body[:10])); err != nil {
		t.Fatal(err)
	}

	proc.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(proc.stderr.String(), "no longer accepting connections") {
		if time.Now().After(deadline) {
			t.Fatalf("no shutdown logged:\n%s", proc.stderr)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, addr := range []string{proc.info.HTTP, proc.info.TCP} {
		if c, err := net.DialTimeout("tcp", addr, 5*time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections once shutdown began", addr)
		}
	}
	select {
	case code := <-closed:
		t.Fatalf("the device was closed (%d) while a request was still in flight", code)
	default:
	}

	if _, err := pc.Write([]byte(body[10:])); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the publish in flight got %d", resp.StatusCode)
	}
	for pushed := false; ; {
		select {
		case f := <-frames:
			pushed = pushed || (f.Push != nil && len(f.Push.Entries) == 1 && strings.Contains(string(f.Push.Entries[0].Data), "in flight"))
			continue
		case code := <-closed:
			if code != websocket.StatusCode(wire.CloseGoingAway) {
				t.Errorf("the device was closed with %d, want %d", code, wire.CloseGoingAway)
			}
			if !pushed {
				t.Errorf("the publish in flight was not pushed to the device before it was closed")
			}
		case <-ctx.Done():
			t.Fatal("the device was never closed")
		}
		break
	}
	if code := proc.wait(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, proc.stderr)
	}

	again := MustStartServe(t, data, config, nil)
	entries := newPublisher(again.url(), sec.APIKey).readAll(t, "u1")
	if len(entries) != 1 || !strings.Contains(string(entries[0].Data), "in flight") {
		t.Fatalf("after the restart chat/user:u1 holds %+v", entries)
	}
}
