package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/internal/positions"
)

// Defaults for Options.
const (
	DefaultCommitters     = 1
	DefaultMaxBatch       = 2000
	DefaultMaxBatchBytes  = 8 << 20
	DefaultCommitWindow   = 200 * time.Microsecond
	DefaultRetryTimeout   = 5 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	DefaultHealthTimeout  = 2 * time.Second
	DefaultReadLimit      = 1000
	MaxReadLimit          = 10000
	DefaultSweepChunk     = 1000
	DefaultLeaseRetry     = 2 * time.Second
	DefaultLeaseCheck     = time.Second
)

// Options configures a Store. Zero fields take the Default* values.
type Options struct {
	Clock      clock.Clock           // nil: clock.Real{}
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics registered

	// MaxConns caps the connections; 0 keeps the URL's pool_max_conns,
	// else pgx's default (the larger of 4 and the number of CPUs).
	MaxConns int32
	// Committers is how many group-commit transactions run at once, each
	// on a connection of its own out of MaxConns; it is capped at half of
	// them, so that reads and other writes keep the rest. One, the
	// default, makes the largest transactions, which costs PostgreSQL the
	// least per entry; more overlap one transaction's round trips with
	// another's commit, which pays where the database has cores to spare.
	Committers int
	// MaxBatch caps the append requests of one transaction, and
	// MaxBatchBytes their data; an Append call is never split.
	MaxBatch      int
	MaxBatchBytes int
	// CommitWindow is the longest a committer waits for more appends before
	// it begins a transaction, and only when the previous transaction
	// carried several callers' appends. Negative: never wait.
	CommitWindow time.Duration
	// RetryTimeout bounds how long an operation retries lost connections,
	// serialization failures and deadlocks before it fails with
	// syncpoint.ErrUnavailable. Once an outage has lasted that long, further
	// operations fail after one try, until one succeeds.
	RetryTimeout time.Duration
	// HealthTimeout bounds Health's round trip to the database.
	HealthTimeout time.Duration
	// SweepChunk is how many rows one sweep transaction deletes, so that a
	// large sweep holds no channel's head for long.
	SweepChunk int

	// PresenceGrace is how long the Directory keeps listing the sessions
	// of a node that stopped beating; 0: syncpoint.DefaultPresenceGrace.
	PresenceGrace time.Duration
	// LeaseRetry is how often Leases tries to take a lease another node
	// holds, and the pause before a job that returned early runs again.
	LeaseRetry time.Duration
	// LeaseCheck is how often a lease's holder checks its connection, and
	// how long the check may take; see Leases.
	LeaseCheck time.Duration
}

// Store is the PostgreSQL syncpoint.Store. Create it with Open.
type Store struct {
	// the sync point, user position and cursor methods, over
	// savePositions and loadPositions
	positions.Methods

	pool       *pgxpool.Pool // reads and the writes other than appends
	commitPool *pgxpool.Pool // the committers', one connection each
	connStr    string        // for a second handle in tests; never logged
	clock      clock.Clock
	log        *slog.Logger
	opts       Options
	metrics    *metrics

	// closeMu guards closed and the in-flight count, so Close can wait for
	// every operation before it closes the pool.
	closeMu   sync.Mutex
	closed    bool
	ops       sync.WaitGroup
	stop      chan struct{} // closed by Close: retries stop waiting
	closeOnce sync.Once

	queue   queue
	workers sync.WaitGroup
	// lastBatch is how many Append calls the last transaction carried: a
	// committer waits CommitWindow for company only after a shared one.
	lastBatch atomic.Int64
	batches   atomic.Uint64 // committed append transactions

	// down is the outage the last failed operation ran into, cleared by
	// the next one that succeeds; Health reports it.
	down atomic.Pointer[outage]

	beforeCommit func(*pgx.Conn) // see onceTx
}

type outage struct {
	err   error
	since time.Time // when the outage began
	last  time.Time // the latest failure
}

var (
	_ syncpoint.Store      = (*Store)(nil)
	_ syncpoint.HeadReader = (*Store)(nil)
)

