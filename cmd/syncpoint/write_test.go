package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/auth"
	"github.com/syncpoint/syncpoint/hub"
	"github.com/syncpoint/syncpoint/local"
	"github.com/syncpoint/syncpoint/pebble"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/ws"
)

const writeTestSecret = "write-test-secret-0123456789"

// MustRunRecordNode starts an in-process node that takes record uploads
// (Pebble store, hub with the records service, WebSocket on 127.0.0.1:0)
// with the writable user biz "notes", and returns its URL.
func MustRunRecordNode(tb testing.TB) string {
	tb.Helper()
	store, err := pebble.Open(tb.TempDir(), pebble.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	notes := syncpoint.NewBiz("notes", syncpoint.TargetUser)
	notes.Writable = true
	reg := syncpoint.NewRegistry(store)
	if err := reg.Load(context.Background(), []syncpoint.Biz{notes}); err != nil {
		tb.Fatal(err)
	}
	verifier, err := auth.NewVerifier(auth.VerifierConfig{Secret: []byte(writeTestSecret)})
	if err != nil {
		tb.Fatal(err)
	}
	broker := local.New()
	pub := publish.New(publish.Config{Store: store, Broker: broker, Registry: reg})
	svc := records.New(records.Config{Publisher: pub, Store: store, Registry: reg})
	h := hub.New(hub.Config{Store: store, Registry: reg, Verifier: verifier, Records: svc})
	unsub, err := broker.Subscribe(h.Deliver)
	if err != nil {
		tb.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/connect", &ws.Handler{Hub: h})
	srv := httptest.NewServer(mux)
	tb.Cleanup(func() {
		h.Close()
		srv.Close()
		unsub()
		store.Close()
	})
	return srv.URL
}

// writeResult is the printed write_result.
type writeResult struct {
	WriteID string `json:"write_id"`
	Saved   []struct {
		Channel string `json:"channel"`
		ID      string `json:"id"`
		Seq     uint64 `json:"seq"`
	} `json:"saved"`
	Errors []struct {
		Code    string `json:"code"`
		Current *struct {
			Seq uint64 `json:"seq"`
		} `json:"current"`
	} `json:"errors"`
	Error *struct {
		Reason string `json:"reason"`
	} `json:"error"`
}

func runWrite(t *testing.T, url string, args ...string) (int, writeResult, testEnv) {
	t.Helper()
	e := newTestEnv(nil)
	code := run(t.Context(), e.env, append([]string{"write", "--server", url, "--timeout", "10s"}, args...))
	var r writeResult
	if out := strings.TrimSpace(e.out.String()); out != "" {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("output %q: %v", out, err)
		}
	}
	return code, r, e
}

func TestWriteCommand(t *testing.T) {
	url := MustRunRecordNode(t)
	tok, err := auth.Mint([]byte(writeTestSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	const id = "507f1f77bcf86cd799439011"
	as := []string{"--token", tok, "--device", "d1", "--biz", "notes", "--id", id}

	code, r, e := runWrite(t, url, append(as, "--data", `{"title":"a"}`, "--write-id", "w1")...)
	if code != 0 || r.WriteID != "w1" || len(r.Saved) != 1 || r.Saved[0].Seq != 1 || r.Saved[0].Channel != "notes/user:u1" {
		t.Fatalf("create: exit %d, %+v, stderr %s", code, r, e.err)
	}
	// The same write id again is answered from the first result.
	if code, r, _ = runWrite(t, url, append(as, "--data", `{"title":"a"}`, "--write-id", "w1")...); code != 0 || r.Saved[0].Seq != 1 {
		t.Fatalf("resend: exit %d, %+v", code, r)
	}
	// An update with a token minted from --user and --token-secret.
	mint := []string{"--user", "u1", "--token-secret", writeTestSecret, "--data-dir", t.TempDir(), "--device", "d2", "--biz", "notes", "--id", id}
	if code, r, e = runWrite(t, url, append(mint, "--base-seq", "1", "--data", `{"title":"b"}`)...); code != 0 || r.Saved[0].Seq != 2 {
		t.Fatalf("update: exit %d, %+v, stderr %s", code, r, e.err)
	}
	// A stale base_seq is a conflict: printed, and exit 1.
	code, r, e = runWrite(t, url, append(as, "--base-seq", "1", "--data", `{"title":"c"}`)...)
	if code != 1 || len(r.Errors) != 1 || r.Errors[0].Code != "conflict" || r.Errors[0].Current == nil || r.Errors[0].Current.Seq != 2 ||
		!strings.Contains(e.err.String(), "conflict") {
		t.Fatalf("conflict: exit %d, %+v, stderr %s", code, r, e.err)
	}
	if code, r, _ = runWrite(t, url, append(as, "--delete", "--base-seq", "2")...); code != 0 || r.Saved[0].Seq != 3 {
		t.Fatalf("delete: exit %d, %+v", code, r)
	}
}

func TestWriteCommandErrors(t *testing.T) {
	url := MustRunRecordNode(t)
	bad, _ := auth.Mint([]byte("another-secret-0123456789"), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	base := []string{"--device", "d1", "--biz", "notes", "--id", "507f1f77bcf86cd799439011", "--data", `{}`}

	code, _, e := runWrite(t, url, append(base, "--token", bad)...)
	if code != 1 || !strings.Contains(e.err.String(), "refused the token") {
		t.Fatalf("bad token: exit %d, stderr %s", code, e.err)
	}
	tok, _ := auth.Mint([]byte(writeTestSecret), auth.Claims{User: "u1", ExpiresAt: time.Now().Add(time.Hour)}, time.Now())
	code, r, e := runWrite(t, url, append(base, "--token", tok, "--write-id", strings.Repeat("w", 200))...)
	if code != 1 || r.Error == nil || r.Error.Reason != "invalid" || !strings.Contains(e.err.String(), "the write failed") {
		t.Fatalf("whole-write failure: exit %d, %+v, stderr %s", code, r, e.err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--biz", "notes", "--id", "x", "--data", "{}", "--token", tok}, "--device"},
		{[]string{"--device", "d1", "--biz", "notes", "--id", "x", "--data", "{}"}, "--token"},
		{[]string{"--device", "d1", "--biz", "notes", "--id", "x", "--delete", "--token", tok}, "--base-seq"},
		{[]string{"--device", "d1", "--biz", "notes", "--id", "x", "--token", tok}, "--data"},
		{[]string{"--device", "d1", "--biz", "notes", "--id", "x", "--data", "nope", "--token", tok}, "not valid JSON"},
		{[]string{"--device", "d 1", "--biz", "notes", "--id", "x", "--data", "{}", "--token", tok}, "--device"},
		{[]string{"--device", "d1", "--biz", "Notes", "--id", "x", "--data", "{}", "--token", tok}, "--biz"},
		{[]string{"--device", "d1", "--biz", "notes", "--target", "planet:p", "--id", "x", "--data", "{}", "--token", tok}, "--target"},
		{[]string{"--device", "d1", "--biz", "notes", "--id", "x", "--data", "{}", "--user", "bad user", "--token-secret", writeTestSecret}, "user"},
	} {
		code, _, e := runWrite(t, url, tc.args...)
		if code != 2 || !strings.Contains(e.err.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %s", tc.args, code, e.err)
		}
	}
}
