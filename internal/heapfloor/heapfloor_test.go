package heapfloor

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, roots, floor uint64
		want               int
	}{
		{0, 0, 32 * mib, 100}, // no cycle yet
		{0, 8 * mib, 32 * mib, 100},
		{1, 1, 32 * mib, 800}, // capped: 4 MiB × 8 is the floor
		{1, 1, 1 << 40, maxPercent},
		{7 * mib, 7 * mib, 32 * mib, 360},     // goal 7 + 7 × 3.6 = 32.2 MiB
		{7 * mib, 15 * mib, 32 * mib, 170},    // 8 MiB of globals and stacks: 7 + 15 × 1.7 = 32.5
		{8 * mib, 8 * mib, 32 * mib, 300},     // goal exactly the floor
		{16 * mib, 16 * mib, 32 * mib, 100},   // GOGC=100's goal is the floor
		{15 * mib, 16 * mib, 32 * mib, 110},   // just under: rounded up from 106
		{2 * mib, 40 * mib, 32 * mib, 100},    // roots alone put the goal over the floor
		{500 * mib, 510 * mib, 32 * mib, 100}, // a large heap paces as the runtime does
		{3 * mib, 3 * mib, 64 * mib, 1600},    // 2033, capped at 64/4 × 100
		{3 * mib, 3 * mib, 256 * mib, 6400},   // 8433, capped at 256/4 × 100
		{10 * mib, 10 * mib, 256 * mib, 2460},
		{mib, 0, 256 * mib, 6400}, // roots are never less than the heap
	} {
		got := Percent(c.live, c.roots, c.floor)
		if got != c.want {
			t.Errorf("Percent(%d, %d, %d) = %d, want %d", c.live, c.roots, c.floor, got, c.want)
		}
		goal := max(c.live+max(c.roots, c.live)*uint64(got)/100, heapMinimum*uint64(got)/100)
		if c.live > 0 && got < maxPercent && goal < c.floor {
			t.Errorf("Percent(%d, %d, %d) = %d puts the goal at %d, under the floor", c.live, c.roots, c.floor, got, goal)
		}
		if got > basePercent && heapMinimum*uint64(got)/100 > c.floor {
			t.Errorf("Percent(%d, %d, %d) = %d puts the runtime's minimum at %d, over the floor", c.live, c.roots, c.floor, got, heapMinimum*uint64(got)/100)
		}
	}
}

// wantGOGC fails the test unless GOGC is want; when says at what point.
func wantGOGC(t *testing.T, want uint64, when string) {
	t.Helper()
	if got := gogc(); got != want {
		t.Errorf("GOGC = %d %s, want %d", got, when, want)
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var sink []byte

// garbageCycles allocates n bytes of garbage in 4 KiB pieces and returns
// how many collections ran meanwhile.
func garbageCycles(n int) uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.NumGC
	for i := 0; i < n; i += 4096 {
		sink = make([]byte, 4096)
	}
	runtime.ReadMemStats(&ms)
	return ms.NumGC - before
}

func numGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}

// TestFloorWhileBusy drives the controller's ticks by hand: fast
// allocation turns a floor far above this test's heap on, after which the
// same garbage takes fewer collections; slow ticks turn it off, collect at
// once and put GOGC back.
func TestFloorWhileBusy(t *testing.T) {
	t.Setenv("GOGC", "")
	runtime.GC()
	without := garbageCycles(256 << 20)
	if without < 4 {
		t.Skipf("256 MiB of garbage took %d collections without a floor; the live heap is too large for this test", without)
	}

	now := time.Now()
	c := newController(1<<30, now)
	defer c.stop()
	c.afterCycle()
	for i := 1; i < busyTicks; i++ {
		garbageCycles(64 << 20)
		now = now.Add(time.Second)
		c.tick(now)
		if got := gogc(); got != basePercent {
			t.Fatalf("GOGC = %d after %d fast ticks, want %d until %d", got, i, basePercent, busyTicks)
		}
	}
	now = now.Add(time.Second)
	c.tick(now) // a slow tick: the count of fast ones starts again
	for i := 0; i < busyTicks; i++ {
		garbageCycles(64 << 20)
		now = now.Add(time.Second)
		c.tick(now) // 64 MiB in a second
	}
	if got := gogc(); got <= 1000 {
		t.Fatalf("GOGC = %d after a busy tick with a 1 GiB floor over a heap of a few MiB, want far more", got)
	}
	runtime.GC() // the hook after each cycle keeps it raised
	time.Sleep(20 * time.Millisecond)
	if got := gogc(); got <= 1000 {
		t.Fatalf("GOGC = %d after a cycle while busy", got)
	}
	with := garbageCycles(256 << 20)
	if with >= without {
		t.Errorf("256 MiB of garbage took %d collections with the floor and %d without", with, without)
	}
	t.Logf("256 MiB of garbage: %d collections without a floor, %d with; GOGC %d", without, with, gogc())
	now = now.Add(time.Second)
	c.tick(now) // still busy: that garbage came within this second

	for i := 1; i < quietTicks; i++ {
		now = now.Add(time.Second)
		c.tick(now)
		if got := gogc(); got <= 1000 {
			t.Fatalf("GOGC = %d after %d quiet ticks, want it kept until %d", got, i, quietTicks)
		}
	}
	before := numGC()
	now = now.Add(time.Second)
	c.tick(now)
	if got := gogc(); got != basePercent {
		t.Errorf("GOGC = %d after %d quiet ticks, want %d", got, quietTicks, basePercent)
	}
	if numGC() == before {
		t.Error("no collection when the floor went off: its garbage stays until the next cycle")
	}
	runtime.GC() // a quiet controller leaves GOGC alone after a cycle
	time.Sleep(20 * time.Millisecond)
	wantGOGC(t, basePercent, "after a cycle while quiet")

	for range busyTicks {
		garbageCycles(64 << 20)
		now = now.Add(time.Second)
		c.tick(now)
	}
	if got := gogc(); got <= 1000 {
		t.Errorf("GOGC = %d after busy again", got)
	}
	c.stop()
	wantGOGC(t, basePercent, "after stop")
	runtime.GC() // the cleanup of the last sentinel must not raise it again
	time.Sleep(20 * time.Millisecond)
	wantGOGC(t, basePercent, "after stop and a cycle")
}

// TestStartStop runs the real ticker: Start and stop leave GOGC as it was.
func TestStartStop(t *testing.T) {
	t.Setenv("GOGC", "")
	before := gogc()
	stop := Start(1 << 30)
	runtime.GC()
	stop()
	stop()
	wantGOGC(t, before, "after stop")
}

func TestOperatorGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "100")
	before := gogc()
	stop := Start(1 << 30)
	defer stop()
	garbageCycles(64 << 20)
	runtime.GC()
	time.Sleep(1500 * time.Millisecond) // past a tick
	wantGOGC(t, before, "with GOGC set in the environment")
}

func TestZeroFloorIsOff(t *testing.T) {
	t.Setenv("GOGC", "")
	before := gogc()
	stop := Start(0)
	defer stop()
	garbageCycles(64 << 20)
	time.Sleep(1500 * time.Millisecond)
	wantGOGC(t, before, "with no floor")
}
