package bench

import (
	"fmt"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms count microseconds from 1 µs to 10 minutes with three
// significant digits; longer values are counted as 10 minutes.
const (
	histMin     = 1
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histFigures = 3
	histShards  = 16
)

// Percentiles summarizes a latency distribution, in milliseconds.
type Percentiles struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

// String is one line: "p50 1.20 ms  p90 ...  (n=1000)".
func (p Percentiles) String() string {
	if p.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		ms(p.P50), ms(p.P90), ms(p.P99), ms(p.P999), ms(p.Max), p.Count)
}

// ms formats milliseconds with precision suited to their size.
func ms(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.3f ms", v)
	case v < 100:
		return fmt.Sprintf("%.2f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

// recorder is a latency histogram that many goroutines record into: they
// are spread over shards by a key (a device index), so they rarely wait on
// one another.
type recorder struct {
	shards [histShards]struct {
		mu sync.Mutex
		h  *hdrhistogram.Histogram
	}
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i].h = hdrhistogram.New(histMin, histMax, histFigures)
	}
	return r
}

// record adds one latency under key.
func (r *recorder) record(key int, d time.Duration) {
	v := int64(d / time.Microsecond)
	v = min(max(v, histMin), histMax)
	s := &r.shards[uint(key)%histShards]
	s.mu.Lock()
	_ = s.h.RecordValue(v) // in range by construction
	s.mu.Unlock()
}

// percentiles merges the shards.
func (r *recorder) percentiles() Percentiles {
	all := hdrhistogram.New(histMin, histMax, histFigures)
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		all.Merge(s.h)
		s.mu.Unlock()
	}
	return summarize(all)
}

func summarize(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	toMS := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   toMS(h.ValueAtQuantile(50)),
		P90:   toMS(h.ValueAtQuantile(90)),
		P99:   toMS(h.ValueAtQuantile(99)),
		P999:  toMS(h.ValueAtQuantile(99.9)),
		Max:   toMS(h.Max()),
	}
}
