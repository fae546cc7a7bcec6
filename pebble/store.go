package pebble

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/internal/positions"
	"github.com/syncpoint/syncpoint/internal/storemetrics"
)

// Defaults for Options.
const (
	DefaultCacheSize         = 64 << 20
	DefaultMemTableSize      = 32 << 20
	DefaultMaxBatchOps       = 4096
	DefaultMaxInflight       = 1
	DefaultSweepChunk        = 1024
	DefaultReadLimit         = 1000
	MaxReadLimit             = 10000
	DefaultMaxCachedChannels = 100_000
	DefaultCommitDelay       = 100 * time.Microsecond
)

// Options configures a Store. Zero fields take the Default* values.
type Options struct {
	Clock      clock.Clock           // nil: clock.Real{}
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics registered

	CacheSize    int64  // Pebble block cache, bytes
	MemTableSize uint64 // Pebble memtable, bytes
	// MaxBatchOps caps how many queued writes (Append calls and other
	// writes) go into one commit batch.
	MaxBatchOps int
	// MaxInflight is how many applied batches may wait for their fsync at
	// once; the next batch keeps growing while they do. More than one
	// overlaps applying with syncing but splits writers into more batches.
	MaxInflight int
	// CommitDelay is the longest a batch that could be committed waits for
	// the callers of the previous batch to come back with more work; it
	// applies only when that batch had several callers. Negative: never.
	CommitDelay time.Duration
	// SweepChunk is how many expiry rows one sweep batch handles, so a
	// large sweep does not hold appends back.
	SweepChunk int
	// MaxCachedChannels bounds the in-memory channel states; idle ones
	// beyond it are dropped and reloaded from disk when touched again.
	MaxCachedChannels int

	// FS is the filesystem the store lives on; nil means the operating
	// system's. Tests inject disk faults through it.
	FS vfs.FS
}

// Store is the embedded syncpoint.Store. Create it with Open.
type Store struct {
	// the sync point, user position and cursor methods, over
	// savePositions and loadPositions
	positions.Methods

	db  *pebbledb.DB
	dir string
	// inc is the store's incarnation, mixed into every epoch it shows, so
	// that a restore, which gives the store a new one, changes them all.
	// Empty until the store is first restored.
	inc     string
	clock   clock.Clock
	log     *slog.Logger
	opts    Options
	metrics *storemetrics.Metrics

	// closeMu guards closed and the in-flight count, so Close can wait for
	// every operation before it closes the database.
	closeMu sync.Mutex
	closed  bool
	closing atomic.Bool // lets a long sweep stop early
	ops     sync.WaitGroup

	chans chanCache

	queue     queue
	inflight  chan struct{} // semaphore of applied, unsynced batches
	toSync    chan *txn
	done      chan struct{} // closed when the syncer has exited
	failed    atomic.Pointer[failure]
	closeOnce sync.Once
	closeErr  error
	health    *health
	// appliedNum mirrors applied for goroutines other than the committer.
	appliedNum atomic.Uint64

	// synced counts synced batches; syncCh is closed and replaced after
	// each, to wake readers waiting for durability.
	syncMu  sync.Mutex
	synced  uint64
	syncCh  chan struct{}
	applied uint64       // committer only
	lastOps atomic.Int64 // ops in the last synced batch
}

var (
	_ syncpoint.Store      = (*Store)(nil)
	_ syncpoint.HeadReader = (*Store)(nil)
)