// Open connects to the database the URL names (a postgres:// or
// postgresql:// URL, or a key=value connection string), brings its schema
// up to date and starts the committers. The URL's search_path parameter
// picks the schema; the first schema of the path must exist. Open tries
// once: a node that starts before its database is up fails, and its
// supervisor starts it again.
func Open(ctx context.Context, connString string, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Committers <= 0 {
		opts.Committers = DefaultCommitters
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.CommitWindow == 0 {
		opts.CommitWindow = DefaultCommitWindow
	}
	if opts.RetryTimeout <= 0 {
		opts.RetryTimeout = DefaultRetryTimeout
	}
	if opts.HealthTimeout <= 0 {
		opts.HealthTimeout = DefaultHealthTimeout
	}
	if opts.SweepChunk <= 0 {
		opts.SweepChunk = DefaultSweepChunk
	}
	if opts.PresenceGrace <= 0 {
		opts.PresenceGrace = syncpoint.DefaultPresenceGrace
	}
	if opts.LeaseRetry <= 0 {
		opts.LeaseRetry = DefaultLeaseRetry
	}
	if opts.LeaseCheck <= 0 {
		opts.LeaseCheck = DefaultLeaseCheck
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", parseError(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	// A role or database may have synchronous_commit off, which would
	// acknowledge appends that a crash of PostgreSQL loses. Only "off" is
	// raised: "remote_apply" and the like are stronger and stay.
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'`)
		return err
	}
	opts.Committers = max(1, min(opts.Committers, int(cfg.MaxConns)/2))
	commitCfg := cfg.Copy()
	commitCfg.MaxConns = int32(opts.Committers)
	cfg.MaxConns = max(1, cfg.MaxConns-commitCfg.MaxConns)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", parseError(err))
	}
	commitPool, err := pgxpool.NewWithConfig(ctx, commitCfg)
	if err != nil {
		pool.Close()
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", parseError(err))
	}
	s := &Store{
		pool:       pool,
		commitPool: commitPool,
		connStr:    connString,
		clock:      opts.Clock,
		log:        opts.Logger,
		opts:       opts,
		metrics:    m,
		stop:       make(chan struct{}),
	}
	s.Methods = positions.Methods{Save: s.savePositions, Load: s.loadPositions}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		commitPool.Close()
		m.Unregister()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.queue.init()
	for range opts.Committers {
		s.workers.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// parseError keeps the connection string, which may hold a password, out
// of an error.
func parseError(err error) error {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err
	}
	msg := "the store URL is not a PostgreSQL connection string"
	if inner := pe.Unwrap(); inner != nil {
		var ue *url.Error
		if errors.As(inner, &ue) {
			inner = ue.Err
		}
		msg += ": " + inner.Error()
	}
	return errors.New(msg)
}

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return giveUp(err)
	}
	defer conn.Release()
	from, to, err := migrate(ctx, conn.Conn(), migrationFiles)
	if err != nil {
		return giveUp(err)
	}
	if to > from {
		s.log.Info("store: schema migrated", "from", from, "to", to)
	}
	return nil
}

// start checks ctx and registers an operation.
func (s *Store) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return syncpoint.ErrClosed
	}
	s.ops.Add(1)
	return nil
}

func (s *Store) leave() { s.ops.Done() }

// Close stops accepting work, waits for the operations in flight (an
// append in a transaction finishes it) and closes the pool. Calling it
// again is a no-op.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeMu.Lock()
		s.closed = true
		s.closeMu.Unlock()
		close(s.stop)
		s.ops.Wait()
		s.queue.close()
		s.workers.Wait()
		s.pool.Close()
		s.commitPool.Close()
		s.metrics.Unregister()
	})
	return nil
}

// errHeadGone means that a head row an append was about to lock was
// deleted meanwhile (its biz was dropped): the next try creates it anew.
var errHeadGone = errors.New("a channel's head row was deleted while the append waited for it")

// SQLSTATEs that roll a transaction back and leave it safe to run again.
const (
	sqlSerialization = "40001"
	sqlDeadlock      = "40P01"
)

// transient reports whether err is worth another try: the transaction was
// rolled back by a serialization failure or a deadlock, or the database
// could not be reached.
func transient(err error) bool {
	if errors.Is(err, errHeadGone) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == sqlSerialization || pe.Code == sqlDeadlock) {
		return true
	}
	return unreachable(err)
}

// unreachable reports whether err means the database cannot serve now:
// no connection or a lost one, a server shutting down or starting, out of
// connections or disk, or a read-only standby.
func unreachable(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", // admin or crash shutdown, starting up
			"53300", // too many connections
			"53100", // disk full
			"58030", // I/O error
			"25006": // read-only transaction: a standby
			return true
		}
		return strings.HasPrefix(pe.Code, "08") // connection exception
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed)
}

