package pebble

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/storetest"
)

// MustOpenStore opens a store in a temporary directory, closed when the
// test ends.
func MustOpenStore(tb testing.TB) *Store {
	tb.Helper()
	return MustOpenStoreOptions(tb, tb.TempDir(), Options{})
}

// MustOpenStoreOptions opens a store in dir with opts, closed when the test
// ends.
func MustOpenStoreOptions(tb testing.TB, dir string, opts Options) *Store {
	tb.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) syncpoint.Store { return MustOpenStore(tb) })
}

var (
	chatU1 = syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	recsG1 = syncpoint.Channel{Biz: "records", Target: syncpoint.GroupTarget("g1")}
)

func msgReq(ch syncpoint.Channel, data string) syncpoint.AppendRequest {
	return syncpoint.AppendRequest{Entry: syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: []byte(data)}}
}

func mustAppend(tb testing.TB, s *Store, reqs ...syncpoint.AppendRequest) []syncpoint.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), reqs)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return res
}

func mustReadAll(tb testing.TB, s *Store, ch syncpoint.Channel) syncpoint.Page {
	tb.Helper()
	p, err := s.Read(context.Background(), ch, 0, MaxReadLimit, time.Now())
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	return p
}

// TestReopen closes a store and opens its directory again: entries, channel
// meta, idempotency keys, the key index, sync points, devices, bizzes and
// blobs all survive.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	idem := msgReq(chatU1, `1`)
	idem.Entry.IdempotencyKey = "once"
	mustAppend(t, s, idem, msgReq(chatU1, `2`))
	capped := syncpoint.Policy{MaxBacklog: 2}
	for i := range 4 {
		r := msgReq(recsG1, fmt.Sprint(i))
		r.Policy = capped
		mustAppend(t, s, r)
	}
	put := msgReq(recsG1, `{}`)
	put.Entry.Op, put.Entry.Key, put.Policy = syncpoint.OpPut, "k", capped
	mustAppend(t, s, put)
	reset := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u2")}
	mustAppend(t, s, msgReq(reset, `old`))
	resetInfo, err := s.ResetChannel(ctx, reset)
	if err != nil {
		t.Fatal(err)
	}
	point := syncpoint.SyncPoint{DeviceID: "d1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 2}, UpdatedAt: time.Unix(100, 0).UTC()}
	dev := syncpoint.Device{ID: "d1", UserID: "u1", Platform: "ios", LastSeen: time.Unix(200, 0).UTC()}
	biz := syncpoint.NewBiz("news", syncpoint.TargetGroup)
	for _, err := range []error{
		s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{point}),
		s.SaveDevice(ctx, dev),
		s.SaveBiz(ctx, biz),
		s.PutBlob(ctx, "blob", []byte("v"), time.Time{}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	before := map[syncpoint.Channel]syncpoint.Page{}
	for _, ch := range []syncpoint.Channel{chatU1, recsG1, reset} {
		before[ch] = mustReadAll(t, s, ch)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpenStoreOptions(t, dir, Options{})
	for ch, want := range before {
		got := mustReadAll(t, s, ch)
		if got.Info != want.Info || len(got.Entries) != len(want.Entries) {
			t.Fatalf("%s after reopen: %+v with %d entries, want %+v with %d", ch, got.Info, len(got.Entries), want.Info, len(want.Entries))
		}
		for i := range got.Entries {
			if got.Entries[i].Seq != want.Entries[i].Seq || string(got.Entries[i].Data) != string(want.Entries[i].Data) {
				t.Fatalf("%s entry %d after reopen: %+v, want %+v", ch, i, got.Entries[i], want.Entries[i])
			}
		}
	}
	if info, _ := s.Channel(ctx, reset); info != resetInfo {
		t.Fatalf("reset channel after reopen: %+v, want %+v", info, resetInfo)
	}
	if res := mustAppend(t, s, idem); !res[0].Duplicate || res[0].Seq != 1 {
		t.Fatalf("idempotency key after reopen: %+v", res[0])
	}
	if res := mustAppend(t, s, msgReq(chatU1, `3`)); res[0].Seq != 3 || res[0].Epoch != before[chatU1].Info.Epoch {
		t.Fatalf("append after reopen: %+v, want seq 3 in the same epoch", res[0])
	}
	if e, err := s.KeyEntry(ctx, recsG1, "k"); err != nil || e.Seq != 5 {
		t.Fatalf("key index after reopen: %+v %v", e, err)
	}
	cond := put
	cond.IfKeySeq = new(uint64)
	if res := mustAppend(t, s, cond); !errors.Is(res[0].Err, syncpoint.ErrKeyChanged) || res[0].KeySeq != 5 {
		t.Fatalf("IfKeySeq after reopen: %+v", res[0])
	}
	if pts, err := s.SyncPoints(ctx, "d1"); err != nil || len(pts) != 1 || pts[0].Position != point.Position || !pts[0].UpdatedAt.Equal(point.UpdatedAt) {
		t.Fatalf("sync points after reopen: %+v %v", pts, err)
	}
	if ds, err := s.UserDevices(ctx, "u1"); err != nil || len(ds) != 1 || ds[0].Platform != "ios" {
		t.Fatalf("devices after reopen: %+v %v", ds, err)
	}
	if bs, err := s.Bizzes(ctx); err != nil || len(bs) != 1 || bs[0] != biz {
		t.Fatalf("bizzes after reopen: %+v %v", bs, err)
	}
	if v, err := s.Blob(ctx, "blob"); err != nil || string(v) != "v" {
		t.Fatalf("blob after reopen: %q %v", v, err)
	}
}

// TestAppendRacingClose closes the store under concurrent appends: each
// append either fails or is durable, with no gaps, after a reopen.
func TestAppendRacingClose(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	type acked struct {
		seq  uint64
		data string
	}
	var wg sync.WaitGroup
	results := make([][]acked, 16)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				data := fmt.Sprintf(`"%d-%d"`, g, i)
				res, err := s.Append(context.Background(), []syncpoint.AppendRequest{msgReq(chatU1, data)})
				if err != nil {
					if !errors.Is(err, syncpoint.ErrClosed) {
						t.Errorf("append racing close: %v, want ErrClosed", err)
					}
					return
				}
				results[g] = append(results[g], acked{res[0].Seq, data})
			}
		}()
	}
	// Let some appends through, then close under them.
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := s.Channel(context.Background(), chatU1)
		if err == nil && info.LastSeq >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no appends got through")
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	s = MustOpenStoreOptions(t, dir, Options{})
	p := mustReadAll(t, s, chatU1)
	for i, e := range p.Entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("after reopen entry %d has seq %d: a gap", i, e.Seq)
		}
	}
	n := 0
	for _, rs := range results {
		for _, a := range rs {
			n++
			if a.seq > uint64(len(p.Entries)) || string(p.Entries[a.seq-1].Data) != a.data {
				t.Fatalf("acknowledged entry %d (%s) is missing after reopen", a.seq, a.data)
			}
		}
	}
	if n == 0 {
		t.Fatal("no append succeeded")
	}
}

