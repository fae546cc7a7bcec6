package pebble

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/syncpoint/syncpoint"
)

// TestFailedState makes the WAL's fsync fail: the append in flight fails,
// later appends fail too rather than hand out seqs ahead of the disk, and
// reads keep serving what was durable.
func TestFailedState(t *testing.T) {
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileWrite) {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s, err := Open(t.TempDir(), Options{FS: errorfs.Wrap(vfs.Default, toggle)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	req := []syncpoint.AppendRequest{{Entry: syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: []byte(`1`)}}}
	if _, err := s.Append(ctx, req); err != nil {
		t.Fatal(err)
	}
	toggle.On()
	if _, err := s.Append(ctx, req); err == nil {
		t.Fatal("append succeeded although the WAL could not be synced")
	}
	toggle.Off()
	if _, err := s.Append(ctx, req); !errors.Is(err, syncpoint.ErrUnavailable) {
		t.Fatalf("append on a failed store: %v, want unavailable", err)
	}
	if err := s.Health(ctx); !errors.Is(err, syncpoint.ErrUnavailable) {
		t.Fatalf("health of a failed store: %v, want unavailable", err)
	}
	p, err := s.Read(ctx, ch, 0, 10, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) != 1 || p.Info.LastSeq != 1 {
		t.Fatalf("read on a failed store: %d entries, last %d; want the one durable entry", len(p.Entries), p.Info.LastSeq)
	}
	if _, err := s.KeyEntry(ctx, ch, "k"); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("KeyEntry on a failed store: %v", err)
	}
	s.Close() // may report the WAL error; it must not hang or panic
}
