package feed_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
)

// countingStore records the rows of each SaveSyncPoints call.
type countingStore struct {
	syncpoint.Store
	mu    sync.Mutex
	calls []int
}

func (c *countingStore) SaveSyncPoints(ctx context.Context, points []syncpoint.SyncPoint) error {
	c.mu.Lock()
	c.calls = append(c.calls, len(points))
	c.mu.Unlock()
	return c.Store.SaveSyncPoints(ctx, points)
}

// A flush of many devices' positions saves them in store calls of a bounded
// size, so that the embedded store's committer is never held by one for
// long, and stores every one of them.
func TestFlushSavesInChunks(t *testing.T) {
	var cs *countingStore
	e := newEnv(t, func(c *feed.Config) {
		cs = &countingStore{Store: c.Store}
		c.Store = cs
	})
	ctx := context.Background()
	const devices = 600
	for i := range devices {
		user := fmt.Sprintf("u%d", i)
		target := syncpoint.UserTarget(user)
		e.msg("chat", target, `{}`)
		e.msg("chat", target, `{}`)
		s, _ := e.open(feed.Request{Claims: claims(user), DeviceID: "d-" + user, Bizzes: []string{"chat"}})
		drain(t, s, 10)
		c := s.Cursor(syncpoint.Channel{Biz: "chat", Target: target})
		s.Confirm(c, syncpoint.Position{Epoch: c.Epoch, Seq: 2})
		s.Close()
	}
	e.feed.Flush(ctx)

	sum := 0
	for _, n := range cs.calls {
		if n > 256 {
			t.Errorf("a store call saved %d sync points, want at most 256", n)
		}
		sum += n
	}
	if sum != devices || len(cs.calls) != 3 {
		t.Errorf("flush saved %d sync points in %d calls %v, want %d in 3", sum, len(cs.calls), cs.calls, devices)
	}
	for i := range devices {
		id := fmt.Sprintf("d-u%d", i)
		points, err := e.store.SyncPoints(ctx, id)
		if err != nil || len(points) != 1 || points[0].Position.Seq != 2 {
			t.Fatalf("sync points of %s: %+v, %v; want seq 2", id, points, err)
		}
	}
}
