package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/pgtest"
)

// TestDatabaseRestart crashes and restarts a real PostgreSQL server under
// a store that appends all the while: while it is down appends fail with
// ErrUnavailable, the store works again by itself once it is back, and no
// acknowledged append is lost or doubled. A lease's job stops with the
// database and runs again after. A fast shutdown and start then do the
// same.
func TestDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	srv := pgtest.Start(t)
	s := MustOpenStoreURL(t, srv.URL(), Options{RetryTimeout: 300 * time.Millisecond, LeaseRetry: 100 * time.Millisecond, LeaseCheck: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	var jobStarts, jobEnds atomic.Int32
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.Leases().Run(ctx, "sweep", func(ctx context.Context) {
			jobStarts.Add(1)
			<-ctx.Done()
			jobEnds.Add(1)
		})
	}()

	var (
		mu          sync.Mutex
		acked       = map[string]bool{}
		unavailable [2]atomic.Int32
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				data := fmt.Sprintf(`"w%d-%d"`, w, i)
				_, err := s.Append(ctx, []syncpoint.AppendRequest{msgReq(chatU1, data)})
				switch {
				case err == nil:
					mu.Lock()
					acked[data] = true
					mu.Unlock()
				case errors.Is(err, syncpoint.ErrUnavailable):
					unavailable[w].Add(1)
					time.Sleep(10 * time.Millisecond)
				case ctx.Err() != nil:
				default:
					t.Errorf("writer %d: append: %v, want success or ErrUnavailable", w, err)
					return
				}
			}
		}()
	}
	ackedN := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	waitFor(t, 10*time.Second, "appends before the crash", func() bool { return ackedN() >= 50 })
	waitFor(t, 10*time.Second, "the lease's job runs", func() bool { return jobStarts.Load() == 1 })
	srv.Kill()
	waitFor(t, 10*time.Second, "both writers hear ErrUnavailable", func() bool {
		return unavailable[0].Load() > 0 && unavailable[1].Load() > 0
	})
	if err := s.Health(context.Background()); !errors.Is(err, syncpoint.ErrUnavailable) {
		t.Fatalf("health while the database is down: %v, want ErrUnavailable", err)
	}
	waitFor(t, 10*time.Second, "the lease's job stops with the database", func() bool { return jobEnds.Load() == 1 })

	before := ackedN()
	srv.Start()
	waitFor(t, 20*time.Second, "appends after the restart", func() bool { return ackedN() >= before+50 })
	waitFor(t, 10*time.Second, "the lease's job runs again", func() bool { return jobStarts.Load() == 2 })
	if err := s.Health(context.Background()); err != nil {
		t.Fatalf("health after the restart: %v", err)
	}

	// A fast shutdown, then a start.
	srv.Stop()
	if _, err := s.Append(context.Background(), []syncpoint.AppendRequest{msgReq(chatU1, `"stopped"`)}); !errors.Is(err, syncpoint.ErrUnavailable) {
		t.Fatalf("append while the database is shut down: %v, want ErrUnavailable", err)
	}
	before = ackedN()
	srv.Start()
	waitFor(t, 20*time.Second, "appends after the second start", func() bool { return ackedN() >= before+20 })
	cancel()
	wg.Wait()

	p, err := s.Read(context.Background(), chatU1, 0, MaxReadLimit, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entries) == MaxReadLimit {
		t.Fatal("too many entries for one page: append less")
	}
	seen := map[string]bool{}
	for i, e := range p.Entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d: a gap", i, e.Seq)
		}
		if d := string(e.Data); seen[d] {
			t.Fatalf("entry %s appended twice", d)
		}
		seen[string(e.Data)] = true
	}
	for d := range acked {
		if !seen[d] {
			t.Errorf("acknowledged entry %s is lost", d)
		}
	}
	t.Logf("%d entries, %d acknowledged; %d and %d appends refused as unavailable", len(p.Entries), len(acked), unavailable[0].Load(), unavailable[1].Load())
}
