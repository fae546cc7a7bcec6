package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/wire"
)

// inProcessServe is `syncpoint serve` run by run() in this process.
type inProcessServe struct {
	url    string
	cancel context.CancelFunc
	done   chan int
	e      testEnv
}

// MustServeInProcess starts serve on data with the test bizzes and waits
// for its server.json; it is stopped at cleanup if still running.
func MustServeInProcess(tb testing.TB, data string) *inProcessServe {
	tb.Helper()
	os.Remove(filepath.Join(data, serverFile)) // a stale one from an earlier run
	s := &inProcessServe{done: make(chan int, 1), e: newTestEnv(nil)}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		s.done <- run(ctx, s.e.env, []string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--tcp-listen", "", "--config", writeConfig(tb)})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if si, err := readServerInfo(data); err == nil {
			s.url = "http://" + si.HTTP
			break
		}
		select {
		case code := <-s.done:
			tb.Fatalf("serve exited %d: %s", code, s.e.err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatal("serve did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(func() { s.stop(tb) })
	return s
}

func (s *inProcessServe) stop(tb testing.TB) {
	tb.Helper()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	if code := <-s.done; code != 0 {
		tb.Fatalf("serve exited %d: %s", code, s.e.err)
	}
}

// runCmd runs one syncpoint command in-process.
func runCmd(tb testing.TB, args ...string) (int, string, string) {
	tb.Helper()
	e := newTestEnv(nil)
	code := run(context.Background(), e.env, args)
	return code, e.out.String(), e.err.String()
}

// channelHead is the epoch and last seq the API reports for chat/user:u1.
func channelHead(tb testing.TB, url, key string) (string, uint64) {
	tb.Helper()
	req, _ := http.NewRequest("GET", url+"/v1/channels/chat/user:u1?after=1000000", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Epoch   string `json:"epoch"`
		LastSeq uint64 `json:"last_seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || resp.StatusCode != 200 {
		tb.Fatalf("read channel: HTTP %d %v", resp.StatusCode, err)
	}
	return page.Epoch, page.LastSeq
}

// welcomeStatus connects a device of u1 over WebSocket with a position in
// chat/user:u1 and returns the channel's status in the welcome.
func welcomeStatus(tb testing.TB, url, tokenSecret, device string, pos *wire.Position) wire.ChannelStatus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(url, "http")+"/v1/connect", &websocket.DialOptions{Subprotocols: []string{wire.SubprotocolJSON}})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.CloseNow()
	tok, err := auth.Mint([]byte(tokenSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	hello := &wire.Hello{Versions: []uint32{wire.ProtocolVersion}, Token: tok, DeviceID: device, Bizzes: []string{"chat"}}
	if pos != nil {
		hello.Positions = []wire.Position{*pos}
	}
	b, err := wire.EncodeJSON(nil, &wire.Frame{Hello: hello})
	if err != nil {
		tb.Fatal(err)
	}
	if err := c.Write(ctx, websocket.MessageText, b); err != nil {
		tb.Fatal(err)
	}
	_, b, err = c.Read(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	f, err := wire.DecodeJSON(b)
	if err != nil || f.Welcome == nil || len(f.Welcome.Channels) != 1 {
		tb.Fatalf("%s: want a welcome with one channel, got %s (%v)", device, b, err)
	}
	return f.Welcome.Channels[0]
}

// TestBackupRestoreResetsDevices backs up a running server through its API,
// publishes on, restores the backup and starts again: devices whose sync
// point is at, behind and ahead of the backup point are all told reset,
// and a new device is ok. Without new epochs the one behind would get ok
// and, later, entries under seqs that meant something else.
func TestBackupRestoreResetsDevices(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := MustServeInProcess(t, data)
	sec := secretsOf(t, data)
	p := newPublisher(srv.url, sec.APIKey)
	for i := range 5 {
		if _, ok, err := p.publish(context.Background(), "u1", fmt.Sprintf(`"before %d"`, i)); !ok || err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	epoch, last := channelHead(t, srv.url, sec.APIKey)
	if last != 5 {
		t.Fatalf("last seq %d, want 5", last)
	}

	backup := filepath.Join(t.TempDir(), "backup")
	code, out, errOut := runCmd(t, "backup", "--data", data, "--out", backup)
	if code != 0 || !strings.Contains(out, "taken by the server at "+srv.url) {
		t.Fatalf("backup: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for i := range 3 {
		p.publish(context.Background(), "u1", fmt.Sprintf(`"after %d"`, i))
	}
	if _, last := channelHead(t, srv.url, sec.APIKey); last != 8 {
		t.Fatalf("last seq %d after the backup, want 8", last)
	}
	code, _, errOut = runCmd(t, "restore", "--from", backup, "--data", data)
	if code != 1 || !strings.Contains(errOut, "stop the server first") {
		t.Fatalf("restore under a running server: exit %d, stderr %q", code, errOut)
	}
	srv.stop(t)

	code, out, errOut = runCmd(t, "restore", "--from", backup, "--data", data)
	if code != 0 || !strings.Contains(out, "new epoch") || !strings.Contains(out, "before-restore") {
		t.Fatalf("restore: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	kept, _ := filepath.Glob(filepath.Join(data, "store.before-restore-*"))
	if len(kept) != 1 {
		t.Fatalf("the replaced store was not kept: %v", kept)
	}

	srv = MustServeInProcess(t, data)
	newEpoch, last := channelHead(t, srv.url, sec.APIKey)
	if last != 5 || newEpoch == epoch {
		t.Fatalf("after the restore: epoch %s last %d, want the backup's 5 entries in a new epoch", newEpoch, last)
	}
	for name, seq := range map[string]uint64{"at": 5, "behind": 3, "ahead": 8} {
		st := welcomeStatus(t, srv.url, sec.TokenSecret, "phone-"+name, &wire.Position{Channel: "chat/user:u1", Epoch: epoch, Seq: seq})
		if st.Status != "reset" || st.Epoch != newEpoch || st.From != 0 {
			t.Errorf("a device %s the backup point (seq %d) is welcomed with %+v, want reset into %s", name, seq, st, newEpoch)
		}
	}
	if st := welcomeStatus(t, srv.url, sec.TokenSecret, "phone-new", nil); st.Status != "ok" {
		t.Errorf("a new device is welcomed with %+v, want ok", st)
	}
}

// TestBackupWithoutServer backs up a data dir no server runs on, also with
// the server.json a crashed server left behind: the store is copied
// directly, and a fresh data dir restored from it gets the secrets.
func TestBackupWithoutServer(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	srv := MustServeInProcess(t, data)
	sec := secretsOf(t, data)
	if _, ok, err := newPublisher(srv.url, sec.APIKey).publish(context.Background(), "u1", `"kept"`); !ok || err != nil {
		t.Fatalf("publish: %v", err)
	}
	srv.stop(t)
	// A crashed server leaves server.json naming an address no one serves.
	if err := writeJSONFile(filepath.Join(data, serverFile), serverInfo{HTTP: "127.0.0.1:1", PID: 1}, 0o644); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	code, out, errOut := runCmd(t, "backup", "--data", data, "--out", backup)
	if code != 0 || !strings.Contains(out, "directly") {
		t.Fatalf("backup: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	fresh := filepath.Join(t.TempDir(), "fresh")
	if code, _, errOut := runCmd(t, "restore", "--from", backup, "--data", fresh); code != 0 {
		t.Fatalf("restore into a fresh data dir: exit %d: %s", code, errOut)
	}
	if got := secretsOf(t, fresh); got != sec {
		t.Fatalf("the restored data dir has secrets %+v, want the backup's", got)
	}
	srv = MustServeInProcess(t, fresh)
	if _, last := channelHead(t, srv.url, sec.APIKey); last != 1 {
		t.Fatalf("the restored node has last seq %d, want 1", last)
	}
}

func TestBackupRestoreUsage(t *testing.T) {
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), []byte("x"), 0o600)
	notBackup := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"backup", "--data", t.TempDir()}, 2, "--out is required"},
		{[]string{"backup", "--data", t.TempDir(), "--out", full}, 2, "is not empty"},
		{[]string{"backup", "--data", t.TempDir(), "--out", filepath.Join(t.TempDir(), "b")}, 1, "no store in"},
		{[]string{"restore", "--data", t.TempDir()}, 2, "--from is required"},
		{[]string{"restore", "--from", notBackup, "--data", t.TempDir()}, 1, "not a whole backup"},
	} {
		code, _, errOut := runCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}
