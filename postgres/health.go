package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Health implements syncpoint.Store: nil while a round trip to the
// database works, it is a primary (a standby takes no writes) and no write
// was refused by the database lately; else why not. It writes nothing, so
// a full disk shows here only once a write has met it, and stops showing
// RetryTimeout after the last such write, so that a node taken out of
// service for it is tried again.
func (s *Store) Health(ctx context.Context) error {
	if err := s.start(ctx); err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer s.leave()
	hctx, cancel := context.WithTimeout(ctx, s.opts.HealthTimeout)
	defer cancel()
	var standby bool
	err := s.pool.QueryRow(hctx, `SELECT pg_is_in_recovery()`).Scan(&standby)
	if ctx.Err() != nil {
		return fmt.Errorf("health: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("health: %w", unavailable(err))
	}
	if standby {
		return fmt.Errorf("health: %w", unavailable(errors.New("the database is a standby in recovery, which takes no writes")))
	}
	if o := s.down.Load(); o != nil && isServerError(o.err) && time.Since(o.last) < s.opts.RetryTimeout {
		return fmt.Errorf("health: %w", unavailable(o.err))
	}
	return nil
}
