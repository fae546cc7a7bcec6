package pebble

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
)

// benchEntry is a typical published entry: about 100 bytes of JSON with a
// validity period, so each append also writes an expiry row.
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

func BenchmarkAppend(b *testing.B) {
	s := MustOpenStore(b)
	ctx := context.Background()
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	now := time.Now()
	reqs := []syncpoint.AppendRequest{benchEntry(ch, now)}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Append(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkAppendParallel64 has 64 concurrent appenders, each waiting for
// its own entry to be durable, as 64 publishing API requests would. The
// no-commit-delay case shows what Options.CommitDelay buys.
func BenchmarkAppendParallel64(b *testing.B) {
	b.Run("default", func(b *testing.B) { benchParallel(b, 64, Options{}) })
	b.Run("no-commit-delay", func(b *testing.B) { benchParallel(b, 64, Options{CommitDelay: -1}) })
}

func benchParallel(b *testing.B, writers int, opts Options) {
	s := MustOpenStoreOptions(b, b.TempDir(), opts)
	ctx := context.Background()
	now := time.Now()
	var next atomic.Int64
	var mu sync.Mutex
	lat := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
	b.SetParallelism((writers + runtimeProcs() - 1) / runtimeProcs())
	b.ResetTimer()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("u%d", next.Add(1)))}
		reqs := []syncpoint.AppendRequest{benchEntry(ch, now)}
		mine := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
		for pb.Next() {
			start := time.Now()
			if _, err := s.Append(ctx, reqs); err != nil {
				b.Error(err)
				return
			}
			mine.RecordValue(time.Since(start).Microseconds())
		}
		mu.Lock()
		lat.Merge(mine)
		mu.Unlock()
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(b.N)/float64(s.syncedBatches()), "entries/batch")
	b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(b.N), "cpu-us/entry")
	b.ReportMetric(float64(lat.ValueAtQuantile(50)), "p50-us")
	b.ReportMetric(float64(lat.ValueAtQuantile(99)), "p99-us")
}

func BenchmarkReadPage(b *testing.B) {
	s := MustOpenStore(b)
	ctx := context.Background()
	ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	now := time.Now()
	const total, page = 10000, 100
	for i := 0; i < total; i += 500 {
		reqs := make([]syncpoint.AppendRequest, 500)
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

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func (s *Store) syncedBatches() uint64 {
	n, _ := s.syncState()
	return max(n, 1)
}

// BenchmarkPebbleBaseline64 is the yardstick for BenchmarkAppendParallel64:
// 64 goroutines applying two-key batches to Pebble with Sync directly,
// which is what each durable append costs without the store around it.
func BenchmarkPebbleBaseline64(b *testing.B) {
	db, err := pebbledb.Open(b.TempDir(), &pebbledb.Options{
		MemTableSize:       DefaultMemTableSize,
		FormatMajorVersion: pebbledb.FormatNewest,
		Logger:             pebbleLogger{l: slog.New(slog.NewTextHandler(io.Discard, nil)), limit: newLogLimiter(clock.Real{})},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var next atomic.Uint64
	val := encodeEntry(nil, &syncpoint.Entry{Op: syncpoint.OpMsg, Data: benchEntry(chatU1, time.Now()).Entry.Data})
	b.SetParallelism((64 + 1) / max(1, runtimeProcs()))
	b.ResetTimer()
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		ch := fmt.Sprintf("chat/user:u%d", next.Add(1))
		for seq := uint64(1); pb.Next(); seq++ {
			bt := db.NewBatch()
			bt.Set(entryKey(ch, seq), val, nil)
			bt.Set(appendEntryExpiryKey(nil, time.Now(), xEntry, ch, seq, ""), nil, nil)
			if err := db.Apply(bt, pebbledb.Sync); err != nil {
				b.Error(err)
			}
			bt.Close()
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(b.N), "cpu-us/entry")
}

// BenchmarkAppendDuringSave appends one entry at a time, each waiting for
// its own commit as a publish does, while another goroutine saves 1,000
// devices' sync points, in one call or in the feed's calls of 256. A save
// checks each row against the stored one inside the committer, so the size
// of one call is how long it holds the appends back. The feed flushes once
// a second; here the saves come every 5 ms, so that the appends they hold
// back are enough to show in the percentiles.
func BenchmarkAppendDuringSave(b *testing.B) {
	for _, chunk := range []int{1000, 256} {
		b.Run(fmt.Sprintf("rows-per-call=%d", chunk), func(b *testing.B) {
			s := MustOpenStore(b)
			ctx := context.Background()
			now := time.Now()
			points := make([]syncpoint.SyncPoint, 1000)
			for i := range points {
				points[i] = syncpoint.SyncPoint{DeviceID: fmt.Sprintf("device-%04d", i), Channel: syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("u%d", i))}, Position: syncpoint.Position{Epoch: "e1", Seq: 1}, UpdatedAt: now}
			}
			if err := s.SaveSyncPoints(ctx, points); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for seq := uint64(2); ; seq++ {
					for i := range points {
						points[i].Position.Seq = seq
					}
					for rest := points; len(rest) > 0; rest = rest[min(chunk, len(rest)):] {
						if err := s.SaveSyncPoints(ctx, rest[:min(chunk, len(rest))]); err != nil {
							b.Error(err)
							return
						}
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			})
			lat := hdrhistogram.New(1, int64(10*time.Second/time.Microsecond), 3)
			reqs := []syncpoint.AppendRequest{benchEntry(chatU1, now)}
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				if _, err := s.Append(ctx, reqs); err != nil {
					b.Fatal(err)
				}
				lat.RecordValue(time.Since(start).Microseconds())
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(lat.ValueAtQuantile(50)), "p50-us")
			b.ReportMetric(float64(lat.ValueAtQuantile(99)), "p99-us")
			b.ReportMetric(float64(lat.ValueAtQuantile(99.9)), "p99.9-us")
			b.ReportMetric(float64(lat.Max()), "max-us")
		})
	}
}
