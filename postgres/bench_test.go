package postgres

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// benchEntry is a typical published entry: about 100 bytes of JSON with a
// validity period, so each append also writes the expiry index.
func benchEntry(ch syncpoint.Channel, now time.Time) syncpoint.AppendRequest {
	return syncpoint.AppendRequest{
		Entry: syncpoint.Entry{
			Channel:   ch,
			Op:        syncpoint.OpMsg,
			Data:      []byte(`{"text":"hello there, this is a chat message of a typical size","from":"u2","n":12345}`),
			CreatedAt: now,
			ExpiresAt: now.Add(720 * time.Hour),
			Origin:    syncpoint.OriginAPI,
		},
		Policy: syncpoint.Policy{Retention: 720 * time.Hour},
	}
}

// BenchmarkAppend has 64 concurrent writers, each waiting for its own
// entry to be durable, as 64 publishing API requests would: one channel
// per writer, or all of them on one channel; with the default number of
// committers, and with two.
func BenchmarkAppend(b *testing.B) {
	b.Run("channels=64", func(b *testing.B) { benchAppend(b, 64, false, Options{}) })
	b.Run("channels=64/committers=2", func(b *testing.B) { benchAppend(b, 64, false, Options{Committers: 2}) })
	b.Run("channels=1", func(b *testing.B) { benchAppend(b, 64, true, Options{}) })
}

func benchAppend(b *testing.B, writers int, oneChannel bool, opts Options) {
	opts.MaxConns = 8
	s := MustOpenStoreURL(b, MustCreateSchema(b), opts)
	ctx := context.Background()
	now := time.Now()
	var next atomic.Int64
	b.SetParallelism((writers + runtimeProcs() - 1) / runtimeProcs())
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		n := next.Add(1)
		if oneChannel {
			n = 0
		}
		ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("u%d", n))}
		reqs := []syncpoint.AppendRequest{benchEntry(ch, now)}
		for pb.Next() {
			if _, err := s.Append(ctx, reqs); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N)/float64(max(1, s.batches.Load())), "entries/txn")
}

// BenchmarkRead reads pages of 1000 entries from a channel of 20,000.
func BenchmarkRead(b *testing.B) {
	s := MustOpenStoreURL(b, MustCreateSchema(b), Options{})
	ctx := context.Background()
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	now := time.Now()
	const total, page = 20000, 1000
	for i := 0; i < total; i += 1000 {
		reqs := make([]syncpoint.AppendRequest, 1000)
		for j := range reqs {
			reqs[j] = benchEntry(ch, now)
		}
		if _, err := s.Append(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		after := uint64(i*page) % (total - page)
		p, err := s.Read(ctx, ch, after, page, now)
		if err != nil || len(p.Entries) != page {
			b.Fatalf("read: %d entries, %v", len(p.Entries), err)
		}
		i++
	}
	b.ReportMetric(float64(b.N*page)/b.Elapsed().Seconds(), "entries/s")
}

func runtimeProcs() int { return max(1, runtime.GOMAXPROCS(0)) }
