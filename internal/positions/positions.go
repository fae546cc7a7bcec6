// Package positions gives a store the six Store methods of stored
// positions (sync points, user positions, cursors) over two functions of
// its own, so that each store writes only how a row is saved and read.
package positions

import (
	"context"
	"fmt"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Kind is which owner a position belongs to.
type Kind int

// The kinds of stored position.
const (
	SyncPoint Kind = iota // per device
	User                  // per user, of multi_device: false channels
	Cursor                // per reader inside the server
)

// What names the owner, for a validation error.
func (k Kind) What() string { return [...]string{"device id", "user id", "reader"}[k] }

// ForwardOnly reports whether a save may never move a stored position
// backwards within its epoch: devices' and users' positions only advance,
// while a cursor is set where its reader says.
func (k Kind) ForwardOnly() bool { return k != Cursor }

// Row is one position of an owner in a channel; a zero At gets the
// store's clock.
type Row struct {
	Owner    string
	Channel  syncpoint.Channel
	Position syncpoint.Position
	At       time.Time
}

// Methods implements the position methods of syncpoint.Store; a store
// embeds it and sets Save and Load.
type Methods struct {
	// Save writes rows of one kind in one transaction, validating each
	// (k.What() names the owner) and, when k.ForwardOnly(), never moving
	// a stored position backwards within its epoch.
	Save func(ctx context.Context, k Kind, rows []Row) error
	// Load calls fn with every row of owner, by channel.
	Load func(ctx context.Context, k Kind, owner string, fn func(Row)) error
}

// SaveSyncPoints implements syncpoint.Store.
func (m Methods) SaveSyncPoints(ctx context.Context, points []syncpoint.SyncPoint) error {
	rows := make([]Row, len(points))
	for i, p := range points {
		rows[i] = Row{p.DeviceID, p.Channel, p.Position, p.UpdatedAt}
	}
	if err := m.Save(ctx, SyncPoint, rows); err != nil {
		return fmt.Errorf("save sync points: %w", err)
	}
	return nil
}

// SyncPoints implements syncpoint.Store.
func (m Methods) SyncPoints(ctx context.Context, deviceID string) ([]syncpoint.SyncPoint, error) {
	var out []syncpoint.SyncPoint
	err := m.Load(ctx, SyncPoint, deviceID, func(r Row) {
		out = append(out, syncpoint.SyncPoint{DeviceID: r.Owner, Channel: r.Channel, Position: r.Position, UpdatedAt: r.At})
	})
	if err != nil {
		return nil, fmt.Errorf("sync points of %s: %w", deviceID, err)
	}
	return out, nil
}

// SaveUserPositions implements syncpoint.Store.
func (m Methods) SaveUserPositions(ctx context.Context, points []syncpoint.UserPosition) error {
	rows := make([]Row, len(points))
	for i, p := range points {
		rows[i] = Row{p.UserID, p.Channel, p.Position, p.UpdatedAt}
	}
	if err := m.Save(ctx, User, rows); err != nil {
		return fmt.Errorf("save user positions: %w", err)
	}
	return nil
}

// UserPositions implements syncpoint.Store.
func (m Methods) UserPositions(ctx context.Context, userID string) ([]syncpoint.UserPosition, error) {
	var out []syncpoint.UserPosition
	err := m.Load(ctx, User, userID, func(r Row) {
		out = append(out, syncpoint.UserPosition{UserID: r.Owner, Channel: r.Channel, Position: r.Position, UpdatedAt: r.At})
	})
	if err != nil {
		return nil, fmt.Errorf("positions of user %s: %w", userID, err)
	}
	return out, nil
}

// SaveCursor implements syncpoint.Store.
func (m Methods) SaveCursor(ctx context.Context, c syncpoint.Cursor) error {
	if err := m.Save(ctx, Cursor, []Row{{c.Reader, c.Channel, c.Position, c.UpdatedAt}}); err != nil {
		return fmt.Errorf("save cursor: %w", err)
	}
	return nil
}

// Cursors implements syncpoint.Store.
func (m Methods) Cursors(ctx context.Context, reader string) ([]syncpoint.Cursor, error) {
	var out []syncpoint.Cursor
	err := m.Load(ctx, Cursor, reader, func(r Row) {
		out = append(out, syncpoint.Cursor{Reader: r.Owner, Channel: r.Channel, Position: r.Position, UpdatedAt: r.At})
	})
	if err != nil {
		return nil, fmt.Errorf("cursors of %s: %w", reader, err)
	}
	return out, nil
}

// Validate checks rows before a save: owner ids and channels.
func Validate(k Kind, rows []Row) error {
	for _, r := range rows {
		if err := syncpoint.ValidateID(k.What(), r.Owner); err != nil {
			return err
		}
		if err := r.Channel.Validate(); err != nil {
			return err
		}
	}
	return nil
}
