package postgres

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/syncpoint/syncpoint"
)

// Leases is the cluster's syncpoint.Leases, made of PostgreSQL's
// session-level advisory locks on the database the nodes share. Get it
// with Store.Leases.
//
// A lease is the lock keyed by hashtextextended of "syncpoint lease ",
// the store's schema and the lease's name, so that deployments in other
// schemas of one database lease apart; two names whose keys collide
// merely never run at once. The holder keeps the lock on a connection of
// its own, taken out of the pool, and the database releases it when that
// connection ends, so a node that dies or loses the database loses its
// leases. The connection must reach PostgreSQL directly or through a
// session-mode pooler: a transaction-mode pooler would hand the lock
// around.
//
// A node that holds no lease tries again every Options.LeaseRetry. The
// holder checks its connection every Options.LeaseCheck and gives the
// lease up when the check fails or takes longer; its job's ctx ends then,
// and the node waits two LeaseRetry periods before it tries again, so that
// a node in better health takes over.
// A node that takes a lease waits three checks' time before it runs the
// job, so that a holder that lost the connection has noticed and stopped
// before; this holds as long as jobs return promptly once their ctx ends.
// As with every lease without fencing, a holder that stalls (a paused
// process) can still overlap its successor, so jobs must tolerate a rare
// overlap, as the store's sweeps do.
type Leases struct {
	s *Store

	mu   sync.Mutex
	held map[string]uint32 // lease name → the backend holding it
}

var _ syncpoint.Leases = (*Leases)(nil)

// Leases returns the leases on the store's database.
func (s *Store) Leases() *Leases { return &Leases{s: s, held: make(map[string]uint32)} }

// leaseKey is the advisory lock's key for the lease named by $1.
const leaseKey = `hashtextextended('syncpoint lease ' || coalesce(current_schema(), '') || ' ' || $1, 0)`

// Run implements syncpoint.Leases. When fn returns while the lease is
// still held, it is called again after Options.LeaseRetry. Run returns
// nil when ctx ends and ErrClosed when the store is closed; the lease is
// released first, once fn has returned.
func (l *Leases) Run(ctx context.Context, name string, fn func(ctx context.Context)) error {
	for {
		conn := l.take(ctx, name)
		if conn == nil {
			break
		}
		// A node that lost its connection is likelier than others to be
		// the one in trouble: it lets them try first.
		if l.hold(ctx, name, conn, fn) && !l.sleep(ctx, 2*l.s.opts.LeaseRetry) {
			break
		}
	}
	if ctx.Err() == nil {
		return fmt.Errorf("lease %s: %w", name, syncpoint.ErrClosed)
	}
	return nil
}

// take returns a connection holding the lease, trying every LeaseRetry,
// or nil once ctx ends or the store closes.
func (l *Leases) take(ctx context.Context, name string) *pgx.Conn {
	failing := false
	for {
		if l.stopped(ctx) {
			return nil
		}
		conn, err := l.try(ctx, name)
		switch {
		case conn != nil:
			return conn
		case err != nil && !failing && !l.stopped(ctx):
			failing = true // once per outage, not at every try
			l.s.log.Warn("store: cannot try for a lease", "lease", name, "err", err)
		case err == nil:
			failing = false
		}
		if !l.sleep(ctx, l.s.opts.LeaseRetry) {
			return nil
		}
	}
}

// try takes the lease if it is free, on a connection out of the pool that
// it then keeps.
func (l *Leases) try(ctx context.Context, name string) (*pgx.Conn, error) {
	actx, cancel := context.WithTimeout(ctx, l.s.opts.RetryTimeout)
	defer cancel()
	pc, err := l.s.pool.Acquire(actx)
	if err != nil {
		return nil, err
	}
	var got bool
	if err := pc.QueryRow(actx, `SELECT pg_try_advisory_lock(`+leaseKey+`)`, name).Scan(&got); err != nil {
		// The lock may have been taken with only the answer lost: ending
		// the connection ends the lock too.
		closeConn(pc.Hijack(), l.s.opts.LeaseCheck)
		return nil, err
	}
	if !got {
		pc.Release()
		return nil, nil
	}
	return pc.Hijack(), nil
}

// hold runs fn while conn holds the lease, and releases it once ctx ends,
// the store closes or the connection fails, which it reports as lost.
func (l *Leases) hold(ctx context.Context, name string, conn *pgx.Conn, fn func(ctx context.Context)) (lost bool) {
	l.setHeld(name, conn.PgConn().PID())
	defer l.setHeld(name, 0)
	l.s.log.Info("store: lease taken", "lease", name)
	check := l.s.opts.LeaseCheck
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if !l.sleep(jctx, 3*check) {
			return
		}
		for {
			fn(jctx)
			if !l.sleep(jctx, l.s.opts.LeaseRetry) {
				return
			}
		}
	}()
	tick := time.NewTicker(check)
	defer tick.Stop()
	for !lost && !l.stopped(ctx) {
		select {
		case <-ctx.Done():
		case <-l.s.stop:
		case <-tick.C:
			cctx, ccancel := context.WithTimeout(ctx, check)
			_, err := conn.Exec(cctx, `SELECT 1`)
			ccancel()
			if err != nil && ctx.Err() == nil {
				lost = true
				l.s.log.Warn("store: lease lost with its connection", "lease", name, "err", err)
			}
		}
	}
	cancel()
	<-done
	if !lost {
		// Unlocked before the connection closes, so that another node can
		// take the lease at once rather than once the backend has exited.
		uctx, ucancel := context.WithTimeout(context.Background(), check)
		conn.Exec(uctx, `SELECT pg_advisory_unlock(`+leaseKey+`)`, name)
		ucancel()
		l.s.log.Info("store: lease released", "lease", name)
	}
	closeConn(conn, check)
	return lost
}

// stopped reports whether ctx ended or the store closed.
func (l *Leases) stopped(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-l.s.stop:
		return true
	default:
		return false
	}
}

// sleep waits d; it returns false at once when ctx ends or the store
// closes.
func (l *Leases) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-l.s.stop:
		return false
	}
}

func (l *Leases) setHeld(name string, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if pid == 0 {
		delete(l.held, name)
		l.s.metrics.leases.WithLabelValues(name).Dec()
		return
	}
	l.held[name] = pid
	l.s.metrics.leases.WithLabelValues(name).Inc()
}

// holder returns the pid of the backend holding the lease for this
// Leases, 0 if none; tests terminate it.
func (l *Leases) holder(name string) uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[name]
}

func closeConn(conn *pgx.Conn, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn.Close(ctx)
}
