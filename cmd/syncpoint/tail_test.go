package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/internal/testcert"
	"github.com/syncpoint/syncpoint/server"
)

const (
	tailAPIKey = "tail-test-api-key"
	tailSecret = "tail-test-token-secret-0123"
)

// tailServer is an in-process server that devices can connect to.
type tailServer struct {
	url, tcp string
	caFile   string // set when TCP speaks TLS
}

// MustRunTailServer starts a server with the chat (user) and config
// (global) bizzes, WebSocket on its HTTP listener and raw TCP (TLS when
// withTLS), all on 127.0.0.1:0.
func MustRunTailServer(tb testing.TB, withTLS bool) tailServer {
	tb.Helper()
	cfg := server.Config{
		DataDir:     tb.TempDir(),
		Listen:      "127.0.0.1:0",
		TCPListen:   "127.0.0.1:0",
		APIKey:      tailAPIKey,
		TokenSecret: tailSecret,
		Bizzes: []syncpoint.Biz{
			syncpoint.NewBiz("chat", syncpoint.TargetUser),
			syncpoint.NewBiz("config", syncpoint.TargetGlobal),
		},
	}
	var ts tailServer
	if withTLS {
		cert := testcert.New(tb)
		ts.caFile, cfg.TLSKey = cert.CertFile, cert.KeyFile
		cfg.TLSCert = ts.caFile
		cfg.PlainHTTP = true // TCP+TLS is under test; publish and WebSocket stay plain
	}
	s, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	ts.url, ts.tcp = "http://"+s.Addr(), s.TCPAddr()
	return ts
}

// tailPublish publishes with the publish command.
func tailPublish(tb testing.TB, ts tailServer, args ...string) {
	tb.Helper()
	e := newTestEnv(nil)
	all := append([]string{"publish", "--server", ts.url, "--api-key", tailAPIKey}, args...)
	if code := run(tb.Context(), e.env, all); code != 0 {
		tb.Fatalf("publish %v: exit %d: %s", args, code, e.err)
	}
}

// runTailCmd runs tail in-process; a deadline keeps a test from hanging
// when fewer entries come than --count waits for.
func runTailCmd(tb testing.TB, args ...string) (code int, lines []tailLine, stderr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 15*time.Second)
	defer cancel()
	e := newTestEnv(nil)
	code = run(ctx, e.env, append([]string{"tail"}, args...))
	for _, l := range strings.Split(strings.TrimSpace(e.out.String()), "\n") {
		if l == "" {
			continue
		}
		var tl tailLine
		if err := json.Unmarshal([]byte(l), &tl); err != nil {
			tb.Fatalf("output line %q: %v", l, err)
		}
		lines = append(lines, tl)
	}
	return code, lines, e.err.String()
}

