package pebble

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/syncpoint/syncpoint/internal/clock"
)

// How the store reports a disk that keeps failing.
const (
	// bgLogEvery is how often a background error is logged again once the
	// first one failed the store.
	bgLogEvery = time.Minute
	// bgPauseMin and bgPauseMax bound the pause after each background
	// error: Pebble retries a failed flush at once and without end.
	bgPauseMin = 10 * time.Millisecond
	bgPauseMax = time.Second
	// errLogBurst error lines of Pebble's pass, then one per errLogEvery.
	errLogBurst = 10
	errLogEvery = 10 * time.Second
)

// probeName is the file Open writes to learn that the directory takes
// writes; it is removed again at once.
const probeName = ".syncpoint-write-probe"

// probeWritable creates dir if needed and writes, syncs and removes a file
// in it.
func probeWritable(fs vfs.FS, dir string) error {
	fail := func(err error) error {
		return fmt.Errorf("the store directory %s is not writable: %w", dir, err)
	}
	if err := fs.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	name := fs.PathJoin(dir, probeName)
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return fail(err)
	}
	_, err = f.Write([]byte("syncpoint"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := fs.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fail(err)
	}
	return nil
}

// health is what the store knows of Pebble's background errors.
type health struct {
	clock clock.Clock
	log   *slog.Logger

	mu         sync.Mutex
	count      int // background errors so far
	lastLog    time.Time
	suppressed int
	opening    chan error    // the first error while Open waits for Pebble
	stop       chan struct{} // closed by Close: no more pauses
	stopOnce   sync.Once
}

func newHealth(c clock.Clock, log *slog.Logger) *health {
	return &health{clock: c, log: log, opening: make(chan error, 1), stop: make(chan struct{})}
}

func (h *health) close() { h.stopOnce.Do(func() { close(h.stop) }) }

// backgroundError is Pebble's EventListener.BackgroundError: a flush or
// compaction failed, so the disk does not take writes. The store fails,
// which refuses writes at once instead of stalling them when the memtable
// fills; the error is logged when it first happens, then at most once per
// bgLogEvery.
func (s *Store) backgroundError(err error) {
	h := s.health
	h.mu.Lock()
	h.count++
	n := h.count
	now := h.clock.Now()
	logAgain := n > 1 && now.Sub(h.lastLog) >= bgLogEvery
	if n == 1 || logAgain {
		h.lastLog = now
	} else {
		h.suppressed++
	}
	suppressed := h.suppressed
	if logAgain {
		h.suppressed = 0
	}
	h.mu.Unlock()

	select {
	case h.opening <- err:
	default:
	}
	if n == 1 {
		s.fail(fmt.Errorf("background: %w", err), s.appliedNum.Load()+1)
	} else if logAgain {
		s.log.Error("store: still failing in the background", "err", err, "errors_since_last_line", suppressed)
	}
	// Pebble calls this from the goroutine that retries, so a pause here
	// is what keeps a failing disk from taking a whole core.
	pause := min(bgPauseMin<<min(n-1, 10), bgPauseMax)
	t := time.NewTimer(pause)
	defer t.Stop()
	select {
	case <-t.C:
	case <-h.stop:
	}
}

// openDB opens Pebble, but gives up as soon as a background error shows
// that the directory cannot take writes: Pebble's Open waits for its first
// flush, which it retries for ever. An abandoned open is closed should it
// ever finish.
func (s *Store) openDB(dir string, po *pebbledb.Options) (*pebbledb.DB, error) {
	type opened struct {
		db  *pebbledb.DB
		err error
	}
	done := make(chan opened, 1)
	go func() {
		db, err := pebbledb.Open(dir, po)
		done <- opened{db, err}
	}()
	select {
	case o := <-done:
		return o.db, o.err
	case err := <-s.health.opening:
		go func() {
			if o := <-done; o.err == nil {
				o.db.Close()
			}
		}()
		return nil, fmt.Errorf("the store in %s cannot write: %w", dir, err)
	}
}

// Health implements syncpoint.Store: nil while the store takes writes,
// else why not.
func (s *Store) Health(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer s.leave()
	if err := s.failure(); err != nil {
		return err
	}
	return nil
}

// logLimiter passes a burst of lines, then one per interval, and counts
// what it drops.
type logLimiter struct {
	clock   clock.Clock
	mu      sync.Mutex
	n       int
	last    time.Time
	dropped int
}

func newLogLimiter(c clock.Clock) *logLimiter { return &logLimiter{clock: c} }

// allow reports whether a line may be logged now, and how many were
// dropped since the last one that was.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if l.n < errLogBurst || now.Sub(l.last) >= errLogEvery {
		l.n++
		l.last = now
		d := l.dropped
		l.dropped = 0
		return true, d
	}
	l.dropped++
	return false, 0
}
