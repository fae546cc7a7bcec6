package pebble

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// setFormat writes the format row straight to the database (absent: v 0),
// to make the store look as another version left it.
func setFormat(tb testing.TB, s *Store, v uint64) {
	tb.Helper()
	var err error
	if v == 0 {
		err = s.db.Delete(formatKey, pebbledb.Sync)
	} else {
		err = s.db.Set(formatKey, binary.AppendUvarint(nil, v), pebbledb.Sync)
	}
	if err != nil {
		tb.Fatal(err)
	}
}

// TestUpgradeFromFormat1 opens a store as the first version left it, with
// user positions and notice cursors kept as pseudo devices' sync points:
// they move to their own keyspaces, and real devices keep theirs.
func TestUpgradeFromFormat1(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ch := func(s string) syncpoint.Channel {
		c, err := syncpoint.ParseChannel(s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	pos := func(epoch string, seq uint64) syncpoint.Position { return syncpoint.Position{Epoch: epoch, Seq: seq} }
	legacy := []syncpoint.SyncPoint{
		{DeviceID: "user:u1", Channel: ch("pay/user:u1"), Position: pos("p", 5)},
		{DeviceID: "user:u2", Channel: ch("pay/user:u2"), Position: pos("p", 6)},  // also a real device of u2
		{DeviceID: "user:u3", Channel: ch("chat/user:u9"), Position: pos("c", 1)}, // a real device of u9
		{DeviceID: "syncpoint-uploads", Channel: ch("syncpoint-uploads/group:notes"), Position: pos("n", 4)},
		{DeviceID: "d1", Channel: ch("chat/user:u1"), Position: pos("c", 2)},
	}
	if err := s.SaveSyncPoints(ctx, legacy); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDevice(ctx, syncpoint.Device{ID: "user:u2", UserID: "u2"}); err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpenStoreOptions(t, dir, Options{})
	wantPoints := func(dev string, want ...syncpoint.Position) {
		t.Helper()
		pts, err := s.SyncPoints(ctx, dev)
		if err != nil || len(pts) != len(want) {
			t.Fatalf("sync points of %s after the upgrade: %+v %v, want %v", dev, pts, err, want)
		}
		for i := range want {
			if pts[i].Position != want[i] {
				t.Fatalf("sync points of %s after the upgrade: %+v, want %v", dev, pts, want)
			}
		}
	}
	wantPoints("user:u1")
	wantPoints("user:u2", pos("p", 6))
	wantPoints("user:u3", pos("c", 1))
	wantPoints("syncpoint-uploads")
	wantPoints("d1", pos("c", 2))
	for user, want := range map[string]syncpoint.Position{"u1": pos("p", 5), "u2": pos("p", 6)} {
		ups, err := s.UserPositions(ctx, user)
		if err != nil || len(ups) != 1 || ups[0].Position != want || ups[0].Channel.Target.ID != user {
			t.Fatalf("positions of user %s after the upgrade: %+v %v, want %v", user, ups, err, want)
		}
	}
	if ups, _ := s.UserPositions(ctx, "u9"); len(ups) != 0 {
		t.Fatalf("a real device's sync point became a user position: %+v", ups)
	}
	cs, err := s.Cursors(ctx, "syncpoint-uploads")
	if err != nil || len(cs) != 1 || cs[0].Position != pos("n", 4) || cs[0].Channel != ch("syncpoint-uploads/group:notes") {
		t.Fatalf("cursors after the upgrade: %+v %v", cs, err)
	}
	if v, ok, _ := s.get(formatKey); !ok || v[0] != currentFormat {
		t.Fatalf("format row after the upgrade: %v %v", v, ok)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, currentFormat+1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "newer than this syncpoint knows") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("open of a newer store: %v, want a refusal", err)
	}
}

// TestUpgradeIndexesChannels opens a format 2 store, whose channels have no
// biz index: the upgrade writes it, so DeleteBiz finds the channels.
func TestUpgradeIndexesChannels(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, msgReq(chatU1, `1`), msgReq(recsG1, `1`))
	index := []byte{pBizChan}
	if err := s.db.DeleteRange(index, prefixEnd(index), pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	setFormat(t, s, 2)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpenStoreOptions(t, dir, Options{})
	if err := s.DeleteBiz(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Channel(ctx, chatU1); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("a channel of the deleted biz after the upgrade: %v", err)
	}
	if info, err := s.Channel(ctx, recsG1); err != nil || info.LastSeq != 1 {
		t.Fatalf("another biz's channel: %+v %v", info, err)
	}
}

// TestIdempotencyKeyWithoutHash: a key kept by a store of format 2 or
// older has no content hash, and any retry under it counts as the same.
func TestIdempotencyKeyWithoutHash(t *testing.T) {
	s := MustOpenStore(t)
	r := msgReq(chatU1, `1`)
	r.Entry.IdempotencyKey = "old"
	mustAppend(t, s, r)
	key := idemKey(chatU1.String(), "old")
	v, ok, err := s.get(key)
	if err != nil || !ok {
		t.Fatalf("idempotency row: %v %v", ok, err)
	}
	seq, deadline, hash, err := decodeIdem(v)
	if err != nil || len(hash) == 0 {
		t.Fatalf("idempotency row of this version: hash %x, %v", hash, err)
	}
	if err := s.db.Set(key, encodeIdem(seq, deadline, nil), pebbledb.Sync); err != nil {
		t.Fatal(err)
	}
	r.Entry.Data = []byte(`2`)
	if res := mustAppend(t, s, r)[0]; !res.Duplicate || res.Seq != 1 || res.Err != nil {
		t.Fatalf("reuse of a key kept without a hash: %+v, want a duplicate", res)
	}
}

// TestUpgradeFillsKeyRows opens a format 3 store, whose key index rows hold
// only a seq: the upgrade adds each one's op and expiry, and Keys lists the
// same keys before and after, without reading entries afterwards.
func TestUpgradeFillsKeyRows(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	soon := time.Now().Add(time.Hour)
	compact := syncpoint.Policy{Compact: true, MaxBacklog: 5}
	req := func(op syncpoint.Op, key string, expires time.Time) syncpoint.AppendRequest {
		return syncpoint.AppendRequest{Policy: compact, Entry: syncpoint.Entry{Channel: recsG1, Op: op, Key: key, Data: []byte(`1`), ExpiresAt: expires}}
	}
	mustAppend(t, s,
		req(syncpoint.OpPut, "trimmed", time.Time{}), // 1: trimmed by seq 6
		req(syncpoint.OpPut, "a", time.Time{}),       // 2
		req(syncpoint.OpPut, "b", soon),              // 3
		req(syncpoint.OpDelete, "c", time.Time{}),    // 4
		req(syncpoint.OpPut, "d", time.Time{}),       // 5
		req(syncpoint.OpPut, "e", time.Time{}),       // 6
	)
	before := keysOf(t, s, time.Now())
	prefix := chanPrefix(pKey, recsG1.String())
	it, err := s.db.NewIter(&pebbledb.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for valid := it.First(); valid; valid = it.Next() {
		row, err := decodeKeyRow(it.Value())
		if err != nil || !row.full {
			t.Fatalf("a row of this version: %+v %v", row, err)
		}
		if err := s.db.Set(append([]byte(nil), it.Key()...), binary.AppendUvarint(nil, row.seq), pebbledb.Sync); err != nil {
			t.Fatal(err)
		}
		rows++
	}
	it.Close()
	if rows != 6 {
		t.Fatalf("%d key rows, want 6", rows)
	}
	// Format 3 rows read right even before the upgrade: Keys looks the
	// entries up.
	if got := keysOf(t, s, time.Now()); !slices.Equal(got, before) {
		t.Fatalf("keys over rows of format 3: %v, want %v", got, before)
	}
	setFormat(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpenStoreOptions(t, dir, Options{})
	for key, want := range map[string]keyRow{
		"a": {seq: 2, put: true, full: true},
		"b": {seq: 3, put: true, expires: soon.UTC(), full: true},
		"c": {seq: 4, full: true},
		// The trimmed key's entry is gone: its row is left as it was.
		"trimmed": {seq: 1},
	} {
		v, ok, err := s.get(keyKey(recsG1.String(), key))
		if err != nil || !ok {
			t.Fatalf("row of %s: %v %v", key, ok, err)
		}
		row, err := decodeKeyRow(v)
		if err != nil || row.seq != want.seq || row.put != want.put || !row.expires.Equal(want.expires) || row.full != want.full {
			t.Fatalf("row of %s after the upgrade: %+v %v, want %+v", key, row, err, want)
		}
	}
	if got := keysOf(t, s, time.Now()); !slices.Equal(got, before) || !slices.Equal(before, []string{"a@2", "b@3", "d@5", "e@6"}) {
		t.Fatalf("keys after the upgrade: %v; before it %v", got, before)
	}
	if got := keysOf(t, s, soon); !slices.Equal(got, []string{"a@2", "d@5", "e@6"}) {
		t.Fatalf("keys once b expired: %v", got)
	}
}

func keysOf(tb testing.TB, s *Store, now time.Time) []string {
	tb.Helper()
	p, err := s.Keys(context.Background(), recsG1, "", 100, now)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, k := range p.Keys {
		out = append(out, fmt.Sprintf("%s@%d", k.Key, k.Seq))
	}
	return out
}
