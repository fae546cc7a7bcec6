package feed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/syncpoint/syncpoint"
)

// LastSeenPrecision is how stale a device's stored last-seen time may get
// before BindDevice writes it again: a drain of many pages would otherwise
// write the device on every one.
const LastSeenPrecision = time.Minute

// Devices is the part of a syncpoint.Store that binding a device needs.
type Devices interface {
	Device(ctx context.Context, id string) (syncpoint.Device, error)
	SaveDevice(ctx context.Context, d syncpoint.Device) error
}

var _ Devices = syncpoint.Store(nil)

// CheckDevice holds id's device to id's user, as a socket hello does: a
// device registered to another user is CodeForbidden. With neither platform
// nor app version in id, id takes those the device gave last. It returns the
// stored device, the zero Device when the device is new, and writes nothing.
func CheckDevice(ctx context.Context, store Devices, id *syncpoint.Identity) (syncpoint.Device, error) {
	d, err := store.Device(ctx, id.DeviceID)
	switch {
	case err == nil && d.UserID != id.UserID:
		return syncpoint.Device{}, syncpoint.Errorf(syncpoint.CodeForbidden, "device %s is registered to another user", id.DeviceID)
	case err == nil:
		if id.Platform == "" && id.AppVersion == "" {
			id.Platform, id.AppVersion = d.Platform, d.AppVersion
		}
		return d, nil
	case errors.Is(err, syncpoint.ErrNotFound):
		return syncpoint.Device{}, nil
	default:
		return syncpoint.Device{}, fmt.Errorf("load device: %w", err)
	}
}

// SaveDevice registers id's device to its user, or refreshes it, with now
// as its last-seen time.
func SaveDevice(ctx context.Context, store Devices, id syncpoint.Identity, now time.Time) error {
	if err := store.SaveDevice(ctx, syncpoint.Device{ID: id.DeviceID, UserID: id.UserID, Platform: id.Platform, AppVersion: id.AppVersion, LastSeen: now}); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	return nil
}

// BindDevice is CheckDevice then SaveDevice, for a surface that binds the
// device on every request: the write is skipped while the stored device
// says the same and was seen within LastSeenPrecision.
func BindDevice(ctx context.Context, store Devices, id *syncpoint.Identity, now time.Time) error {
	d, err := CheckDevice(ctx, store, id)
	if err != nil {
		return err
	}
	if d.Platform == id.Platform && d.AppVersion == id.AppVersion && now.Sub(d.LastSeen) < LastSeenPrecision {
		return nil
	}
	return SaveDevice(ctx, store, *id, now)
}
