package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/syncpoint/syncpoint"
)

// onceTx is one try of a transaction that must take effect at most once
// however often it is tried: appends, sweeps and resets, whose second run
// would append again, miscount or reset again. Its statements go in
// pipelined batches; the first begins the transaction and learns its id.
type onceTx struct {
	conn       *pgx.Conn
	xid        string // set once the first batch is answered
	commitSent bool
	// beforeCommit, when set, is called with the connection just before
	// the batch with COMMIT is sent; tests cut the connection there.
	beforeCommit func(*pgx.Conn)
}

// txKind says where a transaction runs and how long one try may take.
type txKind int

const (
	// smallTx is a write of a few rows.
	smallTx txKind = iota
	// appendTx is a group-commit transaction, on the committers' pool, so
	// that reads never keep appends waiting for a connection.
	appendTx
	// bulkTx may delete a whole channel or biz, which can take a while.
	bulkTx
)

// bulkTimeout bounds one try of a bulkTx; a smaller one could cut off a
// reset of a large channel for ever.
const bulkTimeout = 10 * time.Minute

// begin queues BEGIN and the transaction id at the head of b.
func (t *onceTx) begin(b *pgx.Batch) {
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_current_xact_id()::text`).QueryRow(func(row pgx.Row) error { return row.Scan(&t.xid) })
}

// send runs b; on an error it rolls the transaction back.
func (t *onceTx) send(ctx context.Context, b *pgx.Batch) error {
	if err := t.conn.SendBatch(ctx, b).Close(); err != nil {
		t.rollback()
		return err
	}
	return nil
}

// commit runs b with COMMIT at its end.
func (t *onceTx) commit(ctx context.Context, b *pgx.Batch) error {
	b.Queue(`COMMIT`)
	if t.beforeCommit != nil {
		t.beforeCommit(t.conn)
	}
	t.commitSent = true
	return t.send(ctx, b)
}

// rollback ends a failed transaction. Should that fail too, the
// connection is left in the transaction, and the pool drops it.
func (t *onceTx) rollback() {
	if t.conn.IsClosed() || t.conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t.conn.Exec(ctx, "ROLLBACK")
}

// once runs try until its transaction commits, fails for good, or the
// retry budget is spent. Tries run apart from ctx's cancellation (ctx is
// checked between them), so that none is cut off between its COMMIT and
// the answer.
//
// This is where a retry could take effect twice: when the connection is
// lost after COMMIT was sent, the transaction may have committed with
// only the answer lost, and a plain retry would append every request
// again, under new seqs (those without an idempotency key as new entries,
// those with one answered as duplicates of themselves). Instead, once
// asks the database what became of the transaction (pg_xact_status of its
// id), waiting while it is still in progress (a backend that has not yet
// noticed its lost client), and tries again only after it aborted. A
// transaction that committed counts as the try's success: what try
// computed is what the database holds.
func (s *Store) once(ctx context.Context, what string, k txKind, try func(ctx context.Context, t *onceTx) error) error {
	var began time.Time
	pool, timeout := s.pool, s.opts.RetryTimeout
	switch k {
	case appendTx:
		pool = s.commitPool
	case bulkTx:
		timeout = max(timeout, bulkTimeout)
	}
	for attempt := 0; ; attempt++ {
		t := &onceTx{}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		err := s.tryOnce(actx, pool, t, try)
		cancel()
		if err != nil && t.commitSent && t.xid != "" && !isServerError(err) {
			committed, rerr := s.resolve(ctx, what, t.xid, &began)
			if rerr != nil {
				s.metrics.inDoubt.WithLabelValues("unknown").Inc()
				return fmt.Errorf("%w: the connection was lost during COMMIT and the outcome is unknown (%v): %w", syncpoint.ErrUnavailable, rerr, err)
			}
			if committed {
				s.metrics.inDoubt.WithLabelValues("committed").Inc()
				s.log.Warn("store: a COMMIT lost its answer; the transaction did commit", "op", what, "err", err)
				err = nil
			} else {
				s.metrics.inDoubt.WithLabelValues("aborted").Inc()
			}
		}
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

func (s *Store) tryOnce(ctx context.Context, pool *pgxpool.Pool, t *onceTx, try func(ctx context.Context, t *onceTx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	t.conn, t.beforeCommit = conn.Conn(), s.beforeCommit
	return try(ctx, t)
}

// isServerError reports whether the database answered err. Then the
// transaction did not commit: the statement that failed came before
// COMMIT, which the database skips after an error.
func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// resolve finds out whether the transaction xid committed.
func (s *Store) resolve(ctx context.Context, what, xid string, began *time.Time) (bool, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.RetryTimeout)
		var status *string
		err := s.pool.QueryRow(actx, `SELECT pg_xact_status($1::text::xid8)`, xid).Scan(&status)
		cancel()
		switch {
		case err == nil && status == nil:
			return false, errors.New("the database no longer knows the transaction")
		case err == nil && *status == "committed":
			return true, nil
		case err == nil && *status == "aborted":
			return false, nil
		case err == nil:
			// Still in progress: its backend is still working through the
			// batch, COMMIT included, or has yet to notice its lost client.
			err = unavailable(errors.New("the transaction is still in progress"))
		case !transient(err):
			return false, err
		}
		if perr := s.pause(ctx, what+": resolve", err, attempt, began); perr != nil {
			return false, perr
		}
	}
}
