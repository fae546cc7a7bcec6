package pebble

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/positions"
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

// positionPrefix is where each kind of position is kept.
var positionPrefix = [...]byte{positions.SyncPoint: pSyncPt, positions.User: pUserPos, positions.Cursor: pCursor}

// savePositions is positions.Methods.Save.
func (s *Store) savePositions(ctx context.Context, k positions.Kind, rows []positions.Row) error {
	if err := positions.Validate(k, rows); err != nil {
		return err
	}
	p, forwardOnly := positionPrefix[k], k.ForwardOnly()
	if len(rows) == 0 {
		return nil
	}
	return s.write(ctx, func(t *txn) error {
		for _, r := range rows {
			key := positionKey(p, r.Owner, r.Channel.String())
			if forwardOnly {
				if v, ok := t.get(key); ok {
					old, _, err := decodePosition(v)
					if err == nil && old.Epoch == r.Position.Epoch && old.Seq > r.Position.Seq {
						continue
					}
				}
			}
			at := r.At
			if at.IsZero() {
				at = t.now
			}
			t.set(key, encodePosition(r.Position, at))
		}
		return nil
	})
}

// loadPositions is positions.Methods.Load.
func (s *Store) loadPositions(ctx context.Context, k positions.Kind, owner string, fn func(positions.Row)) error {
	if len(owner) > syncpoint.MaxIDLen {
		return nil // no such id can have been saved
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	defer s.leave()
	prefix := appendStr([]byte{positionPrefix[k]}, owner)
	return s.scan(ctx, prefix, func(k, v []byte) error {
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
		fn(positions.Row{Owner: owner, Channel: ch, Position: pos, At: at})
		return nil
	})
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

// SaveBiz implements syncpoint.Store. A biz that is not stored yet is
// created: channels an earlier biz of that name left behind (a store of
// format 2 kept them after DeleteBiz) are dropped first.
func (s *Store) SaveBiz(ctx context.Context, b syncpoint.Biz) error {
	if err := syncpoint.ValidateBizName(b.Name); err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	v, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("save biz: %w", err)
	}
	err = s.dropBiz(ctx, b.Name, func(t *txn, first bool) (bool, error) {
		_, exists := t.get(bizKey(b.Name))
		if exists {
			t.set(bizKey(b.Name), v)
		}
		return !exists, nil
	}, func(t *txn) { t.set(bizKey(b.Name), v) })
	if err != nil {
		return fmt.Errorf("save biz %s: %w", b.Name, err)
	}
	return nil
}

// DeleteBiz implements syncpoint.Store. It drops the biz's channels with
// it: their entries, key index, idempotency keys and heads, so a biz made
// again under the name starts with new channels and new epochs. The biz
// goes in the first batch and its channels SweepChunk at a time; should
// ctx end in between, SaveBiz of the name drops the rest.
func (s *Store) DeleteBiz(ctx context.Context, name string) error {
	err := s.dropBiz(ctx, name, func(t *txn, first bool) (bool, error) {
		if !first {
			return true, nil
		}
		key := bizKey(name)
		if _, ok := t.get(key); !ok {
			return false, syncpoint.ErrNotFound
		}
		t.del(key)
		return true, nil
	}, nil)
	if err != nil {
		return fmt.Errorf("delete biz %s: %w", name, err)
	}
	return nil
}

// dropBiz drops the channels of biz, SweepChunk channels per batch so that
// appends interleave with a large biz. Each batch first calls begin, which
// says whether channels are to be dropped; after the last batch that drops
// some, done (if set) runs in that batch.
func (s *Store) dropBiz(ctx context.Context, biz string, begin func(t *txn, first bool) (bool, error), done func(t *txn)) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	defer s.leave()
	for first := true; ; first = false {
		more := false
		o := &op{exclusive: true, fn: func(t *txn) error {
			drop, err := begin(t, first)
			if err != nil || !drop {
				return err
			}
			if more = s.dropChannels(t, biz); !more && done != nil {
				done(t)
			}
			return nil
		}}
		if err := s.do(ctx, o); err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// dropChannels drops up to SweepChunk channels of biz, as if they had
// never been written, and reports whether any are left. It runs in a batch
// of its own, so the index shows every channel created before it.
func (s *Store) dropChannels(t *txn, biz string) (more bool) {
	prefix := appendStr([]byte{pBizChan}, biz)
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.err = err
		return false
	}
	defer it.Close()
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		if n == s.opts.SweepChunk {
			return true
		}
		n++
		t.delBlind(append([]byte(nil), it.Key()...))
		st, err := s.chans.getByName(string(it.Key()[len(prefix):]))
		if err != nil {
			if t.err == nil && !errors.Is(err, errCorrupt) {
				t.err = err
			}
			continue
		}
		for _, p := range []byte{pEntry, pKey, pIdem} {
			cp := chanPrefix(p, st.name)
			t.batch.DeleteRange(cp, prefixEnd(cp), nil)
		}
		t.delBlind(metaKey(st.name))
		// Readers wait for this batch, as for a reset: seqs start over.
		t.touch(st)
		st.head, st.dirty = meta{}, false
		if t.resets == nil {
			t.resets = make(map[*chanState]bool)
		}
		t.resets[st] = true
	}
	if err := it.Error(); err != nil && t.err == nil {
		t.err = err
	}
	return false
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
