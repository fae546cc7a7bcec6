package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runSyncCmd runs sync in-process and reads its lines.
func runSyncCmd(tb testing.TB, args ...string) (code int, lines []tailLine, stderr string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), 15*time.Second)
	defer cancel()
	e := newTestEnv(nil)
	code = run(ctx, e.env, append([]string{"sync"}, args...))
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

// TestSyncPassAndResume: each sync prints what is new since the last one,
// over HTTP, and tail goes on from the same state file.
func TestSyncPassAndResume(t *testing.T) {
	ts := MustRunTailServer(t, false)
	for i := range 3 {
		tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", fmt.Sprintf(`{"i":%d}`, i))
	}
	state := filepath.Join(t.TempDir(), "d1.db")
	args := []string{"--server", ts.url, "--user", "u1", "--token-secret", tailSecret, "--device", "d1", "--biz", "chat,config", "--state", state}
	code, first, stderr := runSyncCmd(t, args...)
	if code != 0 || len(first) != 3 || first[0].Seq != 1 || string(first[2].Data) != `{"i":2}` {
		t.Fatalf("first pass: exit %d, lines %+v\nstderr:\n%s", code, first, stderr)
	}
	code, again, stderr := runSyncCmd(t, args...)
	if code != 0 || len(again) != 0 {
		t.Fatalf("a pass with nothing new: exit %d, %d lines\nstderr:\n%s", code, len(again), stderr)
	}
	tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", `{"i":3}`)
	tailPublish(t, ts, "--biz", "config", "--global", "--op", "put", "--key", "theme", "--data", `{"color":"dark"}`)
	code, second, stderr := runSyncCmd(t, args...)
	if code != 0 || len(second) != 2 {
		t.Fatalf("second pass: exit %d, lines %+v\nstderr:\n%s", code, second, stderr)
	}
	tailPublish(t, ts, "--biz", "chat", "--user", "u1", "--data", `{"i":4}`)
	tok := tailToken(t, "u1", time.Now().Add(time.Hour))
	code, tailed, stderr := runTailCmd(t, "--server", ts.url, "--token", tok, "--device", "d1", "--biz", "chat,config", "--state", state, "--count", "1")
	if code != 0 || len(tailed) != 1 || tailed[0].Seq != 5 {
		t.Fatalf("tail after sync: exit %d, lines %+v\nstderr:\n%s", code, tailed, stderr)
	}
}

// TestSyncRefusals: a refused token exits 1 with the reason; a missing
// flag is a usage error.
func TestSyncRefusals(t *testing.T) {
	ts := MustRunTailServer(t, false)
	expired := tailToken(t, "u1", time.Now().Add(-time.Hour))
	code, _, stderr := runSyncCmd(t, "--server", ts.url, "--token", expired, "--device", "d1", "--biz", "chat", "--state", filepath.Join(t.TempDir(), "s.db"))
	if code != 1 || !strings.Contains(stderr, "refused the token") {
		t.Fatalf("expired token: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runSyncCmd(t, "--server", ts.url, "--token", expired, "--biz", "chat"); code != 2 || !strings.Contains(stderr, "--device") {
		t.Fatalf("no device: exit %d\n%s", code, stderr)
	}
}
