package pebble

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// failCreates fails the creation of every file whose name ends in suffix
// ("" for all), while on.
func failCreates(suffix string) *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpCreate && strings.HasSuffix(op.Path, suffix) {
			return errorfs.ErrInjected
		}
		return nil
	})}
}

// lockedLog is a log sink the store writes from several goroutines.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// TestOpenUnwritableDirFailsFast opens a directory in which no file can be
// created (as a read-only folder is for a user other than root): Open fails
// at once and says so, instead of Pebble retrying for ever.
func TestOpenUnwritableDirFailsFast(t *testing.T) {
	toggle := failCreates("")
	toggle.On()
	dir := t.TempDir()
	_, err := Open(dir, Options{FS: errorfs.Wrap(vfs.Default, toggle)})
	if err == nil || !strings.Contains(err.Error(), "the store directory "+dir+" is not writable") {
		t.Fatalf("open of an unwritable dir: %v, want it to say the directory is not writable", err)
	}
}

// TestOpenFailsOnBackgroundError reopens a store whose WAL holds entries
// while no table file can be created (a full disk lets the probe's few
// bytes through): Pebble's open would wait for its first flush for ever;
// Open gives up at the first background error.
func TestOpenFailsOnBackgroundError(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, msgReq(chatU1, `1`))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	toggle := failCreates(".sst")
	toggle.On()
	_, err = Open(dir, Options{FS: errorfs.Wrap(vfs.Default, toggle)})
	if err == nil || !strings.Contains(err.Error(), "cannot write") || !strings.Contains(err.Error(), "injected error") {
		t.Fatalf("open while flushes fail: %v, want the cause", err)
	}
}

// TestBackgroundErrorFailsStore makes flushes fail under a running store:
// it stops taking writes at once (ErrUnavailable, which the API answers
// with 503) and says so in Health, reads go on, and the cause is logged
// once, then again only after bgLogEvery however often Pebble retries.
func TestBackgroundErrorFailsStore(t *testing.T) {
	toggle := failCreates(".sst")
	var logs lockedLog
	clk := clock.NewFake(time.Now())
	s, err := Open(t.TempDir(), Options{
		FS:     errorfs.Wrap(vfs.Default, toggle),
		Clock:  clk,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	mustAppend(t, s, msgReq(chatU1, `1`))
	if err := s.Health(ctx); err != nil {
		t.Fatalf("health of a good store: %v", err)
	}
	toggle.On()
	s.db.AsyncFlush()
	errorsSoFar := func() int {
		s.health.mu.Lock()
		defer s.health.mu.Unlock()
		return s.health.count
	}
	waitUntil(t, "the flush fails a few times", func() bool { return errorsSoFar() >= 3 })

	err = s.Health(ctx)
	if !errors.Is(err, syncpoint.ErrUnavailable) || !strings.Contains(err.Error(), "injected error") {
		t.Fatalf("health of a store whose flushes fail: %v", err)
	}
	_, err = s.Append(ctx, []syncpoint.AppendRequest{msgReq(chatU1, `2`)})
	if !errors.Is(err, syncpoint.ErrUnavailable) || syncpoint.Code(err) != syncpoint.CodeUnavailable {
		t.Fatalf("append to a failed store: %v, want unavailable", err)
	}
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); !errors.Is(err, syncpoint.ErrUnavailable) {
		t.Fatalf("SaveBiz on a failed store: %v, want unavailable", err)
	}
	if p := mustReadAll(t, s, chatU1); len(p.Entries) != 1 {
		t.Fatalf("read on a failed store: %d entries, want the durable one", len(p.Entries))
	}
	if n := logs.count("store failed"); n != 1 {
		t.Fatalf("%d lines say the store failed, want 1:\n%s", n, logs.buf.String())
	}
	if n := logs.count("still failing"); n != 0 {
		t.Fatalf("the background error was logged again before %s passed", bgLogEvery)
	}
	clk.Advance(bgLogEvery)
	waitUntil(t, "the next background error is logged", func() bool { return logs.count("still failing") == 1 })
	seen := errorsSoFar()
	waitUntil(t, "more background errors", func() bool { return errorsSoFar() > seen+1 })
	if n := logs.count("still failing"); n != 1 {
		t.Fatalf("the background error was logged %d times within one %s", n, bgLogEvery)
	}
}

func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
