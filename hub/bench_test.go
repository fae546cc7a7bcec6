package hub_test

import (
	"context"
	"encoding/json"
	"runtime"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// BenchmarkLiveDelivery is the socket hot path: entries handed to the hub by
// the broker, queued, merged into pushes and written to one TCP device.
// allocs/op is per entry and covers the test client's decoding too, so
// compare it between builds rather than read it alone.
func BenchmarkLiveDelivery(b *testing.B) {
	e := newEnv(b, nil)
	c := e.dial(tcpRaw)
	c.mustHello(e.token("u1"), "d1", "chat")
	ch := syncpoint.Channel{Biz: "chat", Target: u1}
	data := json.RawMessage(`{"text":"hello, world"}`)
	got := make(chan int, 1)
	go func() {
		n := 0
		for n < b.N {
			f, err := c.recv(30 * time.Second)
			if err != nil {
				b.Logf("after %d entries: %v", n, err)
				break
			}
			if f.Push != nil {
				n += len(f.Push.Entries)
			}
			if f.Error != nil {
				b.Logf("after %d entries: %v", n, f.Error)
				break
			}
		}
		got <- n
	}()
	b.ReportAllocs()
	b.ResetTimer()
	defer allocsPerEntry(b)()
	for i := range b.N {
		// A new batch each time: the hub keeps pointers into what the
		// broker hands it, which is never reused.
		batch := make([]syncpoint.Entry, 1)
		batch[0] = syncpoint.Entry{Channel: ch, Epoch: "bench", Seq: uint64(i + 1), Op: syncpoint.OpMsg, Data: data, Origin: syncpoint.OriginAPI}
		e.hub.Deliver(batch)
		if i%1024 == 1023 {
			// Let the writer catch up, as a paced publisher would, so the
			// queue bound is not what is measured.
			time.Sleep(time.Millisecond)
		}
	}
	if n := <-got; n != b.N {
		b.Fatalf("received %d of %d entries", n, b.N)
	}
}

// BenchmarkBacklogDelivery is a device catching up: pages read from the
// store by the session and pushed; allocs/op is per entry.
func BenchmarkBacklogDelivery(b *testing.B) {
	e := newEnv(b, nil)
	ch := syncpoint.Channel{Biz: "chat", Target: u1}
	data := json.RawMessage(`{"text":"hello, world"}`)
	for done := 0; done < b.N; {
		n := min(b.N-done, 1000)
		reqs := make([]syncpoint.AppendRequest, n)
		for i := range reqs {
			reqs[i] = syncpoint.AppendRequest{Entry: syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: data, Origin: syncpoint.OriginAPI, CreatedAt: time.Now()}}
		}
		if _, err := e.store.Append(context.Background(), reqs); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	b.ReportAllocs()
	b.ResetTimer()
	defer allocsPerEntry(b)()
	c := e.dial(tcpRaw)
	c.mustHello(e.token("u1"), "d1", "chat")
	n := 0
	for n < b.N {
		f, err := c.recv(30 * time.Second)
		if err != nil {
			b.Fatalf("after %d of %d entries: %v", n, b.N, err)
		}
		if f.Push != nil {
			n += len(f.Push.Entries)
			c.send(&wire.Frame{Ack: &wire.Ack{Positions: f.Push.Positions}})
		}
	}
}

// allocsPerEntry reports the process's allocations per entry with the
// precision that allocs/op, a whole number, lacks; call the function it
// returns when the entries are in.
func allocsPerEntry(b *testing.B) func() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	before := m.Mallocs
	return func() {
		runtime.ReadMemStats(&m)
		b.ReportMetric(float64(m.Mallocs-before)/float64(b.N), "allocs/entry")
	}
}