// Open opens or creates the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MemTableSize == 0 {
		opts.MemTableSize = DefaultMemTableSize
	}
	if opts.MaxBatchOps <= 0 {
		opts.MaxBatchOps = DefaultMaxBatchOps
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.CommitDelay == 0 {
		opts.CommitDelay = DefaultCommitDelay
	}
	if opts.SweepChunk <= 0 {
		opts.SweepChunk = DefaultSweepChunk
	}
	if opts.MaxCachedChannels <= 0 {
		opts.MaxCachedChannels = DefaultMaxCachedChannels
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	s := &Store{
		dir:      dir,
		clock:    opts.Clock,
		log:      opts.Logger,
		opts:     opts,
		metrics:  m,
		inflight: make(chan struct{}, opts.MaxInflight),
		toSync:   make(chan *txn, opts.MaxInflight),
		done:     make(chan struct{}),
		syncCh:   make(chan struct{}),
		health:   newHealth(opts.Clock, opts.Logger),
	}
	s.Methods = positions.Methods{Save: s.savePositions, Load: s.loadPositions}
	// Pebble would open an unwritable directory and then retry its first
	// flush for ever; a probe fails at once and says why.
	if err := probeWritable(opts.FS, dir); err != nil {
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", err)
	}
	po := &pebbledb.Options{
		CacheSize:          opts.CacheSize,
		MemTableSize:       opts.MemTableSize,
		FormatMajorVersion: pebbledb.FormatNewest,
		Logger:             pebbleLogger{l: opts.Logger, limit: newLogLimiter(opts.Clock)},
		FS:                 opts.FS,
		EventListener:      &pebbledb.EventListener{BackgroundError: s.backgroundError},
	}
	db, err := s.openDB(dir, po)
	if err != nil {
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.db = db
	if err := s.upgrade(); err != nil {
		db.Close()
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", err)
	}
	inc, _, err := s.get(incarnationKey)
	if err != nil {
		db.Close()
		m.Unregister()
		return nil, fmt.Errorf("open store: read incarnation: %w", err)
	}
	s.inc = string(inc)
	s.chans.init(s)
	s.queue.init()
	go s.commitLoop()
	go s.syncLoop()
	return s, nil
}

// start checks ctx and registers an operation.
func (s *Store) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.enter()
}

// enter registers an operation; it fails once Close has begun.
func (s *Store) enter() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return syncpoint.ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) leave() { s.ops.Done() }

// Close stops accepting work, waits for every operation in flight
// (including appends waiting for their fsync) and closes the database.
// Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		s.closeMu.Unlock()
		s.closing.Store(true)
		s.health.close()
		s.ops.Wait()
		s.queue.close()
		<-s.done
		s.metrics.Unregister()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}

// failure is why the store stopped taking writes, and the first batch it
// applies to: batches before it may still sync and succeed.
type failure struct {
	err  error
	from uint64
}

// failure returns the error that put the store into the failed state.
func (s *Store) failure() error {
	if f := s.failed.Load(); f != nil {
		return f.err
	}
	return nil
}

// failedFor returns the failure if it applies to batch num.
func (s *Store) failedFor(num uint64) error {
	if f := s.failed.Load(); f != nil && num >= f.from {
		return f.err
	}
	return nil
}

// fail puts the store into the failed state from batch number from on.
// Reads go on; writes fail with syncpoint.ErrUnavailable until the store
// is opened again.
func (s *Store) fail(err error, from uint64) {
	f := &failure{err: fmt.Errorf("%w: the store failed and takes no writes until it is opened again: %w", syncpoint.ErrUnavailable, err), from: from}
	if s.failed.CompareAndSwap(nil, f) {
		s.log.Error("store failed: it takes no writes until the server is restarted; fix the cause (disk full, permissions, a failing disk) first", "err", err)
		s.wakeReaders()
	}
}

// wakeReaders wakes everyone waiting for durability or failure.
func (s *Store) wakeReaders() {
	s.syncMu.Lock()
	close(s.syncCh)
	s.syncCh = make(chan struct{})
	s.syncMu.Unlock()
}

// syncState returns the number of synced batches and a channel closed on
// the next change.
func (s *Store) syncState() (uint64, <-chan struct{}) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.synced, s.syncCh
}

// waitChange blocks until the next batch syncs or the store fails.
func (s *Store) waitChange(ctx context.Context, ch <-chan struct{}) error {
	if err := s.failure(); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// get reads a key, copying the value. A missing key gives nil, false.
func (s *Store) get(key []byte) ([]byte, bool, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebbledb.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

// pebbleLogger sends Pebble's log lines to the store's logger; its error
// lines at a bounded rate, as a failing disk can make Pebble repeat one
// without end.
type pebbleLogger struct {
	l     *slog.Logger
	limit *logLimiter
}

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	if ok, dropped := p.limit.allow(); ok {
		p.l.Error(fmt.Sprintf(format, args...), "component", "pebble", "suppressed", dropped)
	}
}

// Fatalf must not return: Pebble calls it on broken invariants, where going
// on could corrupt data.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