// TestSmallChannelCache evicts channel states all the time and checks that
// seqs, epochs and reads stay right.
func TestSmallChannelCache(t *testing.T) {
	s := MustOpenStoreOptions(t, t.TempDir(), Options{MaxCachedChannels: 3})
	ctx := context.Background()
	chans := make([]syncpoint.Channel, 20)
	for i := range chans {
		chans[i] = syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("u%d", i))}
	}
	epochs := make([]string, len(chans))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 10 {
				for i := g; i < len(chans); i += 4 {
					r := msgReq(chans[i], fmt.Sprint(round))
					r.Policy.MaxBacklog = 5
					res, err := s.Append(ctx, []syncpoint.AppendRequest{r})
					if err != nil {
						t.Error(err)
						return
					}
					if res[0].Seq != uint64(round+1) || (epochs[i] != "" && res[0].Epoch != epochs[i]) {
						t.Errorf("%s round %d: %+v (epoch was %s)", chans[i], round, res[0], epochs[i])
						return
					}
					epochs[i] = res[0].Epoch
					p, err := s.Read(ctx, chans[(i+1)%len(chans)], 0, 0, time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					for j, e := range p.Entries {
						if e.Seq != p.Info.FirstSeq+uint64(j) || e.Seq > p.Info.LastSeq {
							t.Errorf("read %+v gave seqs out of its range", p.Info)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, ch := range chans {
		info, err := s.Channel(ctx, ch)
		if err != nil || info.FirstSeq != 6 || info.LastSeq != 10 {
			t.Fatalf("%s: %+v %v, want 6..10", ch, info, err)
		}
	}
}

// TestSweepInChunks sweeps with tiny batches: the result is the same as one
// big sweep, FirstSeq included.
func TestSweepInChunks(t *testing.T) {
	s := MustOpenStoreOptions(t, t.TempDir(), Options{SweepChunk: 2})
	ctx := context.Background()
	t1 := time.Now().Add(time.Hour)
	var reqs []syncpoint.AppendRequest
	for i := range 9 {
		r := msgReq(chatU1, fmt.Sprint(i))
		if i != 4 {
			r.Entry.ExpiresAt = t1.Add(time.Duration(i%3) * time.Second)
		}
		reqs = append(reqs, r)
	}
	mustAppend(t, s, reqs...)
	n, err := s.Sweep(ctx, t1.Add(time.Minute))
	if err != nil || n != 8 {
		t.Fatalf("sweep: %d %v, want 8 removed", n, err)
	}
	p := mustReadAll(t, s, chatU1)
	if len(p.Entries) != 1 || p.Entries[0].Seq != 5 || p.Info.FirstSeq != 5 || p.Info.LastSeq != 9 {
		t.Fatalf("after sweep: %+v with %d entries, want entry 5 and first 5", p.Info, len(p.Entries))
	}
}

// TestLargeTrim trims many entries at once, which takes a range deletion.
func TestLargeTrim(t *testing.T) {
	s := MustOpenStore(t)
	reqs := make([]syncpoint.AppendRequest, 1000)
	for i := range reqs {
		reqs[i] = msgReq(chatU1, fmt.Sprint(i))
	}
	mustAppend(t, s, reqs...)
	r := msgReq(chatU1, `last`)
	r.Policy.MaxBacklog = 10
	mustAppend(t, s, r)
	p := mustReadAll(t, s, chatU1)
	if len(p.Entries) != 10 || p.Entries[0].Seq != 992 || p.Info.FirstSeq != 992 || p.Info.LastSeq != 1001 {
		t.Fatalf("after trim: %+v with %d entries from %d", p.Info, len(p.Entries), p.Entries[0].Seq)
	}
	if _, err := s.Entry(context.Background(), chatU1, 991); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("trimmed entry: %v", err)
	}
}

func TestReadLimitCap(t *testing.T) {
	s := MustOpenStore(t)
	reqs := make([]syncpoint.AppendRequest, MaxReadLimit+5)
	for i := range reqs {
		reqs[i] = msgReq(chatU1, `1`)
	}
	mustAppend(t, s, reqs...)
	p, err := s.Read(context.Background(), chatU1, 0, 1<<30, time.Now())
	if err != nil || len(p.Entries) != MaxReadLimit {
		t.Fatalf("read with a huge limit: %d entries, %v; want %d", len(p.Entries), err, MaxReadLimit)
	}
	p, _ = s.Read(context.Background(), chatU1, 0, 0, time.Now())
	if len(p.Entries) != DefaultReadLimit {
		t.Fatalf("read with limit 0: %d entries, want %d", len(p.Entries), DefaultReadLimit)
	}
}

func TestBlobWithoutExpiry(t *testing.T) {
	s := MustOpenStore(t)
	ctx := context.Background()
	if err := s.PutBlob(ctx, "k", []byte("v"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sweep(ctx, time.Now().Add(100*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Blob(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("blob without expiry after a sweep: %q %v", v, err)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	dir := t.TempDir()
	s, err := Open(dir, Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	r := msgReq(chatU1, `1`)
	r.Entry.IdempotencyKey = "i"
	r.Entry.ExpiresAt = time.Now().Add(time.Hour)
	mustAppend(t, s, r, r, msgReq(chatU1, `2`))
	if _, err := s.Sweep(context.Background(), time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"syncpoint_store_appends_total":           2,
		"syncpoint_store_duplicate_appends_total": 1,
		"syncpoint_store_sweep_removed_total":     1,
		"syncpoint_store_commit_batch_entries":    2, // sample sum
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			got[mf.GetName()] = m.Counter.GetValue()
		case m.Histogram != nil:
			got[mf.GetName()] = m.Histogram.GetSampleSum()
		}
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
	if _, ok := got["syncpoint_store_commit_seconds"]; !ok {
		t.Error("no commit latency histogram")
	}
	// A reopened store registers again in the same registry.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	MustOpenStoreOptions(t, dir, Options{Registerer: reg})
}

// TestTwoHandlesCase runs the suite's two-handle case with both handles on
// one Store. Pebble is single-process, so the conformance run skips that
// case; here its own logic is checked before a shared store relies on it.
func TestTwoHandlesCase(t *testing.T) {
	storetest.Run(t, func(tb testing.TB) syncpoint.Store { return MustOpenStore(tb) },
		storetest.Only("TwoHandles"),
		storetest.SecondHandle(func(tb testing.TB, first syncpoint.Store) syncpoint.Store {
			return &sameStore{Store: first.(*Store)}
		}))
}

// sameStore is a second "handle" that is the first one, except that
// closing it leaves the first open.
type sameStore struct {
	*Store
	closed bool
}

func (s *sameStore) Close() error {
	s.closed = true
	return nil
}

func (s *sameStore) Channel(ctx context.Context, ch syncpoint.Channel) (syncpoint.ChannelInfo, error) {
	if s.closed {
		return syncpoint.ChannelInfo{}, syncpoint.ErrClosed
	}
	return s.Store.Channel(ctx, ch)
}

// TestDeleteBizInChunks drops a biz's channels a few per batch: all of
// them go, the other biz keeps its own, and a reopen agrees.
func TestDeleteBizInChunks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := MustOpenStoreOptions(t, dir, Options{SweepChunk: 2})
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); err != nil {
		t.Fatal(err)
	}
	var chans []syncpoint.Channel
	for i := range 7 {
		ch := syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget(fmt.Sprintf("u%d", i))}
		chans = append(chans, ch)
		mustAppend(t, s, msgReq(ch, `1`), msgReq(ch, `2`))
	}
	mustAppend(t, s, msgReq(recsG1, `kept`))
	if err := s.DeleteBiz(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		for _, ch := range chans {
			if _, err := s.Channel(ctx, ch); !errors.Is(err, syncpoint.ErrNotFound) {
				t.Fatalf("%s: %s of the deleted biz: %v", when, ch, err)
			}
		}
		if p := mustReadAll(t, s, recsG1); len(p.Entries) != 1 {
			t.Fatalf("%s: the other biz has %d entries", when, len(p.Entries))
		}
	}
	check(s, "after the delete")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = MustOpenStoreOptions(t, dir, Options{SweepChunk: 2})
	check(s, "after a reopen")
	if r := mustAppend(t, s, msgReq(chans[0], `new`))[0]; r.Seq != 1 {
		t.Fatalf("append to a channel of the deleted biz: %+v, want seq 1", r)
	}
}

// ReadInto gives what Read gives, in the caller's array when it has room:
// a catch-up's pages reuse one array, and what the array held before is
// overwritten, never mixed into the page.
func TestReadIntoReusesTheArray(t *testing.T) {
	s := MustOpenStore(t)
	ctx := context.Background()
	for i := range 50 {
		mustAppend(t, s, msgReq(chatU1, fmt.Sprint(i+1)))
	}
	now := time.Now()
	buf := make([]syncpoint.Entry, 7, 32)
	for i := range buf {
		buf[i] = syncpoint.Entry{Seq: 999, Data: []byte(`"stale"`)}
	}
	for after := uint64(0); after < 50; after += 20 {
		want, err := s.Read(ctx, chatU1, after, 20, now)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.ReadInto(ctx, chatU1, after, 20, now, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("after %d: ReadInto\n%+v\nRead\n%+v", after, got, want)
		}
		if len(got.Entries) > 0 && &got.Entries[0] != &buf[:1][0] {
			t.Fatalf("after %d: the page did not use the array given", after)
		}
	}
	// Too small an array: the page gets its own, and buf is untouched.
	small := make([]syncpoint.Entry, 0, 2)
	got, err := s.ReadInto(ctx, chatU1, 0, 20, now, small)
	if err != nil || len(got.Entries) != 20 || got.Entries[19].Seq != 20 {
		t.Fatalf("into a small array: %d entries, %v", len(got.Entries), err)
	}
}
