package feed_test

import (
	"context"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/pebble"
)

// TestBindDevice: the one rule every surface binds a device by. A new
// device is registered to the token's user, another user cannot take it,
// an unnamed platform is the one given last, and last-seen is written only
// when it has gone stale.
func TestBindDevice(t *testing.T) {
	ctx := context.Background()
	store, err := pebble.Open(t.TempDir(), pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	id := syncpoint.Identity{DeviceID: "d1", UserID: "u1", Platform: "ios", AppVersion: "1.0"}
	if err := feed.BindDevice(ctx, store, &id, now); err != nil {
		t.Fatalf("bind a new device: %v", err)
	}
	seen := func() time.Time {
		t.Helper()
		d, err := store.Device(ctx, "d1")
		if err != nil || d.UserID != "u1" || d.Platform != "ios" || d.AppVersion != "1.0" {
			t.Fatalf("stored device %+v, %v", d, err)
		}
		return d.LastSeen
	}
	if !seen().Equal(now) {
		t.Fatalf("last seen %v, want %v", seen(), now)
	}

	other := syncpoint.Identity{DeviceID: "d1", UserID: "u2"}
	if err := feed.BindDevice(ctx, store, &other, now); syncpoint.Code(err) != syncpoint.CodeForbidden {
		t.Fatalf("another user's bind: %v, want forbidden", err)
	}

	again := syncpoint.Identity{DeviceID: "d1", UserID: "u1"}
	if err := feed.BindDevice(ctx, store, &again, now.Add(feed.LastSeenPrecision/2)); err != nil {
		t.Fatal(err)
	}
	if again.Platform != "ios" || again.AppVersion != "1.0" {
		t.Fatalf("a bind naming no platform got %q %q, want those given last", again.Platform, again.AppVersion)
	}
	if !seen().Equal(now) {
		t.Fatalf("a bind within LastSeenPrecision wrote last seen %v", seen())
	}
	later := now.Add(feed.LastSeenPrecision)
	if err := feed.BindDevice(ctx, store, &again, later); err != nil {
		t.Fatal(err)
	}
	if !seen().Equal(later) {
		t.Fatalf("last seen %v after a stale bind, want %v", seen(), later)
	}
}
