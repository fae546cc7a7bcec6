package pebble

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// maxBlobKeyLen bounds blob keys, which are made by other packages, not
// by clients.
const maxBlobKeyLen = 1024

// write runs fn in the next commit batch and waits until it is durable.
// Reads of sync points, devices, bizzes and blobs go straight to the
// database and may see such a write shortly before its fsync completes.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	defer s.leave()
	return s.do(ctx, &op{fn: fn})
}

// SaveSyncPoints implements syncpoint.Store. A point whose UpdatedAt is
// zero gets the store's clock.
func (s *Store) SaveSyncPoints(ctx context.Context, points []syncpoint.SyncPoint) error {
	for _, p := range points {
		if err := syncpoint.ValidateID("device id", p.DeviceID); err != nil {
			return fmt.Errorf("save sync points: %w", err)
		}
		if err := p.Channel.Validate(); err != nil {
			return fmt.Errorf("save sync points: %w", err)
		}
	}
	if len(points) == 0 {
		return nil
	}
	err := s.write(ctx, func(t *txn) error {
		for _, p := range points {
			key := syncPointKey(p.DeviceID, p.Channel.String())
			if v, ok := t.get(key); ok {
				old, _, err := decodePosition(v)
				if err == nil && old.Epoch == p.Position.Epoch && old.Seq > p.Position.Seq {
					continue // never backwards within an epoch
				}
			}
			at := p.UpdatedAt
			if at.IsZero() {
				at = t.now
			}
			t.set(key, encodePosition(p.Position, at))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save sync points: %w", err)
	}
	return nil
}

// SyncPoints implements syncpoint.Store.
func (s *Store) SyncPoints(ctx context.Context, deviceID string) ([]syncpoint.SyncPoint, error) {
	if len(deviceID) > syncpoint.MaxIDLen {
		return nil, nil
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("sync points: %w", err)
	}
	defer s.leave()
	prefix := appendStr([]byte{pSyncPt}, deviceID)
	var out []syncpoint.SyncPoint
	err := s.scan(ctx, prefix, func(k, v []byte) error {
		name, _, ok := cutStr(k[len(prefix):])
		if !ok {
			return errCorrupt
		}
		ch, err := syncpoint.ParseChannel(name)
		if err != nil {
			return fmt.Errorf("channel %q: %w", name, errCorrupt)
		}
		pos, at, err := decodePosition(v)
		if err != nil {
			return err
		}
		out = append(out, syncpoint.SyncPoint{DeviceID: deviceID, Channel: ch, Position: pos, UpdatedAt: at})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sync points of %s: %w", deviceID, err)
	}
	return out, nil
}

// SaveDevice implements syncpoint.Store.
func (s *Store) SaveDevice(ctx context.Context, d syncpoint.Device) error {
	if err := syncpoint.ValidateID("device id", d.ID); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	if err := syncpoint.ValidateID("user id", d.UserID); err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	v, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("save device: %w", err)
	}
	err = s.write(ctx, func(t *txn) error {
		key := deviceKey(d.ID)
		if old, ok := t.get(key); ok {
			var od syncpoint.Device
			if json.Unmarshal(old, &od) == nil {
				t.del(userDeviceKey(od.UserID, od.LastSeen, od.ID))
			}
		}
		t.set(key, v)
		t.set(userDeviceKey(d.UserID, d.LastSeen, d.ID), nil)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save device %s: %w", d.ID, err)
	}
	return nil
}

// Device implements syncpoint.Store.
func (s *Store) Device(ctx context.Context, id string) (syncpoint.Device, error) {
	if err := s.start(ctx); err != nil {
		return syncpoint.Device{}, fmt.Errorf("device: %w", err)
	}
	defer s.leave()
	d, err := s.device(id)
	if err != nil {
		return syncpoint.Device{}, fmt.Errorf("device %s: %w", id, err)
	}
	return d, nil
}

func (s *Store) device(id string) (syncpoint.Device, error) {
	v, ok, err := s.get(deviceKey(id))
	if err != nil {
		return syncpoint.Device{}, err
	}
	if !ok {
		return syncpoint.Device{}, syncpoint.ErrNotFound
	}
	var d syncpoint.Device
	if err := json.Unmarshal(v, &d); err != nil {
		return syncpoint.Device{}, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	return d, nil
}

// UserDevices implements syncpoint.Store. Devices seen at the same time
// come in id order.
func (s *Store) UserDevices(ctx context.Context, userID string) ([]syncpoint.Device, error) {
	if len(userID) > syncpoint.MaxIDLen {
		return nil, nil
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("user devices: %w", err)
	}
	defer s.leave()
	prefix := appendStr([]byte{pUserDev}, userID)
	var out []syncpoint.Device
	err := s.scan(ctx, prefix, func(k, _ []byte) error {
		if len(k) < len(prefix)+timeLen {
			return errCorrupt
		}
		d, err := s.device(string(k[len(prefix)+timeLen:]))
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("devices of user %s: %w", userID, err)
	}
	return out, nil
}

// SaveBiz implements syncpoint.Store.
func (s *Store) SaveBiz(ctx context.Context, b syncpoint.Biz) error {
	if err := syncpoint.ValidateBizName(b.Name); err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	v, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	err = s.write(ctx, func(t *txn) error {
		t.set(bizKey(b.Name), v)
		return nil
	})
	if err != nil {
		return fmt.Errorf("save biz %s: %w", b.Name, err)
	}
	return nil
}

// DeleteBiz implements syncpoint.Store.
func (s *Store) DeleteBiz(ctx context.Context, name string) error {
	err := s.write(ctx, func(t *txn) error {
		key := bizKey(name)
		if _, ok := t.get(key); !ok {
			return syncpoint.ErrNotFound
		}
		t.del(key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete biz %s: %w", name, err)
	}
	return nil
}

// Bizzes implements syncpoint.Store.
func (s *Store) Bizzes(ctx context.Context) ([]syncpoint.Biz, error) {
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("bizzes: %w", err)
	}
	defer s.leave()
	var out []syncpoint.Biz
	err := s.scan(ctx, []byte{pBiz}, func(_, v []byte) error {
		var b syncpoint.Biz
		if err := json.Unmarshal(v, &b); err != nil {
			return fmt.Errorf("%w: %v", errCorrupt, err)
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bizzes: %w", err)
	}
	return out, nil
}

// PutBlob implements syncpoint.Store. A zero expires keeps the blob until
// it is replaced.
func (s *Store) PutBlob(ctx context.Context, key string, value []byte, expires time.Time) error {
	if key == "" || len(key) > maxBlobKeyLen {
		return fmt.Errorf("put blob: %w", syncpoint.Errorf(syncpoint.CodeInvalid, "blob key: want 1-%d bytes", maxBlobKeyLen))
	}
	v := encodeBlob(value, expires)
	err := s.write(ctx, func(t *txn) error {
		t.set(blobKey(key), v)
		if !expires.IsZero() {
			t.setBlind(expiryKey(expires, xBlob, []byte(key)), nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("put blob %q: %w", key, err)
	}
	return nil
}

// Blob implements syncpoint.Store; expiry is judged by the store's clock.
func (s *Store) Blob(ctx context.Context, key string) ([]byte, error) {
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	defer s.leave()
	v, ok, err := s.get(blobKey(key))
	if err != nil {
		return nil, fmt.Errorf("blob %q: %w", key, err)
	}
	if !ok {
		return nil, fmt.Errorf("blob %q: %w", key, syncpoint.ErrNotFound)
	}
	value, exp, err := decodeBlob(v)
	if err != nil {
		return nil, fmt.Errorf("blob %q: %w", key, err)
	}
	if !exp.IsZero() && !s.clock.Now().Before(exp) {
		return nil, fmt.Errorf("blob %q: %w", key, syncpoint.ErrNotFound)
	}
	return value, nil
}

// scan calls fn with every key and value under prefix, in key order.
func (s *Store) scan(ctx context.Context, prefix []byte, fn func(k, v []byte) error) error {
	it, err := s.db.NewIterWithContext(ctx, &pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return err
	}
	defer it.Close()
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}
