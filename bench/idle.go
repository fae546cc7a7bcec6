package bench

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/wire"
)

// Defaults for Idle.
const (
	DefaultIdleDevices = 1000
	DefaultHold        = 10 * time.Second
	// DefaultGCWait bounds each wait for a collection of the server; the
	// Go runtime forces one at least every two minutes.
	DefaultGCWait = 150 * time.Second
	// idleEvery is how often the server's metrics are read during the
	// hold.
	idleEvery = time.Second
)

// IdleConfig configures Idle. Zero fields take their defaults.
type IdleConfig struct {
	Target
	Devices int           // devices to connect and hold
	Hold    time.Duration // how long to hold them once all are connected
	// WaitGC takes each memory reading just after a garbage collection of
	// the server, so that neither counts garbage: before connecting it
	// waits for one, and the hold lasts until one ran with every device
	// connected. Without it the readings may count garbage (of earlier
	// runs, of the handshakes), and the lowest heap reading of the hold is
	// used.
	WaitGC bool
	// GCWait bounds each wait for a collection.
	GCWait time.Duration
}

// IdleMemory is the server's memory before the devices connected and while
// they were held, from its /metrics, and the difference per connection.
// With several servers each reading is their sum, and a collection is one
// on every server.
type IdleMemory struct {
	// BaselineAfterGC and HeldAfterGC tell whether the readings were taken
	// just after a collection (with WaitGC), so they hold no garbage.
	BaselineAfterGC bool `json:"baseline_after_gc"`
	HeldAfterGC     bool `json:"held_after_gc"`
	// HeapInuse is go_memstats_heap_inuse_bytes: heap spans in use, live
	// objects and the free room in their spans. Without WaitGC, After is
	// the lowest reading of the hold.
	HeapInuseBefore float64 `json:"heap_inuse_before_bytes"`
	HeapInuseAfter  float64 `json:"heap_inuse_after_bytes"`
	// HeapAlloc is go_memstats_heap_alloc_bytes: the objects themselves;
	// just after a collection, the live heap.
	HeapAllocBefore float64 `json:"heap_alloc_before_bytes"`
	HeapAllocAfter  float64 `json:"heap_alloc_after_bytes"`
	// StackInuse is go_memstats_stack_inuse_bytes: goroutine stacks.
	StackInuseBefore float64 `json:"stack_inuse_before_bytes"`
	StackInuseAfter  float64 `json:"stack_inuse_after_bytes"`
	// RSS is process_resident_memory_bytes: everything the process has
	// touched, including memory the Go runtime has not yet returned to the
	// system, so only a fresh server gives a fair baseline.
	RSSBefore        float64 `json:"rss_before_bytes"`
	RSSAfter         float64 `json:"rss_after_bytes"`
	GoroutinesBefore float64 `json:"goroutines_before"`
	GoroutinesAfter  float64 `json:"goroutines_after"`

	HeapPerConn       float64 `json:"heap_inuse_per_conn_bytes"`
	HeapAllocPerConn  float64 `json:"heap_alloc_per_conn_bytes"`
	StackPerConn      float64 `json:"stack_inuse_per_conn_bytes"`
	HeapStackPerConn  float64 `json:"heap_inuse_and_stack_per_conn_bytes"`
	RSSPerConn        float64 `json:"rss_per_conn_bytes"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
}

// IdleReport is the outcome of Idle.
type IdleReport struct {
	Scenario       string      `json:"scenario"`
	RunID          string      `json:"run_id"`
	Biz            string      `json:"biz"`
	Transport      string      `json:"transport"`
	Encoding       string      `json:"encoding"`
	Devices        int         `json:"devices"`
	Connected      int         `json:"connected"`
	ConnectSeconds float64     `json:"connect_s"`
	ConnectRate    float64     `json:"connect_rate"`    // connections (dial to welcome) per second
	ConnectLatency Percentiles `json:"connect_latency"` // dial to welcome, per device
	HoldSeconds    float64     `json:"hold_s"`          // how long they were held, waits for a collection included
	// StillConnected is how many were up at the end of the hold.
	StillConnected int `json:"still_connected"`
	// ServerSessions is the server's syncpoint_sessions at the end of the
	// hold (summed over the servers), or -1 when it does not export it.
	ServerSessions float64    `json:"server_sessions"`
	Memory         IdleMemory `json:"memory"`
	// CPU covers the connecting.
	CPU    CPU    `json:"cpu"`
	Errors Errors `json:"errors"`
}

// Failures implements Report.
func (r *IdleReport) Failures() int64 { return r.Errors.Total() }

// WriteText implements Report.
func (r *IdleReport) WriteText(w io.Writer) error {
	t := newTextReport(w, r.Errors, nil)
	m := r.Memory
	t.head("idle: %d devices (%s/%s) held %s, biz %s, run %s", r.Devices, r.Transport, r.Encoding, durText(r.HoldSeconds), r.Biz, r.RunID)
	t.figure("connected", "%d of %d in %.2fs, %s", r.Connected, r.Devices, r.ConnectSeconds, perSecond(r.ConnectRate))
	t.figure("connect latency", "%s", r.ConnectLatency)
	sessions := "unknown"
	if r.ServerSessions >= 0 {
		sessions = strconv.FormatFloat(r.ServerSessions, 'f', 0, 64)
	}
	t.info("held", "%d still connected at the end; the server counts %s sessions", r.StillConnected, sessions)
	gc := "readings just after a server GC"
	if !m.BaselineAfterGC || !m.HeldAfterGC {
		gc = "readings may include garbage: use a fresh server, or --wait-gc"
	}
	t.info("memory", "%s", gc)
	t.figure("heap+stack/conn", "%s (heap in use %s, stacks %s)", bytesText(m.HeapStackPerConn), bytesText(m.HeapPerConn), bytesText(m.StackPerConn))
	t.figure("live heap/conn", "%s (heap objects %s -> %s)", bytesText(m.HeapAllocPerConn), bytesText(m.HeapAllocBefore), bytesText(m.HeapAllocAfter))
	t.figure("rss/conn", "%s (RSS %s -> %s)", bytesText(m.RSSPerConn), bytesText(m.RSSBefore), bytesText(m.RSSAfter))
	t.figure("goroutines/conn", "%.2f (%.0f -> %.0f)", m.GoroutinesPerConn, m.GoroutinesBefore, m.GoroutinesAfter)
	t.cpu("connect cpu", r.CPU, int64(r.Connected), "connection")
	t.errors(r.Errors)
	return t.err
}

// Idle connects Devices devices, each to its own user channel, holds them
// for Hold, and disconnects them. It reports the connect rate, and the
// server's memory per connection from its /metrics before and during the
// hold.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleReport, error) {
	if cfg.Devices <= 0 {
		cfg.Devices = DefaultIdleDevices
	}
	if cfg.Hold <= 0 {
		cfg.Hold = DefaultHold
	}
	if cfg.GCWait <= 0 {
		cfg.GCWait = DefaultGCWait
	}
	if cfg.Biz == "" {
		cfg.Biz = DefaultBiz
	}
	r, err := startRunner(ctx, "idle", cfg.Target, true, syncpoint.NewBiz(cfg.Biz, syncpoint.TargetUser))
	if err != nil {
		return nil, err
	}
	defer r.close()
	biz := cfg.Biz
	n := cfg.Devices
	rep := &IdleReport{
		Scenario: "idle", RunID: r.t.RunID, Biz: biz, Transport: r.t.Transport, Encoding: r.t.Encoding,
		Devices: n, ServerSessions: -1,
	}
	var conns atomic.Int64
	phase := atomic.Value{}
	phase.Store("baseline")
	stopProgress := startProgress(r.t.Progress, "idle", func() string {
		return fmt.Sprintf("%s  connected %d/%d  errors %d", phase.Load(), conns.Load(), n, r.errs.total())
	})
	defer stopProgress()

	baseline, err := r.scrapeAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("idle: %w", err)
	}
	if cfg.WaitGC {
		phase.Store("waiting for a server GC")
		s, ok, err := r.waitGC(ctx, lastGCs(baseline), cfg.GCWait)
		if err != nil {
			return nil, fmt.Errorf("idle: %w", err)
		}
		baseline, rep.Memory.BaselineAfterGC = s, ok
	}
	before := sumMetrics(baseline)

	phase.Store("connecting")
	took := newRecorder()
	cpu := r.markCPU(ctx)
	t0 := r.clock.Now()
	devs := r.connectAll(ctx, n, func(i int) devSpec {
		return devSpec{user: r.userID(strconv.Itoa(i)), id: r.deviceID(strconv.Itoa(i)), bizzes: []string{biz}}
	}, func(d *device, w *wire.Welcome) error {
		return expectChannel(w, biz+"/user:"+d.user)
	}, took, &conns)
	connTook := r.clock.Now().Sub(t0)
	rep.CPU = r.since(ctx, cpu)
	rep.Connected = connected(devs)
	rep.ConnectSeconds = seconds(connTook)
	rep.ConnectRate = rate(int64(rep.Connected), connTook)
	rep.ConnectLatency = took.percentiles()

	// Read the memory every second through the hold. Only a collection
	// that starts after this first reading ran with every device connected.
	phase.Store("holding")
	holdStart := r.clock.Now()
	after, minHeap := map[string]float64(nil), -1.0
	var sinceGC []float64
	for first := true; ; first = false {
		ss, err := r.scrapeAll(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.errs.add(errProtocol, 1, err)
		case err == nil && first:
			sinceGC = lastGCs(ss)
			fallthrough
		case err == nil && !rep.Memory.HeldAfterGC:
			s := sumMetrics(ss)
			after = s
			if h := s[metricHeapInuse]; minHeap < 0 || h < minHeap {
				minHeap = h
			}
			if cfg.WaitGC && !first && collectedSince(ss, sinceGC) {
				rep.Memory.HeldAfterGC = true
			}
		}
		held := r.clock.Now().Sub(holdStart)
		done := held >= cfg.Hold && (!cfg.WaitGC || rep.Memory.HeldAfterGC || held >= cfg.Hold+cfg.GCWait)
		if done || !sleepFor(ctx, idleEvery) {
			break
		}
		if cfg.WaitGC && held >= cfg.Hold {
			phase.Store("holding until a server GC")
		}
	}
	rep.HoldSeconds = seconds(r.clock.Now().Sub(holdStart))
	for _, d := range devs {
		if d != nil && d.alive() {
			rep.StillConnected++
		}
	}
	stopProgress()
	closeAll(devs)

	if after != nil {
		m := &rep.Memory
		m.HeapInuseBefore, m.HeapInuseAfter = before[metricHeapInuse], after[metricHeapInuse]
		if !m.HeldAfterGC {
			m.HeapInuseAfter = minHeap
		}
		m.HeapAllocBefore, m.HeapAllocAfter = before[metricHeapAlloc], after[metricHeapAlloc]
		m.StackInuseBefore, m.StackInuseAfter = before[metricStackInuse], after[metricStackInuse]
		m.RSSBefore, m.RSSAfter = before[metricRSS], after[metricRSS]
		m.GoroutinesBefore, m.GoroutinesAfter = before[metricGoroutines], after[metricGoroutines]
		if c := float64(rep.Connected); c > 0 {
			m.HeapPerConn = (m.HeapInuseAfter - m.HeapInuseBefore) / c
			m.HeapAllocPerConn = (m.HeapAllocAfter - m.HeapAllocBefore) / c
			m.StackPerConn = (m.StackInuseAfter - m.StackInuseBefore) / c
			m.HeapStackPerConn = m.HeapPerConn + m.StackPerConn
			m.RSSPerConn = (m.RSSAfter - m.RSSBefore) / c
			m.GoroutinesPerConn = (m.GoroutinesAfter - m.GoroutinesBefore) / c
		}
		if v, ok := after[metricSessions]; ok {
			rep.ServerSessions = v
		}
	}
	rep.Errors = r.errs.snapshot()
	if ctx.Err() != nil {
		return rep, fmt.Errorf("idle: %w", ctx.Err())
	}
	return rep, nil
}

// waitGC reads the servers' metrics every second until every one shows a
// collection after its since (go_memstats_last_gc_time_seconds values),
// for at most limit. It returns the last readings, and whether they follow
// such collections.
func (r *runner) waitGC(ctx context.Context, since []float64, limit time.Duration) ([]map[string]float64, bool, error) {
	deadline := r.clock.Now().Add(limit)
	for {
		ss, err := r.scrapeAll(ctx)
		if err != nil {
			return nil, false, err
		}
		if collectedSince(ss, since) {
			return ss, true, nil
		}
		if !r.clock.Now().Before(deadline) || !sleepFor(ctx, idleEvery) {
			return ss, false, ctx.Err()
		}
	}
}

// lastGCs is each server's time of its last collection.
func lastGCs(ss []map[string]float64) []float64 {
	out := make([]float64, len(ss))
	for i, s := range ss {
		out[i] = s[metricLastGC]
	}
	return out
}

// collectedSince reports whether every server collected after its since;
// a server with no since (its first reading failed) counts any collection.
func collectedSince(ss []map[string]float64, since []float64) bool {
	for i, s := range ss {
		var after float64
		if i < len(since) {
			after = since[i]
		}
		if s[metricLastGC] <= after {
			return false
		}
	}
	return true
}
