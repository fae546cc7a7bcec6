package postgres

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/syncpoint/syncpoint"
)

// leaseOpts keep the tests' leases quick.
var leaseOpts = Options{LeaseRetry: 300 * time.Millisecond, LeaseCheck: 100 * time.Millisecond}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// job is a lease's fn that counts, across nodes, how many run at once.
type job struct {
	running atomic.Int32
	overlap atomic.Bool
	holder  atomic.Int32 // the node whose fn runs, -1 for none
	starts  [2]atomic.Int32
	ends    [2]atomic.Int32
}

func (j *job) fn(node int) func(ctx context.Context) {
	return func(ctx context.Context) {
		if j.running.Add(1) > 1 {
			j.overlap.Store(true)
		}
		j.holder.Store(int32(node))
		j.starts[node].Add(1)
		<-ctx.Done()
		j.holder.CompareAndSwap(int32(node), -1)
		j.running.Add(-1)
		j.ends[node].Add(1)
	}
}

// TestLeasesTwoNodes races two nodes for one lease: one runs the job at a
// time; when the holder's ctx ends, or its connection is terminated, the
// other takes over within a few seconds.
func TestLeasesTwoNodes(t *testing.T) {
	url := MustCreateSchema(t)
	stores := [2]*Store{MustOpenStoreURL(t, url, leaseOpts), MustOpenStoreURL(t, url, leaseOpts)}
	leases := [2]*Leases{stores[0].Leases(), stores[1].Leases()}
	var j job
	j.holder.Store(-1)
	var cancels [2]context.CancelFunc
	var wg sync.WaitGroup
	run := func(node int) {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[node] = cancel
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := leases[node].Run(ctx, "sweep", j.fn(node)); err != nil {
				t.Errorf("node %d: Run: %v", node, err)
			}
		}()
	}
	t.Cleanup(func() {
		for _, c := range cancels {
			if c != nil {
				c()
			}
		}
		wg.Wait()
	})
	run(0)
	run(1)
	const takeover = 5 * time.Second
	waitFor(t, takeover, "a node runs the job", func() bool { return j.holder.Load() >= 0 })
	first := int(j.holder.Load())
	other := 1 - first
	if n := testutil.ToFloat64(stores[first].metrics.leases.WithLabelValues("sweep")); n != 1 {
		t.Fatalf("leases held by the holder, by its gauge: %v, want 1", n)
	}
	if n := testutil.ToFloat64(stores[other].metrics.leases.WithLabelValues("sweep")); n != 0 {
		t.Fatalf("leases held by the other node, by its gauge: %v, want 0", n)
	}

	// The holder stops: the other node takes over.
	cancels[first]()
	waitFor(t, takeover, "the other node takes over from a node that stopped", func() bool { return int(j.holder.Load()) == other })
	if j.ends[first].Load() != 1 {
		t.Fatalf("the stopped node's job ended %d times, want 1", j.ends[first].Load())
	}

	// The first node contends again; the holder's connection is
	// terminated: its job's ctx ends and the first node takes over.
	run(first)
	pid := leases[other].holder("sweep")
	if pid == 0 {
		t.Fatal("the holder knows no backend holding its lease")
	}
	if _, err := stores[first].pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, int32(pid)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, takeover, "the job of a node whose connection was terminated ends", func() bool { return j.ends[other].Load() == 1 })
	waitFor(t, takeover, "the first node takes over from a node that lost its connection", func() bool { return int(j.holder.Load()) == first })
	if j.overlap.Load() {
		t.Fatal("two nodes ran the job at once")
	}
	if leases[first].holder("sweep") == pid {
		t.Fatal("the new holder holds the lease on the terminated backend")
	}
}

// TestLeasesJobReturns runs a job that returns at once while the lease is
// held: it runs again and again, a pause apart, until the store closes,
// when Run returns ErrClosed.
func TestLeasesJobReturns(t *testing.T) {
	s := MustOpenStoreURL(t, MustCreateSchema(t), Options{LeaseRetry: 20 * time.Millisecond, LeaseCheck: 20 * time.Millisecond})
	var calls atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- s.Leases().Run(context.Background(), "notices", func(ctx context.Context) { calls.Add(1) })
	}()
	waitFor(t, 5*time.Second, "the job runs three times", func() bool { return calls.Load() >= 3 })
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, syncpoint.ErrClosed) {
			t.Fatalf("Run on a closed store: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run still runs after the store closed")
	}
}
