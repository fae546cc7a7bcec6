package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/wire"
)

// lockedBuffer is a log sink the test reads while the server writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type minted struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

func mintToken(tb testing.TB, url, body string) minted {
	tb.Helper()
	var m minted
	req, _ := http.NewRequest("POST", url+"/v1/tokens", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		tb.Fatalf("mint: %d %s", resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, &m); err != nil || len(m.Token) != 64 {
		tb.Fatalf("mint answer %s: %v", b, err)
	}
	return m
}

func revokeToken(tb testing.TB, url, id string) {
	tb.Helper()
	if code := do(tb, http.MethodDelete, url+"/v1/tokens/"+id, nil, nil); code != http.StatusNoContent {
		tb.Fatalf("revoke %s: HTTP %d", id, code)
	}
}

// session is a device's WebSocket after a hello.
type session struct {
	c  *websocket.Conn
	fr wsFrames
}

// hello connects and says hello with token; it returns the first frame
// the server answers with.
func hello(tb testing.TB, ctx context.Context, url, token, device string) (*session, *wire.Frame) {
	tb.Helper()
	wc, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { wc.CloseNow() })
	s := &session{c: wc, fr: wsFrames{wc}}
	if err := s.fr.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: token, DeviceID: device, Bizzes: []string{"chat"}}}); err != nil {
		tb.Fatal(err)
	}
	f, err := s.fr.Read(ctx)
	if err != nil {
		tb.Fatalf("after the hello: %v", err)
	}
	return s, f
}

// closeCode reads until the session ends and returns the code it ended
// with: a fatal error frame's, else the WebSocket close status.
func (s *session) closeCode(tb testing.TB, ctx context.Context) wire.CloseCode {
	tb.Helper()
	for {
		f, err := s.fr.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return wire.CloseCode(ce.Code)
			}
			tb.Fatalf("the session ended without a close code: %v", err)
		}
		if f.Error != nil && f.Error.Fatal {
			return f.Error.Code
		}
	}
}

// TestOpaqueTokenSessionRevoked: a device session opened with an opaque
// token works like one opened with a JWT, and ends with 4001 as soon as the
// token is revoked; another token's session goes on. The secret is in no
// log line.
func TestOpaqueTokenSessionRevoked(t *testing.T) {
	logs := &lockedBuffer{}
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := MustRunServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	a := mintToken(t, r.URL, `{"user":"u1","label":"phone"}`)
	b := mintToken(t, r.URL, `{"user":"u1","label":"tablet"}`)
	sa, f := hello(t, ctx, r.URL, a.Token, "phone")
	if f.Welcome == nil {
		t.Fatalf("hello with an opaque token: %+v", f.Error)
	}
	sb, f := hello(t, ctx, r.URL, b.Token, "tablet")
	if f.Welcome == nil {
		t.Fatalf("hello with another opaque token: %+v", f.Error)
	}
	publishText(t, r.URL, "u1", "hi")
	for _, s := range []*session{sa, sb} {
		for {
			f, err := s.fr.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if f.Push != nil && len(f.Push.Entries) > 0 {
				break
			}
		}
	}

	revokeToken(t, r.URL, a.ID)
	if code := sa.closeCode(t, ctx); code != wire.CloseUnauthorized {
		t.Fatalf("the revoked token's session ended with %d, want %d", code, wire.CloseUnauthorized)
	}
	// The other session still gets entries.
	publishText(t, r.URL, "u1", "still there")
	for {
		f, err := sb.fr.Read(ctx)
		if err != nil {
			t.Fatalf("the other token's session: %v", err)
		}
		if f.Push != nil && len(f.Push.Entries) > 0 && strings.Contains(string(f.Push.Entries[0].Data), "still there") {
			break
		}
	}
	// And the revoked token is refused at the next hello.
	if _, f := hello(t, ctx, r.URL, a.Token, "phone"); f.Error == nil || f.Error.Code != wire.CloseUnauthorized {
		t.Fatalf("hello with the revoked token: %+v", f)
	}
	for _, secret := range []string{a.Token, b.Token} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("a secret is in the server's log")
		}
	}
	if !strings.Contains(logs.String(), a.ID) {
		t.Fatal("the log does not name the revoked token's id")
	}
}

// TestOpaqueTokenRefusedAtHello: revoked, expired and unknown opaque tokens
// are refused at the hello with 4001, over WebSocket and raw TCP.
func TestOpaqueTokenRefusedAtHello(t *testing.T) {
	cfg := testConfig(t)
	fc := clock.NewFake(time.Now())
	cfg.Clock = fc
	r := MustRunServer(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	revoked := mintToken(t, r.URL, `{"user":"u1"}`)
	revokeToken(t, r.URL, revoked.ID)
	expiring := mintToken(t, r.URL, `{"user":"u1","ttl":"1m"}`)
	good := mintToken(t, r.URL, `{"user":"u1"}`)
	fc.Advance(time.Minute)

	for name, token := range map[string]string{
		"revoked": revoked.Token,
		"expired": expiring.Token,
		"unknown": strings.Repeat("Q", 64),
	} {
		if _, f := hello(t, ctx, r.URL, token, "d-"+name); f.Error == nil || f.Error.Code != wire.CloseUnauthorized {
			t.Errorf("%s token over WebSocket: %+v, want a 4001 refusal", name, f)
		}
		nc, err := net.Dial("tcp", r.TCPAddr())
		if err != nil {
			t.Fatal(err)
		}
		tc := wire.NewTCPConn(nc, 0)
		if err := tc.Write(ctx, &wire.Frame{Hello: &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: token, DeviceID: "t-" + name, Bizzes: []string{"chat"}}}); err != nil {
			t.Fatal(err)
		}
		f, err := tc.Read(ctx)
		if err != nil || f.Error == nil || f.Error.Code != wire.CloseUnauthorized {
			t.Errorf("%s token over TCP: %+v %v, want a 4001 refusal", name, f, err)
		}
		nc.Close()
	}
	if _, f := hello(t, ctx, r.URL, good.Token, "d-good"); f.Welcome == nil {
		t.Fatalf("a live token: %+v", f.Error)
	}
}

// TestOpaqueTokenEventStreamRevoked: an event stream opened with an opaque
// token ends with a close event of 4001 as soon as the token is revoked.
func TestOpaqueTokenEventStreamRevoked(t *testing.T) {
	r := MustRunServer(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tok := mintToken(t, r.URL, `{"user":"u1"}`)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v1/events?biz=chat", nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	req.Header.Set("X-Device-Id", "browser")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("event stream with an opaque token: %d %s", resp.StatusCode, b)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() string {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("the stream ended: %v", lines.Err())
		}
		return lines.Text()
	}
	publishText(t, r.URL, "u1", "hi")
	for next() != "event: entry" {
	}
	revokeToken(t, r.URL, tok.ID)
	for next() != "event: close" {
	}
	var closed struct {
		Code  wire.CloseCode `json:"code"`
		Fatal bool           `json:"fatal"`
	}
	data, _ := strings.CutPrefix(next(), "data: ")
	if err := json.Unmarshal([]byte(data), &closed); err != nil || closed.Code != wire.CloseUnauthorized {
		t.Fatalf("close event %q (%v), want code %d", data, err, wire.CloseUnauthorized)
	}
}
