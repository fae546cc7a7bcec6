package chaos

import (
	crand "crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/internal/servetest"
)

// EnvSeed replays a run, like -chaos.seed.
const EnvSeed = "SYNCPOINT_CHAOS_SEED"

var (
	flagSeed    = flag.Uint64("chaos.seed", 0, "replay the runs of this seed (or set "+EnvSeed+"); 0 draws a new one")
	flagSoak    = flag.Duration("chaos.soak", 0, "run each scenario's faults this long, at soak sizes; 0 is the CI size")
	flagDevices = flag.Int("chaos.devices", 0, "SDK devices in the bad-networks scenario (0: 30, or 100 in a soak)")
	flagRounds  = flag.Int("chaos.rounds", 0, "kill -9 rounds in the crash scenario (0: 5, or 20 in a soak)")
	flagIdle    = flag.Int("chaos.idle", 0, "devices that stop reading, in the hostile-load scenario (0: 200, or 1000 in a soak)")
	flagSilent  = flag.Int("chaos.silent", 0, "connections that never send a hello (0: 2000, or 10000 in a soak)")
)

var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "syncpoint-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mustBinary builds the syncpoint binary once per test run. It skips the
// test under -short, as the tests of cmd/syncpoint do.
func mustBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary under injected faults; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("uses POSIX signals and /proc")
	}
	buildOnce.Do(func() { binPath, buildErr = servetest.Build(binDir) })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// soak reports whether this is a soak run.
func soak() bool { return *flagSoak > 0 }

// faultTime is how long a scenario injects faults: ci, or the soak's
// duration.
func faultTime(ci time.Duration) time.Duration {
	if soak() {
		return *flagSoak
	}
	return ci
}

// size is a count of the scenario: the flag's when given, else the CI or
// the soak size.
func size(flagValue, ci, soakSize int) int {
	switch {
	case flagValue > 0:
		return flagValue
	case soak():
		return soakSize
	}
	return ci
}

// seedOf returns the seed of t's run and says it, at the start and again
// when t fails, with the command that replays it.
func seedOf(t *testing.T) uint64 {
	t.Helper()
	seed := *flagSeed
	if seed == 0 {
		if s := os.Getenv(EnvSeed); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("%s=%q: %v", EnvSeed, s, err)
			}
			seed = v
		}
	}
	if seed == 0 {
		var b [8]byte
		crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) >> 1
	}
	replay := fmt.Sprintf("go test ./internal/chaos -run '^%s$' -v -chaos.seed=%d", t.Name(), seed)
	if soak() {
		replay += fmt.Sprintf(" -chaos.soak=%s", *flagSoak)
	}
	t.Logf("chaos seed %d (replay: %s)", seed, replay)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with chaos seed %d; replay: %s", seed, replay)
		}
	})
	return seed
}

// newRand returns a generator for one goroutine, drawn from the run's.
func newRand(from *rand.Rand) *rand.Rand {
	return rand.New(rand.NewPCG(from.Uint64(), from.Uint64()))
}