// unavailable wraps err, which made the database unreachable, in
// syncpoint.ErrUnavailable.
func unavailable(err error) error {
	if errors.Is(err, syncpoint.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: the database cannot be reached or cannot write: %w", syncpoint.ErrUnavailable, err)
}

// giveUp is the error an operation returns when it stops retrying err.
func giveUp(err error) error {
	if unreachable(err) {
		return unavailable(err)
	}
	return err
}

// retry runs fn until it succeeds, fails for good, or RetryTimeout has
// passed since its first failure; during an outage that has lasted longer
// than that already, one try is all it gets, so that callers hear 503 at
// once instead of after a timeout each.
//
// fn must be safe to run again after it failed, even where the failure was
// a lost answer to a COMMIT that did commit: every caller's is a read, or
// a transaction whose second run leaves what the first left (upserts,
// forward-only positions). Writes whose second run would differ go
// through once instead. Each try runs apart from ctx's cancellation, under a deadline
// of its own, so that a write once begun is finished or rolled back, not
// cut off between its COMMIT and the answer; ctx is checked between tries.
func (s *Store) retry(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var began time.Time
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.RetryTimeout)
		err := fn(actx)
		cancel()
		if err == nil {
			s.up(what, attempt)
			return nil
		}
		if !transient(err) {
			return err
		}
		if err := s.pause(ctx, what, err, attempt, &began); err != nil {
			return err
		}
	}
}

// pause records a transient failure and sleeps before the next try. It
// returns the error to give up with once the retry budget is spent, or
// when ctx ends or the store closes.
func (s *Store) pause(ctx context.Context, what string, err error, attempt int, began *time.Time) error {
	now := time.Now()
	if began.IsZero() {
		*began = now
	}
	if unreachable(err) {
		s.markDown(err)
	}
	wait := backoff(attempt)
	if now.Sub(*began)+wait > s.opts.RetryTimeout || s.downFor() > s.opts.RetryTimeout {
		return giveUp(err)
	}
	if attempt == 0 {
		s.log.Warn("store: retrying", "op", what, "err", err)
	}
	s.metrics.retries.Inc()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return giveUp(err)
	}
}

// up notes that an operation succeeded: the database is reachable.
func (s *Store) up(what string, attempt int) {
	if o := s.down.Swap(nil); o != nil {
		s.log.Info("store: the database answers again", "op", what, "down_for", time.Since(o.since).Round(time.Millisecond))
	} else if attempt > 0 {
		s.log.Info("store: retry succeeded", "op", what, "attempts", attempt+1)
	}
}

// backoff is the pause before try attempt+2: from 10ms, doubling to 500ms,
// with jitter so that nodes do not come back in step.
func backoff(attempt int) time.Duration {
	d := min(10*time.Millisecond<<min(attempt, 6), 500*time.Millisecond)
	return d/2 + rand.N(d/2+1)
}

// markDown records that the database is unreachable, keeping the time the
// outage began, and has the pool drop its connections, which are likely
// as dead as the one that failed: the next try dials afresh instead of
// spending itself on a stale one.
func (s *Store) markDown(err error) {
	s.pool.Reset()
	s.commitPool.Reset()
	for {
		old := s.down.Load()
		now := time.Now()
		next := &outage{err: err, since: now, last: now}
		if old != nil {
			next.since = old.since
		}
		if s.down.CompareAndSwap(old, next) {
			if old == nil {
				s.log.Error("store: the database cannot be reached; writes fail with 503 until it can", "err", err)
			}
			return
		}
	}
}

// downFor is how long the current outage has lasted, 0 if none.
func (s *Store) downFor() time.Duration {
	if o := s.down.Load(); o != nil {
		return time.Since(o.since)
	}
	return 0
}

// read runs a read with retries, wrapping its errors with what.
func (s *Store) read(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer s.leave()
	if err := s.retryRead(ctx, fn); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// retryRead is retry for a read, which needs no shelter from ctx: cut
// off, it has changed nothing.
func (s *Store) retryRead(ctx context.Context, fn func(ctx context.Context) error) error {
	var began time.Time
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			s.up("read", attempt)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !transient(err) {
			return err
		}
		if err := s.pause(ctx, "read", err, attempt, &began); err != nil {
			return err
		}
	}
}
