// Package heapfloor gives the Go garbage collector a floor under its heap
// goal while the process allocates fast, so that a server whose live heap
// is small does not collect after every few megabytes of garbage.
//
// The runtime's default, GOGC=100, starts a cycle once the heap has grown
// by its live size and roots. For a node holding a thousand devices that is
// about 9 MB, which 2,000 publishes a second fill twice a second. Each
// cycle's mark phase runs workers on every idle core and stops the world
// twice; on a small machine the publishes caught in it make most of the
// latency's p99. While the floor is on, the heap may grow to the floor
// before a cycle starts; past it the collector paces as GOGC=100 does.
//
// The floor costs memory, up to its size, so it is on only while the
// default would collect more often than every busyPeriod, for busyTicks
// seconds in a row. Once the process has allocated slowly for quietTicks
// seconds, GOGC goes back to 100 and the garbage is collected and its
// memory handed back to the system at once, so an idle server is as small
// as without the floor.
package heapfloor

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

const (
	// basePercent is the runtime's default GOGC, which the floor only
	// ever raises.
	basePercent = 100
	// maxPercent bounds the raise while the live heap is tiny.
	maxPercent = 10000
	// heapMinimum is the runtime's own floor at GOGC=100, which it scales
	// by GOGC: a raise past floor/heapMinimum would put the goal over the
	// floor by that alone.
	heapMinimum = 4 << 20
	// busyPeriod: the floor is on while GOGC=100 would start cycles more
	// often than this.
	busyPeriod = 2 * time.Second
	// busyTicks is how many fast ticks in a row turn it on, so that a
	// burst, such as thousands of devices connecting at once, does not.
	busyTicks = 3
	// quietTicks is how many slower ticks in a row turn it off.
	quietTicks = 5
	tick       = time.Second
)

// The figures the controller reads: those of the last cycle that the
// runtime's heap goal is made of, and the bytes allocated so far.
const (
	mLive = iota
	mStack
	mGlobals
	mAllocs
	nMetrics
)

var sampleNames = [nMetrics]string{
	mLive:    "/gc/heap/live:bytes",
	mStack:   "/gc/scan/stack:bytes",
	mGlobals: "/gc/scan/globals:bytes",
	mAllocs:  "/gc/heap/allocs:bytes",
}

// Start keeps the collector's heap goal at floor bytes or more while the
// process allocates fast, until the returned func is called, which puts
// GOGC back to 100. It does nothing when floor is 0 or when the environment
// sets GOGC, since an operator's own setting wins.
func Start(floor uint64) (stop func()) {
	if floor == 0 || os.Getenv("GOGC") != "" {
		return func() {}
	}
	c := newController(floor, time.Now())
	c.afterCycle()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				c.tick(now)
			case <-done:
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			c.stop()
		})
	}
}

type controller struct {
	floor uint64

	mu         sync.Mutex
	sample     [nMetrics]metrics.Sample
	percent    int
	busy       bool
	fast       int // fast ticks in a row
	quiet      int // slow ticks in a row
	lastAllocs uint64
	lastTick   time.Time
	stopped    bool
}

func newController(floor uint64, now time.Time) *controller {
	c := &controller{floor: floor, percent: basePercent, lastTick: now}
	for i, name := range sampleNames {
		c.sample[i].Name = name
	}
	c.lastAllocs = c.read()[mAllocs]
	return c
}

// read takes the metrics; the caller holds mu or owns c alone.
func (c *controller) read() (v [nMetrics]uint64) {
	metrics.Read(c.sample[:])
	for i, s := range c.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			v[i] = s.Value.Uint64()
		}
	}
	return v
}

// sentinel is garbage from birth: its cleanup runs after the next cycle.
// The pointer keeps it out of the tiny allocator, whose blocks may never be
// collected on their own.
type sentinel struct {
	_ *byte
	_ [16]byte
}

// afterCycle sets GOGC for the heap the last cycle found, and asks to be
// called again after the next one: the runtime has just set the next goal
// from the old GOGC, and SetGCPercent sets it again.
func (c *controller) afterCycle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if c.busy {
		c.apply(c.read())
	}
	runtime.AddCleanup(new(sentinel), func(c *controller) { c.afterCycle() }, c)
}

// apply sets the GOGC that puts the goal at the floor; mu is held.
func (c *controller) apply(v [nMetrics]uint64) {
	p := Percent(v[mLive], v[mLive]+v[mStack]+v[mGlobals], c.floor)
	if p != c.percent {
		c.percent = p
		debug.SetGCPercent(p)
	}
}

// tick turns the floor on after busyTicks ticks in a row whose allocation
// would make GOGC=100 collect more often than every busyPeriod, and off
// after quietTicks slower ticks in a row.
func (c *controller) tick(now time.Time) {
	release := false
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	v := c.read()
	elapsed := now.Sub(c.lastTick)
	allocated := v[mAllocs] - c.lastAllocs
	c.lastTick, c.lastAllocs = now, v[mAllocs]
	// Between cycles GOGC=100 lets the heap grow by its roots: the live
	// heap, stacks and globals.
	growth := v[mLive] + v[mStack] + v[mGlobals]
	fast := elapsed > 0 && float64(allocated)*float64(busyPeriod) > float64(growth)*float64(elapsed)
	switch {
	case fast:
		c.quiet = 0
		c.fast++
		if !c.busy && c.fast >= busyTicks {
			c.busy = true
			c.apply(v)
		}
	case c.busy:
		c.fast = 0
		c.quiet++
		if c.quiet >= quietTicks {
			c.busy = false
			release = c.restore()
		}
	default:
		c.fast = 0
	}
	c.mu.Unlock()
	if release {
		// The heap may be up to the floor in garbage: collect it and give
		// its memory back now rather than at the next cycle, which a quiet
		// process may not reach for minutes.
		debug.FreeOSMemory()
	}
}

func (c *controller) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.restore()
}

// restore puts GOGC back to 100, reporting whether it was raised; mu is
// held.
func (c *controller) restore() bool {
	if c.percent == basePercent {
		return false
	}
	c.percent = basePercent
	debug.SetGCPercent(basePercent)
	return true
}

// Percent is the GOGC that puts the runtime's heap goal at the floor, and
// never under the runtime's default. The goal is live + roots × GOGC/100,
// where live is the heap the last cycle marked and roots that heap with the
// stacks and globals it scanned; globals alone are megabytes in a binary of
// this size, so leaving them out would set the goal several times too high.
// It is rounded up to a multiple of 10, so that a heap moving by a few bytes
// between cycles does not change it each time.
//
// Before the first cycle the live heap is unknown, and the runtime's goal
// is its own minimum, scaled by GOGC: Percent then keeps the default.
func Percent(live, roots, floor uint64) int {
	roots = max(roots, live)
	if live == 0 || live+roots*basePercent/100 >= floor {
		return basePercent
	}
	p := (floor - live) * 100 / roots
	p = (p + 9) / 10 * 10
	p = min(p, maxPercent, floor*100/heapMinimum)
	return int(max(p, basePercent))
}