func tailToken(tb testing.TB, user string, exp time.Time) string {
	tb.Helper()
	tok, err := auth.Mint([]byte(tailSecret), auth.Claims{User: user, ExpiresAt: exp}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

func TestTailCountAndResume(t *testing.T) {
	ts := MustRunTailServer(t, false)
	for i := range 3 {
		tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", fmt.Sprintf(`{"i":%d}`, i))
	}
	tailPublish(t, ts, "--biz", "config", "--global", "--op", "put", "--key", "theme", "--data", `{"color":"dark"}`)
	tailPublish(t, ts, "--biz", "config", "--global", "--op", "delete", "--key", "theme")

	state := filepath.Join(t.TempDir(), "d1.db")
	tok := tailToken(t, "u1", time.Now().Add(time.Hour))
	args := []string{"--server", ts.url, "--token", tok, "--device", "d1", "--biz", "chat,config", "--state", state, "--log-level", "debug"}

	code, first, stderr := runTailCmd(t, append(args, "--count", "4")...)
	if code != 0 || len(first) != 4 {
		t.Fatalf("first run: exit %d, %d lines, want 0 and 4\nstderr:\n%s", code, len(first), stderr)
	}
	// The rest, with two new ones, over the protobuf encoding this time.
	tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", `{"i":3}`)
	tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", `{"i":4}`)
	code, second, stderr := runTailCmd(t, append(args, "--count", "3", "--encoding", "proto")...)
	if code != 0 || len(second) != 3 {
		t.Fatalf("second run: exit %d, %d lines, want 0 and 3\nstderr:\n%s", code, len(second), stderr)
	}

	seen := map[string]tailLine{}
	for _, l := range append(first, second...) {
		k := fmt.Sprintf("%s#%d", l.Channel, l.Seq)
		if _, dup := seen[k]; dup {
			t.Fatalf("%s printed twice", k)
		}
		seen[k] = l
	}
	want := []string{"chat/user:u1#1", "chat/user:u1#2", "chat/user:u1#3", "chat/user:u1#4", "chat/user:u1#5", "config/global#1", "config/global#2"}
	for _, k := range want {
		if _, ok := seen[k]; !ok {
			t.Fatalf("%s never printed; got %v", k, seen)
		}
	}
	put := seen["config/global#1"]
	if put.Op != "put" || put.Key != "theme" || string(put.Data) != `{"color":"dark"}` || put.Origin != "api" || put.CreatedAt.IsZero() {
		t.Fatalf("put line = %+v", put)
	}
	if del := seen["config/global#2"]; del.Op != "delete" || del.Key != "theme" {
		t.Fatalf("delete line = %+v", del)
	}
	if msg := seen["chat/user:u1#5"]; msg.Op != "msg" || string(msg.Data) != `{"i":4}` {
		t.Fatalf("last chat line = %+v", msg)
	}
}

func TestTailMintsTokenOverTLS(t *testing.T) {
	ts := MustRunTailServer(t, true)
	tailPublish(t, ts, "--biz", "chat", "--user", "u2", "--data", `"hello"`)
	tailPublish(t, ts, "--biz", "config", "--global", "--data", `{"motd":"hi"}`)
	dir := t.TempDir()
	code, lines, stderr := runTailCmd(t, "--tcp", ts.tcp, "--tls-ca", ts.caFile, "--user", "u2", "--token-secret", tailSecret,
		"--data", dir, "--device", "phone", "--biz", "chat,config", "--state", filepath.Join(dir, "phone.db"), "--count", "2")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("exit %d, %d lines, want 0 and 2\nstderr:\n%s", code, len(lines), stderr)
	}
	for _, l := range lines {
		if l.Channel != "chat/user:u2" && l.Channel != "config/global" {
			t.Fatalf("line %+v", l)
		}
	}
}

func TestTailRefusedToken(t *testing.T) {
	ts := MustRunTailServer(t, false)
	expired := tailToken(t, "u1", time.Now().Add(-time.Hour))
	code, lines, stderr := runTailCmd(t, "--server", ts.url, "--token", expired, "--device", "d1", "--biz", "chat",
		"--state", filepath.Join(t.TempDir(), "d1.db"), "--count", "1")
	if code == 0 || len(lines) != 0 {
		t.Fatalf("exit %d with %d lines; want a failure", code, len(lines))
	}
	if !strings.Contains(stderr, "the server refused the token") || !strings.Contains(stderr, "expired") {
		t.Fatalf("stderr = %q, want it to say the token was refused because it expired", stderr)
	}
}

func TestTailUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--token", "t", "--biz", "chat"},
		{"--token", "t", "--device", "d1"},
		{"--device", "d1", "--biz", "chat"},
		{"--token", "t", "--user", "u1", "--device", "d1", "--biz", "chat"},
		{"--token", "t", "--device", "d1", "--biz", "chat", "--encoding", "xml"},
		{"--token", "t", "--device", "d1", "--biz", "chat", "--server", "http://127.0.0.1:1", "--tcp", "127.0.0.1:1"},
		{"--token", "t", "--device", "d1", "--biz", "chat", "--count", "-1"},
	} {
		code, _, stderr := runTailCmd(t, args...)
		if code != 2 {
			t.Fatalf("tail %v: exit %d (%s), want 2", args, code, stderr)
		}
	}
}

// A failure that retrying would repeat ends tail with exit 1 and the
// reason, even with --count.
func TestTailStopsOnPermanentFailure(t *testing.T) {
	tlsServer, plain := MustRunTailServer(t, true), MustRunTailServer(t, false)
	tok := tailToken(t, "u1", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"untrusted certificate", []string{"--tcp", tlsServer.tcp, "--tls", "--token", tok}, "certificate is not trusted"},
		{"no TLS", []string{"--tcp", plain.tcp, "--tls-ca", tlsServer.caFile, "--token", tok}, "does not speak TLS"},
		{"refused token over TCP", []string{"--tcp", plain.tcp, "--token", tailToken(t, "u1", time.Now().Add(-time.Hour))}, "refused the token"},
		{"refused token over TLS", []string{"--tcp", tlsServer.tcp, "--tls-ca", tlsServer.caFile, "--token", "not-a-token"}, "refused the token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(tc.args, "--device", "d1", "--biz", "chat", "--state", filepath.Join(t.TempDir(), "d1.db"), "--count", "1")
			code, lines, stderr := runTailCmd(t, args...)
			if code != 1 || len(lines) != 0 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, %d lines, stderr %q; want exit 1 saying %q", code, len(lines), stderr, tc.want)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer that tail may write while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A refused connection is temporary: tail keeps retrying, with a line on
// stderr for each retry, until it is interrupted.
func TestTailRetriesRefusedConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	var stdout, stderr syncBuffer
	e := env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, e, []string{"tail", "--server", "http://" + addr, "--token", tailToken(t, "u1", time.Now().Add(time.Hour)),
			"--device", "d1", "--biz", "chat", "--state", filepath.Join(t.TempDir(), "d1.db"), "--count", "1"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(stderr.String(), "reconnecting") < 3 {
		select {
		case code := <-done:
			t.Fatalf("tail exited %d before retrying 3 times; stderr:\n%s", code, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 retry lines; stderr:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("the retry lines do not say why; stderr:\n%s", stderr.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("interrupted tail exited %d, want 0", code)
	}
}
