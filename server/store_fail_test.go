package server_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/syncpoint/syncpoint/server"
)

// syncLog is a log sink for a server's goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestFailingDiskMakesServerUnavailable makes the disk under a running
// server refuse the WAL's fsync, as a full or failing disk does: publishes
// get 503 unavailable (the first one in flight too), /readyz turns 503, and
// the cause is logged once however many requests fail.
func TestFailingDiskMakesServerUnavailable(t *testing.T) {
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileWrite) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	var logs syncLog
	cfg := testConfig(t)
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	server.WithStoreFS(&cfg, errorfs.Wrap(vfs.Default, toggle))
	r := MustRunServer(t, cfg)
	publishText(t, r.URL, "u1", "before")
	if code := getStatus(t, r.URL+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz of a good server: %d", code)
	}

	toggle.On()
	for i := range 5 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		body := map[string]any{"biz": "chat", "users": []string{"u1"}, "data": i}
		if code := do(t, "POST", r.URL+"/v1/publish", body, &e); code != http.StatusServiceUnavailable || e.Error.Code != "unavailable" {
			t.Fatalf("publish %d on a failing disk: HTTP %d %+v, want 503 unavailable", i, code, e)
		}
		if strings.Contains(e.Error.Message, "injected") {
			t.Fatalf("the answer shows the internal cause: %q", e.Error.Message)
		}
	}
	resp, err := http.Get(r.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	var ready struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&ready)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || ready.Error.Code != "unavailable" || !strings.Contains(ready.Error.Message, "store") {
		t.Fatalf("/readyz on a failing disk: %d %+v, want 503 naming the store", resp.StatusCode, ready)
	}
	if code := getStatus(t, r.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz on a failing disk: %d; the process still serves", code)
	}
	var page channelPage
	if code := do(t, "GET", r.URL+"/v1/channels/chat/user:u1", nil, &page); code != http.StatusOK || len(page.Entries) != 1 {
		t.Fatalf("read on a failing disk: %d %+v, want the durable entry", code, page)
	}
	if n := strings.Count(logs.String(), "store failed"); n != 1 {
		t.Fatalf("the store's failure was logged %d times, want once:\n%s", n, logs.String())
	}
}

func getStatus(tb testing.TB, url string) int {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
