package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// testTwoHandles runs the contract across two handles on one backend, as
// two nodes of a cluster use one database: what one handle's call returned
// is what the other handle's later calls see.
func testTwoHandles(t *testing.T, a syncpoint.Store, second func(testing.TB, syncpoint.Store) syncpoint.Store) {
	if second == nil {
		t.Skip(skipOneHandle)
	}
	b := second(t, a)
	ctx := context.Background()

	// Appends through both handles at once stay gap-free, and each
	// appender's entries keep its order.
	const appenders, calls = 4, 20
	type tag struct{ G, I int }
	var wg sync.WaitGroup
	for g := range appenders {
		s := a
		if g%2 == 1 {
			s = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				data, _ := json.Marshal(tag{g, i})
				if _, err := s.Append(ctx, []syncpoint.AppendRequest{msg(chatU1, string(data))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for name, s := range map[string]syncpoint.Store{"first": a, "second": b} {
		p := mustRead(t, s, chatU1, 0, 0, time.Now())
		if len(p.Entries) != appenders*calls {
			t.Fatalf("%s handle reads %d entries, want %d", name, len(p.Entries), appenders*calls)
		}
		last := map[int]int{}
		for i, e := range p.Entries {
			var tg tag
			if err := json.Unmarshal(e.Data, &tg); err != nil {
				t.Fatal(err)
			}
			if e.Seq != uint64(i+1) {
				t.Fatalf("%s handle: entry %d has seq %d: a gap", name, i, e.Seq)
			}
			if prev, ok := last[tg.G]; ok && tg.I <= prev {
				t.Fatalf("%s handle: appender %d's entry %d got a seq after its entry %d", name, tg.G, tg.I, prev)
			}
			last[tg.G] = tg.I
		}
	}

	// An idempotency key spent through one handle is spent for the other.
	first := mustAppend(t, a, idem(msg(chatU2, `1`), "k"))[0]
	if again := mustAppend(t, b, idem(msg(chatU2, `1`), "k"))[0]; !again.Duplicate || again.Seq != first.Seq || again.Epoch != first.Epoch {
		t.Fatalf("a key spent on the first handle, retried on the second: %+v, want a duplicate of %+v", again, first)
	}

	// IfKeySeq judges by what the other handle appended.
	if r := mustAppend(t, a, cond(put(recsG1, "r", `1`), 0))[0]; r.Err != nil {
		t.Fatalf("create on the first handle: %+v", r)
	}
	r := mustAppend(t, b, cond(put(recsG1, "r", `2`), 0))[0]
	wantErr(t, "a create on the second handle over the first's", r.Err, syncpoint.ErrKeyChanged)
	if r.KeySeq != 1 {
		t.Fatalf("KeySeq %d, want 1", r.KeySeq)
	}

	// A reset through one handle is what the other reads.
	info, err := a.ResetChannel(ctx, chatU2)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustInfo(t, b, chatU2); got != info {
		t.Fatalf("the second handle after a reset on the first: %+v, want %+v", got, info)
	}
	if p := mustRead(t, b, chatU2, 0, 0, time.Now()); len(p.Entries) != 0 || p.Info != info {
		t.Fatalf("the second handle reads %+v after the reset", p)
	}
	if r := mustAppend(t, b, msg(chatU2, `new`))[0]; r.Seq != 1 || r.Epoch != info.Epoch {
		t.Fatalf("append on the second handle after the reset: %+v, want seq 1 in %s", r, info.Epoch)
	}

	// Everything else saved through one handle is seen by the other.
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	point := syncpoint.SyncPoint{DeviceID: "d1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 3}, UpdatedAt: at}
	dev := syncpoint.Device{ID: "d1", UserID: "u1", Platform: "ios", LastSeen: at}
	biz := syncpoint.NewBiz("news", syncpoint.TargetGroup)
	for _, err := range []error{
		a.SaveSyncPoints(ctx, []syncpoint.SyncPoint{point}),
		a.SaveDevice(ctx, dev),
		a.SaveBiz(ctx, biz),
		a.PutBlob(ctx, "blob", []byte("v"), time.Time{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if pts, err := b.SyncPoints(ctx, "d1"); err != nil || len(pts) != 1 || pts[0].Position != point.Position {
		t.Fatalf("sync points on the second handle: %+v %v", pts, err)
	}
	// The second handle's older save does not move it back.
	if err := b.SaveSyncPoints(ctx, []syncpoint.SyncPoint{{DeviceID: "d1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 2}}}); err != nil {
		t.Fatal(err)
	}
	if pts, _ := a.SyncPoints(ctx, "d1"); len(pts) != 1 || pts[0].Position.Seq != 3 {
		t.Fatalf("a sync point moved back through the second handle: %+v", pts)
	}
	if err := a.SaveUserPositions(ctx, []syncpoint.UserPosition{{UserID: "u1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 4}}}); err != nil {
		t.Fatal(err)
	}
	if ups, err := b.UserPositions(ctx, "u1"); err != nil || len(ups) != 1 || ups[0].Position.Seq != 4 {
		t.Fatalf("user positions on the second handle: %+v %v", ups, err)
	}
	notice := syncpoint.Channel{Biz: "syncpoint-uploads", Target: syncpoint.GroupTarget("chat")}
	if err := a.SaveCursor(ctx, syncpoint.Cursor{Reader: "notifier", Channel: notice, Position: syncpoint.Position{Epoch: "e", Seq: 2}}); err != nil {
		t.Fatal(err)
	}
	if cs, err := b.Cursors(ctx, "notifier"); err != nil || len(cs) != 1 || cs[0].Position.Seq != 2 {
		t.Fatalf("cursors on the second handle: %+v %v", cs, err)
	}
	if d, err := b.Device(ctx, "d1"); err != nil || d.Platform != "ios" {
		t.Fatalf("device on the second handle: %+v %v", d, err)
	}
	if ds, err := b.UserDevices(ctx, "u1"); err != nil || len(ds) != 1 {
		t.Fatalf("user devices on the second handle: %+v %v", ds, err)
	}
	if bs, err := b.Bizzes(ctx); err != nil || len(bs) != 1 || bs[0] != biz {
		t.Fatalf("bizzes on the second handle: %+v %v", bs, err)
	}
	if v, err := b.Blob(ctx, "blob"); err != nil || string(v) != "v" {
		t.Fatalf("blob on the second handle: %q %v", v, err)
	}

	// Keys lists what the other handle appended; a token saved through one
	// is found through the other, and once revoked through the other, the
	// first finds it no more: a revocation holds on every node at once.
	wantKeys(t, "keys on the second handle", mustKeys(t, b, recsG1, "", 10, time.Now()), false, "r@1")
	tok := newToken(1, "u1", time.Now())
	if err := a.SaveToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if got, err := b.TokenByHash(ctx, tok.Hash); err != nil || got.ID != tok.ID {
		t.Fatalf("token on the second handle: %+v %v", got, err)
	}
	if _, err := b.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = a.TokenByHash(ctx, tok.Hash)
	wantErr(t, "a token revoked through the second handle, on the first", err, syncpoint.ErrNotFound)

	// One handle sweeps what expired through the other.
	t1 := hourFromNow()
	mustAppend(t, a, expiring(msg(cfgAll, `1`), t1), msg(cfgAll, `2`))
	if n, err := b.Sweep(ctx, t1); err != nil || n != 1 {
		t.Fatalf("sweep on the second handle: %d %v, want 1", n, err)
	}
	wantInfo(t, mustInfo(t, a, cfgAll), 2, 2)

	// Closing one handle leaves the other working.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Channel(ctx, chatU1); !errors.Is(err, syncpoint.ErrClosed) {
		t.Fatalf("the closed second handle: %v, want ErrClosed", err)
	}
	if r := mustAppend(t, a, msg(chatU1, `after`))[0]; r.Seq != appenders*calls+1 {
		t.Fatalf("the first handle after the second closed: %+v", r)
	}
}

const skipOneHandle = "the backend gives one handle per process (no storetest.SecondHandle option): a second handle on one backend is a shared store's case, such as PostgreSQL's"

// testTwoHandlesTail appends to one channel through two handles at once,
// in calls of one to three entries, while a reader on each handle tails
// the channel: each reader gets every seq, once and in order, and never
// steps past an entry that commits late; and every appender's entries keep
// its order.
func testTwoHandlesTail(t *testing.T, a syncpoint.Store, second func(testing.TB, syncpoint.Store) syncpoint.Store) {
	if second == nil {
		t.Skip(skipOneHandle)
	}
	b := second(t, a)
	ctx := context.Background()
	const appenders, calls = 6, 15
	type tag struct{ G, I int }
	total := 0
	for c := range calls {
		total += appenders * (1 + c%3)
	}
	var writers sync.WaitGroup
	for g := range appenders {
		s := a
		if g%2 == 1 {
			s = b
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			i := 0
			for c := range calls {
				var reqs []syncpoint.AppendRequest
				for range 1 + c%3 {
					data, _ := json.Marshal(tag{g, i})
					reqs = append(reqs, msg(chatU1, string(data)))
					i++
				}
				res, err := s.Append(ctx, reqs)
				if err != nil {
					t.Error(err)
					return
				}
				for j := 1; j < len(res); j++ {
					if res[j].Seq != res[j-1].Seq+1 {
						t.Errorf("one call's entries got seqs %v: want them consecutive", resultSeqs(res))
						return
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { writers.Wait(); close(done) }()

	var readers sync.WaitGroup
	for name, s := range map[string]syncpoint.Store{"first": a, "second": b} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var after uint64
			last := map[int]int{}
			for {
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				p, err := s.Read(ctx, chatU1, after, 7, time.Now())
				if err != nil {
					t.Errorf("%s reader: %v", name, err)
					return
				}
				for _, e := range p.Entries {
					if e.Seq != after+1 {
						t.Errorf("%s reader after %d got seq %d: it stepped over an entry (info %d..%d)", name, after, e.Seq, p.Info.FirstSeq, p.Info.LastSeq)
						return
					}
					var tg tag
					if err := json.Unmarshal(e.Data, &tg); err != nil {
						t.Error(err)
						return
					}
					if prev, ok := last[tg.G]; ok && tg.I != prev+1 {
						t.Errorf("%s reader: appender %d's entry %d came after its entry %d", name, tg.G, tg.I, prev)
						return
					}
					last[tg.G] = tg.I
					after = e.Seq
				}
				if p.Info.LastSeq < after {
					t.Errorf("%s reader: page info says last seq %d, below the entry %d it returned", name, p.Info.LastSeq, after)
					return
				}
				if len(p.Entries) == 0 {
					if after < p.Info.LastSeq {
						t.Errorf("%s reader after %d: no entries, yet the last seq is %d", name, after, p.Info.LastSeq)
						return
					}
					if finished {
						break
					}
					runtime.Gosched()
				}
			}
			if after != uint64(total) {
				t.Errorf("%s reader read up to %d, want %d", name, after, total)
			}
		}()
	}
	readers.Wait()
}

// testTwoHandlesSweep sweeps through two handles at once, while appenders
// on both handles add entries that are due and entries that are not: each
// due entry is removed and counted once, no other entry is touched, and
// seqs stay gap-free.
func testTwoHandlesSweep(t *testing.T, a syncpoint.Store, second func(testing.TB, syncpoint.Store) syncpoint.Store) {
	if second == nil {
		t.Skip(skipOneHandle)
	}
	b := second(t, a)
	ctx := context.Background()
	t1 := hourFromNow()
	const appenders, calls = 4, 20
	var writers sync.WaitGroup
	for g := range appenders {
		s := a
		if g%2 == 1 {
			s = b
		}
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range calls {
				reqs := []syncpoint.AppendRequest{expiring(msg(chatU1, `"due"`), t1), msg(chatU1, fmt.Sprintf(`"%d-%d"`, g, i)), expiring(msg(chatU2, `"due"`), t1)}
				if _, err := s.Append(ctx, reqs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { writers.Wait(); close(done) }()
	var removed [2]int
	var sweepers sync.WaitGroup
	for i, s := range []syncpoint.Store{a, b} {
		sweepers.Add(1)
		go func() {
			defer sweepers.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				n, err := s.Sweep(ctx, t1)
				if err != nil {
					t.Error(err)
					return
				}
				removed[i] += n
				runtime.Gosched()
			}
		}()
	}
	sweepers.Wait()
	if t.Failed() {
		return
	}
	total := removed[0] + removed[1] + mustSweep(t, b, t1)
	if want := 2 * appenders * calls; total != want {
		t.Fatalf("the sweeps of both handles removed %d entries in all, want %d: each due entry once", total, want)
	}
	p := mustRead(t, a, chatU1, 0, 0, time.Now())
	if len(p.Entries) != appenders*calls || p.Info.LastSeq != 2*appenders*calls {
		t.Fatalf("chatU1: %d entries left, info %+v; want the %d lasting ones and LastSeq %d", len(p.Entries), p.Info, appenders*calls, 2*appenders*calls)
	}
	for _, e := range p.Entries {
		if string(e.Data) == `"due"` {
			t.Fatalf("chatU1 entry %d is due and was left", e.Seq)
		}
	}
	wantInfo(t, mustInfo(t, b, chatU2), appenders*calls+1, appenders*calls)
}
