// Package storetest is the conformance suite every syncpoint.Store adapter
// runs: it states the Store contract as tests, through the interface only.
//
// An adapter's test calls Run with a function that opens a fresh, empty
// store and registers its cleanup:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(tb testing.TB) syncpoint.Store { return MustOpenStore(tb) })
//	}
package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Option changes how Run runs the suite.
type Option func(*config)

type config struct {
	second func(tb testing.TB, first syncpoint.Store) syncpoint.Store
	only   []string
}

// SecondHandle declares that the backend can be reached through several
// handles at once, as a cluster's nodes reach one database: fn returns a
// new handle on the same backend as first, and closes it when the test
// ends. Without this option the cases that need two handles skip, which is
// right for a single-process store such as the embedded one.
func SecondHandle(fn func(tb testing.TB, first syncpoint.Store) syncpoint.Store) Option {
	return func(c *config) { c.second = fn }
}

// Only runs just the named cases (the names of Run's subtests).
func Only(names ...string) Option {
	return func(c *config) { c.only = names }
}

// Run runs the whole suite. open must return a new, empty store each time
// and close it when the test ends; Close being called twice must be safe.
//
// Beyond the Store docs, the suite expects: a malformed append request
// fails the whole call with CodeInvalid; times survive to the microsecond;
// a cancelled ctx fails a call before it does anything; calls after Close
// return ErrClosed.
func Run(t *testing.T, open func(tb testing.TB) syncpoint.Store, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, s syncpoint.Store)
	}{
		{"AppendAssignsSeqs", testAppendAssignsSeqs},
		{"AppendManyChannelsInOneCall", testAppendManyChannels},
		{"AppendEmpty", testAppendEmpty},
		{"AppendRejectsBadRequests", testAppendRejects},
		{"EntryRoundTrip", testEntryRoundTrip},
		{"ConcurrentAppenders", testConcurrentAppenders},
		{"UnknownChannel", testUnknownChannel},
		{"Idempotency", testIdempotency},
		{"IdempotencyExpires", testIdempotencyExpires},
		{"IdempotencyMismatch", testIdempotencyMismatch},
		{"DuplicateBeforeIfKeySeq", testDuplicateBeforeIfKeySeq},
		{"IfKeySeq", testIfKeySeq},
		{"IfKeySeqSameKeyInOneCall", testIfKeySeqSameCall},
		{"Compaction", testCompaction},
		{"NoCompaction", testNoCompaction},
		{"Tombstones", testTombstones},
		{"MaxBacklog", testMaxBacklog},
		{"MaxBacklogInOneCall", testMaxBacklogOneCall},
		{"ReadSkipsExpired", testReadSkipsExpired},
		{"SweepOldestAdvancesFirstSeq", testSweepOldest},
		{"SweepMiddleKeepsFirstSeq", testSweepMiddle},
		{"SweepPastCompacted", testSweepPastCompacted},
		{"SweepEverything", testSweepEverything},
		{"SweepLater", testSweepLater},
		{"SweepConcurrently", testSweepConcurrently},
		{"Paging", testPaging},
		{"EntryAndKeyEntry", testEntryAndKeyEntry},
		{"ResetChannel", testResetChannel},
		{"Heads", testHeads},
		{"ReadsDuringTrimming", testReadsDuringTrimming},
		{"ReadsDuringResets", testReadsDuringResets},
		{"SyncPoints", testSyncPoints},
		{"UserPositions", testUserPositions},
		{"Cursors", testCursors},
		{"DeviceNamedLikeAUser", testDeviceNamedLikeAUser},
		{"Devices", testDevices},
		{"Bizzes", testBizzes},
		{"DeleteBizDropsItsChannels", testDeleteBizDropsChannels},
		{"NewBizDropsLeftovers", testNewBizDropsLeftovers},
		{"Blobs", testBlobs},
		{"KeysPaging", testKeysPaging},
		{"KeysLive", testKeysLive},
		{"KeysTrimmedAndReset", testKeysTrimmedAndReset},
		{"KeysArguments", testKeysArguments},
		{"Tokens", testTokens},
		{"TokensRefused", testTokensRefused},
		{"TokensExpire", testTokensExpire},
		{"InvalidArguments", testInvalidArguments},
		{"CancelledContext", testCancelledContext},
		{"Closed", testClosed},
		{"TwoHandles", func(t *testing.T, s syncpoint.Store) { testTwoHandles(t, s, cfg.second) }},
		{"TwoHandlesTailOneChannel", func(t *testing.T, s syncpoint.Store) { testTwoHandlesTail(t, s, cfg.second) }},
		{"TwoHandlesSweep", func(t *testing.T, s syncpoint.Store) { testTwoHandlesSweep(t, s, cfg.second) }},
	} {
		if len(cfg.only) > 0 && !slices.Contains(cfg.only, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

var (
	chatU1 = syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}
	chatU2 = syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u2")}
	recsG1 = syncpoint.Channel{Biz: "records", Target: syncpoint.GroupTarget("g1")}
	cfgAll = syncpoint.Channel{Biz: "config", Target: syncpoint.GlobalTarget()}
)

func msg(ch syncpoint.Channel, data string) syncpoint.AppendRequest {
	return syncpoint.AppendRequest{Entry: syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: json.RawMessage(data), Origin: syncpoint.OriginAPI}}
}

func put(ch syncpoint.Channel, key, data string) syncpoint.AppendRequest {
	r := msg(ch, data)
	r.Entry.Op, r.Entry.Key = syncpoint.OpPut, key
	return r
}

func del(ch syncpoint.Channel, key string) syncpoint.AppendRequest {
	r := msg(ch, "")
	r.Entry.Op, r.Entry.Key = syncpoint.OpDelete, key
	return r
}

func with(r syncpoint.AppendRequest, fn func(r *syncpoint.AppendRequest)) syncpoint.AppendRequest {
	fn(&r)
	return r
}

func ptr(v uint64) *uint64 { return &v }

func mustAppend(tb testing.TB, s syncpoint.Store, reqs ...syncpoint.AppendRequest) []syncpoint.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), reqs)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	if len(res) != len(reqs) {
		tb.Fatalf("append: %d results for %d requests", len(res), len(reqs))
	}
	return res
}

func mustRead(tb testing.TB, s syncpoint.Store, ch syncpoint.Channel, after uint64, limit int, now time.Time) syncpoint.Page {
	tb.Helper()
	p, err := s.Read(context.Background(), ch, after, limit, now)
	if err != nil {
		tb.Fatalf("read %s after %d: %v", ch, after, err)
	}
	return p
}

func mustInfo(tb testing.TB, s syncpoint.Store, ch syncpoint.Channel) syncpoint.ChannelInfo {
	tb.Helper()
	info, err := s.Channel(context.Background(), ch)
	if err != nil {
		tb.Fatalf("channel %s: %v", ch, err)
	}
	return info
}

func mustSweep(tb testing.TB, s syncpoint.Store, now time.Time) int {
	tb.Helper()
	n, err := s.Sweep(context.Background(), now)
	if err != nil {
		tb.Fatalf("sweep: %v", err)
	}
	return n
}

func seqs(es []syncpoint.Entry) []uint64 {
	out := []uint64{}
	for _, e := range es {
		out = append(out, e.Seq)
	}
	return out
}

func resultSeqs(rs []syncpoint.AppendResult) []uint64 {
	out := []uint64{}
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

func wantSeqs(tb testing.TB, what string, got, want []uint64) {
	tb.Helper()
	if !slices.Equal(got, want) {
		tb.Fatalf("%s: seqs %v, want %v", what, got, want)
	}
}

func wantInfo(tb testing.TB, info syncpoint.ChannelInfo, first, last uint64) {
	tb.Helper()
	if info.FirstSeq != first || info.LastSeq != last {
		tb.Fatalf("%s: first..last %d..%d, want %d..%d", info.Channel, info.FirstSeq, info.LastSeq, first, last)
	}
}

func wantErr(tb testing.TB, what string, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("%s: error %v, want %v", what, err, target)
	}
}

func testAppendAssignsSeqs(t *testing.T, s syncpoint.Store) {
	res := mustAppend(t, s, msg(chatU1, `{"n":1}`))
	if res[0].Seq != 1 || res[0].Epoch == "" || res[0].Duplicate || res[0].Err != nil {
		t.Fatalf("first append: %+v, want seq 1 with an epoch", res[0])
	}
	epoch := res[0].Epoch
	res = mustAppend(t, s, msg(chatU1, `{"n":2}`), msg(chatU1, `{"n":3}`), msg(chatU1, `{"n":4}`))
	wantSeqs(t, "second call", resultSeqs(res), []uint64{2, 3, 4})
	for _, r := range res {
		if r.Epoch != epoch {
			t.Fatalf("epoch changed from %q to %q without a reset", epoch, r.Epoch)
		}
	}
	info := mustInfo(t, s, chatU1)
	wantInfo(t, info, 1, 4)
	if info.Epoch != epoch || info.Channel != chatU1 {
		t.Fatalf("info %+v, want channel %s epoch %s", info, chatU1, epoch)
	}
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	wantSeqs(t, "read", seqs(p.Entries), []uint64{1, 2, 3, 4})
	for i, e := range p.Entries {
		if want := fmt.Sprintf(`{"n":%d}`, i+1); string(e.Data) != want {
			t.Fatalf("entry %d: data %s, want %s", e.Seq, e.Data, want)
		}
		if e.Epoch != epoch || e.Channel != chatU1 {
			t.Fatalf("entry %d: channel %s epoch %q, want %s %q", e.Seq, e.Channel, e.Epoch, chatU1, epoch)
		}
	}
	other := mustAppend(t, s, msg(chatU2, `{}`))
	if other[0].Seq != 1 || other[0].Epoch == "" || other[0].Epoch == epoch {
		t.Fatalf("another channel: %+v, want seq 1 and an epoch of its own", other[0])
	}
}

func testAppendManyChannels(t *testing.T, s syncpoint.Store) {
	res := mustAppend(t, s, msg(chatU1, `1`), msg(chatU2, `1`), msg(chatU1, `2`), msg(cfgAll, `1`), msg(chatU2, `2`), msg(chatU1, `3`))
	wantSeqs(t, "results", resultSeqs(res), []uint64{1, 1, 2, 1, 2, 3})
	for ch, n := range map[syncpoint.Channel]uint64{chatU1: 3, chatU2: 2, cfgAll: 1} {
		wantInfo(t, mustInfo(t, s, ch), 1, n)
		p := mustRead(t, s, ch, 0, 0, time.Now())
		for i, e := range p.Entries {
			if want := fmt.Sprint(i + 1); string(e.Data) != want {
				t.Fatalf("%s seq %d: data %s, want %s", ch, e.Seq, e.Data, want)
			}
		}
	}
}

func testAppendEmpty(t *testing.T, s syncpoint.Store) {
	res, err := s.Append(context.Background(), nil)
	if err != nil || len(res) != 0 {
		t.Fatalf("empty append: %v %v, want no results and no error", res, err)
	}
}

func testAppendRejects(t *testing.T, s syncpoint.Store) {
	for name, r := range map[string]syncpoint.AppendRequest{
		"bad op":        with(msg(chatU1, `{}`), func(r *syncpoint.AppendRequest) { r.Entry.Op = "upsert" }),
		"put no key":    put(chatU1, "", `{}`),
		"delete no key": del(chatU1, ""),
		"bad channel":   msg(syncpoint.Channel{Biz: "Chat!", Target: syncpoint.UserTarget("u1")}, `{}`),
		"bad target":    msg(syncpoint.Channel{Biz: "chat", Target: syncpoint.Target{Kind: "planet"}}, `{}`),
	} {
		_, err := s.Append(context.Background(), []syncpoint.AppendRequest{msg(chatU1, `{}`), r})
		if err == nil {
			t.Fatalf("%s: append succeeded", name)
		}
		if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
			t.Fatalf("%s: error %v has code %q, want %q", name, err, c, syncpoint.CodeInvalid)
		}
	}
	if _, err := s.Channel(context.Background(), chatU1); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("a rejected call appended something: Channel gives %v", err)
	}
}

func testEntryRoundTrip(t *testing.T, s syncpoint.Store) {
	// Microseconds: the finest precision the suite asks a store to keep.
	created := time.Date(2030, 1, 2, 3, 4, 5, 123456000, time.UTC)
	in := syncpoint.Entry{
		Channel:        recsG1,
		Op:             syncpoint.OpPut,
		Key:            "rec-1 ü",
		Data:           json.RawMessage(`{"title":"hi","n":[1,2]}`),
		CreatedAt:      created,
		ExpiresAt:      created.Add(90 * time.Minute),
		Conditions:     syncpoint.Conditions{Platforms: []string{"ios", "android"}, MinAppVersion: "1.2.0", MaxAppVersion: "2.0.0"},
		Origin:         "device:d1",
		IdempotencyKey: "idem-1",
	}
	res := mustAppend(t, s, syncpoint.AppendRequest{Entry: in})
	in.Seq, in.Epoch = 1, res[0].Epoch
	p := mustRead(t, s, recsG1, 0, 10, created)
	if len(p.Entries) != 1 {
		t.Fatalf("read %d entries, want 1", len(p.Entries))
	}
	got, err := s.Entry(context.Background(), recsG1, 1)
	if err != nil {
		t.Fatal(err)
	}
	byKey, err := s.KeyEntry(context.Background(), recsG1, in.Key)
	if err != nil {
		t.Fatal(err)
	}
	for name, e := range map[string]syncpoint.Entry{"Read": p.Entries[0], "Entry": got, "KeyEntry": byKey} {
		wantEntry(t, name, e, in)
	}
	// A zero CreatedAt is filled in by the store.
	before := time.Now()
	mustAppend(t, s, msg(chatU1, `{}`))
	e, err := s.Entry(context.Background(), chatU1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if e.CreatedAt.IsZero() || e.CreatedAt.Before(before.Add(-time.Minute)) || !e.ExpiresAt.IsZero() {
		t.Fatalf("created_at %v expires_at %v: want about now, and zero", e.CreatedAt, e.ExpiresAt)
	}
}

func wantEntry(tb testing.TB, what string, got, want syncpoint.Entry) {
	tb.Helper()
	ok := got.Channel == want.Channel && got.Epoch == want.Epoch && got.Seq == want.Seq && got.Op == want.Op &&
		got.Key == want.Key && bytes.Equal(got.Data, want.Data) && got.CreatedAt.Equal(want.CreatedAt) &&
		got.ExpiresAt.Equal(want.ExpiresAt) && slices.Equal(got.Conditions.Platforms, want.Conditions.Platforms) &&
		got.Conditions.MinAppVersion == want.Conditions.MinAppVersion &&
		got.Conditions.MaxAppVersion == want.Conditions.MaxAppVersion &&
		got.Origin == want.Origin && got.IdempotencyKey == want.IdempotencyKey
	if !ok {
		tb.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

// testConcurrentAppenders checks that seqs stay gap-free and that each
// appender's entries keep its order, whatever the interleaving.
func testConcurrentAppenders(t *testing.T, s syncpoint.Store) {
	const writers, calls = 16, 30
	type tag struct{ G, I int }
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	type result struct {
		ch   syncpoint.Channel
		seq  uint64
		data string
	}
	results := make([][]result, writers)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := 0
			for c := range calls {
				var reqs []syncpoint.AppendRequest
				for range 1 + c%3 { // calls of 1, 2 and 3 entries
					b, _ := json.Marshal(tag{g, i})
					reqs = append(reqs, msg(chatU1, string(b)))
					if g%4 == 0 {
						reqs = append(reqs, msg(chatU2, string(b)))
					}
					i++
				}
				res, err := s.Append(context.Background(), reqs)
				if err != nil {
					errs <- err
					return
				}
				for j, r := range res {
					results[g] = append(results[g], result{reqs[j].Entry.Channel, r.Seq, string(reqs[j].Entry.Data)})
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, ch := range []syncpoint.Channel{chatU1, chatU2} {
		var all []syncpoint.Entry
		for after := uint64(0); ; {
			p := mustRead(t, s, ch, after, 37, time.Now())
			if len(p.Entries) == 0 {
				break
			}
			all = append(all, p.Entries...)
			after = p.Entries[len(p.Entries)-1].Seq
		}
		info := mustInfo(t, s, ch)
		last := map[int]int{}
		for i, e := range all {
			if e.Seq != uint64(i+1) {
				t.Fatalf("%s: entry %d has seq %d: seqs must be 1, 2, 3... without gaps", ch, i, e.Seq)
			}
			var tg tag
			if err := json.Unmarshal(e.Data, &tg); err != nil {
				t.Fatal(err)
			}
			if prev, ok := last[tg.G]; ok && tg.I <= prev {
				t.Fatalf("%s: writer %d's entry %d got a seq after its entry %d", ch, tg.G, tg.I, prev)
			}
			last[tg.G] = tg.I
		}
		wantInfo(t, info, 1, uint64(len(all)))
	}
	// Each result names the entry that was appended for it.
	for _, rs := range results {
		for _, r := range rs {
			e, err := s.Entry(context.Background(), r.ch, r.seq)
			if err != nil {
				t.Fatal(err)
			}
			if string(e.Data) != r.data {
				t.Fatalf("result %s seq %d: entry holds %s, want %s", r.ch, r.seq, e.Data, r.data)
			}
		}
	}
}

func testUnknownChannel(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	p := mustRead(t, s, chatU1, 0, 10, time.Now())
	if len(p.Entries) != 0 || p.Info.Epoch != "" || p.Info.FirstSeq != 1 || p.Info.LastSeq != 0 {
		t.Fatalf("unknown channel: %+v, want an empty page with epoch \"\", first 1, last 0", p)
	}
	_, err := s.Channel(ctx, chatU1)
	wantErr(t, "Channel", err, syncpoint.ErrNotFound)
	_, err = s.Entry(ctx, chatU1, 1)
	wantErr(t, "Entry", err, syncpoint.ErrNotFound)
	_, err = s.KeyEntry(ctx, chatU1, "k")
	wantErr(t, "KeyEntry", err, syncpoint.ErrNotFound)
	_, err = s.ResetChannel(ctx, chatU1)
	wantErr(t, "ResetChannel", err, syncpoint.ErrNotFound)
}

func idem(r syncpoint.AppendRequest, key string) syncpoint.AppendRequest {
	r.Entry.IdempotencyKey = key
	return r
}

func testIdempotency(t *testing.T, s syncpoint.Store) {
	res := mustAppend(t, s, idem(msg(chatU1, `1`), "a"), idem(msg(chatU1, `2`), "b"), idem(msg(chatU1, `1`), "a"))
	if res[0].Seq != 1 || res[1].Seq != 2 || res[0].Duplicate || res[1].Duplicate {
		t.Fatalf("first two: %+v", res[:2])
	}
	if !res[2].Duplicate || res[2].Seq != 1 || res[2].Epoch != res[0].Epoch {
		t.Fatalf("duplicate in the same call: %+v, want seq 1, duplicate, epoch %s", res[2], res[0].Epoch)
	}
	// A retry computes its times afresh; they are not content.
	retry := with(idem(msg(chatU1, `2`), "b"), func(r *syncpoint.AppendRequest) {
		r.Entry.CreatedAt, r.Entry.ExpiresAt = time.Now().Add(time.Minute), hourFromNow()
	})
	res = mustAppend(t, s, msg(chatU1, `4`), retry, idem(msg(chatU1, `6`), "c"))
	if res[1].Seq != 2 || !res[1].Duplicate || res[0].Seq != 3 || res[2].Seq != 4 || res[2].Duplicate {
		t.Fatalf("later call: %+v, want 3, duplicate of 2, 4", res)
	}
	wantInfo(t, mustInfo(t, s, chatU1), 1, 4)
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	if got := string(p.Entries[0].Data) + string(p.Entries[1].Data); got != "12" || !p.Entries[1].ExpiresAt.IsZero() {
		t.Fatalf("a duplicate replaced the original: data %q, expires %v", got, p.Entries[1].ExpiresAt)
	}
	// Keys are unique per channel, not per store.
	res = mustAppend(t, s, idem(msg(chatU2, `1`), "a"))
	if res[0].Duplicate || res[0].Seq != 1 {
		t.Fatalf("same key in another channel: %+v, want a new entry", res[0])
	}
	// Concurrent duplicates: exactly one appends.
	var wg sync.WaitGroup
	out := make([]syncpoint.AppendResult, 8)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Append(context.Background(), []syncpoint.AppendRequest{idem(msg(cfgAll, `{}`), "same")})
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = res[0]
		}()
	}
	wg.Wait()
	fresh := 0
	for _, r := range out {
		if r.Seq != 1 {
			t.Fatalf("concurrent duplicates: result %+v, want seq 1", r)
		}
		if !r.Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("concurrent duplicates: %d appended, want 1", fresh)
	}
}

// testIdempotencyMismatch reuses idempotency keys for other content: the
// store refuses with the original seq and appends nothing, whatever part
// of the content changed, while a true retry is still a duplicate.
func testIdempotencyMismatch(t *testing.T, s syncpoint.Store) {
	orig := idem(put(recsG1, "a", `{"v":1}`), "k")
	orig.Entry.Conditions = syncpoint.Conditions{Platforms: []string{"ios"}, MinAppVersion: "1.0.0"}
	first := mustAppend(t, s, msg(recsG1, `{}`), orig)[1]
	if first.Seq != 2 || first.Err != nil {
		t.Fatalf("first use of the key: %+v", first)
	}
	for name, fn := range map[string]func(r *syncpoint.AppendRequest){
		"data":          func(r *syncpoint.AppendRequest) { r.Entry.Data = json.RawMessage(`{"v":2}`) },
		"data spacing":  func(r *syncpoint.AppendRequest) { r.Entry.Data = json.RawMessage(`{"v": 1}`) },
		"op":            func(r *syncpoint.AppendRequest) { r.Entry.Op, r.Entry.Data = syncpoint.OpDelete, nil },
		"key":           func(r *syncpoint.AppendRequest) { r.Entry.Key = "b" },
		"platforms":     func(r *syncpoint.AppendRequest) { r.Entry.Conditions.Platforms = []string{"android"} },
		"app version":   func(r *syncpoint.AppendRequest) { r.Entry.Conditions.MinAppVersion = "2.0.0" },
		"origin":        func(r *syncpoint.AppendRequest) { r.Entry.Origin = "device:d1" },
		"content hash":  func(r *syncpoint.AppendRequest) { r.ContentHash = []byte("another change") },
		"with IfKeySeq": func(r *syncpoint.AppendRequest) { r.Entry.Data, r.IfKeySeq = json.RawMessage(`{"v":3}`), ptr(2) },
	} {
		res := mustAppend(t, s, with(orig, fn))[0]
		wantErr(t, "reuse with another "+name, res.Err, syncpoint.ErrIdempotencyMismatch)
		if res.Seq != first.Seq || res.Epoch != first.Epoch || res.Duplicate {
			t.Fatalf("reuse with another %s: %+v, want the original seq %d and no duplicate", name, res, first.Seq)
		}
	}
	wantInfo(t, mustInfo(t, s, recsG1), 1, 2)
	if e, err := s.KeyEntry(context.Background(), recsG1, "a"); err != nil || string(e.Data) != `{"v":1}` {
		t.Fatalf("the record after refused reuses: %+v %v", e, err)
	}
	if res := mustAppend(t, s, orig)[0]; !res.Duplicate || res.Seq != 2 || res.Err != nil {
		t.Fatalf("a true retry: %+v, want a duplicate of 2", res)
	}
	// In one call: the second use of a key with other content is refused.
	res := mustAppend(t, s, idem(msg(chatU1, `1`), "x"), idem(msg(chatU1, `2`), "x"))
	wantErr(t, "other content in the same call", res[1].Err, syncpoint.ErrIdempotencyMismatch)
	if res[1].Seq != 1 {
		t.Fatalf("other content in the same call: %+v, want the original seq 1", res[1])
	}
	// A caller's own content hash decides instead of the entry's: record
	// sync hashes the change, whose entry (a merge) may differ per try.
	change := with(idem(put(chatU2, "r", `{"merged":1}`), "w"), func(r *syncpoint.AppendRequest) { r.ContentHash = []byte("change 1") })
	mustAppend(t, s, change)
	again := with(change, func(r *syncpoint.AppendRequest) { r.Entry.Data = json.RawMessage(`{"merged":2}`) })
	if res := mustAppend(t, s, again)[0]; !res.Duplicate || res.Seq != 1 {
		t.Fatalf("the same change hash with another entry: %+v, want a duplicate", res)
	}
	if res := mustAppend(t, s, with(change, func(r *syncpoint.AppendRequest) { r.ContentHash = nil }))[0]; !errors.Is(res.Err, syncpoint.ErrIdempotencyMismatch) {
		t.Fatalf("the change without its hash: %+v, want a mismatch", res)
	}
	_, err := s.Append(context.Background(), []syncpoint.AppendRequest{with(change, func(r *syncpoint.AppendRequest) { r.ContentHash = make([]byte, syncpoint.MaxContentHashLen+1) })})
	if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
		t.Fatalf("an oversized content hash: %v, want code %q", err, syncpoint.CodeInvalid)
	}
}

func testIdempotencyExpires(t *testing.T, s syncpoint.Store) {
	created := time.Now()
	pol := syncpoint.Policy{Retention: time.Hour}
	r := with(idem(msg(chatU1, `{}`), "k"), func(r *syncpoint.AppendRequest) { r.Entry.CreatedAt = created; r.Policy = pol })
	mustAppend(t, s, r)
	if n := mustSweep(t, s, created.Add(30*time.Minute)); n != 0 {
		t.Fatalf("sweep removed %d entries, want 0", n)
	}
	if res := mustAppend(t, s, r); !res[0].Duplicate || res[0].Seq != 1 {
		t.Fatalf("within retention: %+v, want a duplicate of 1", res[0])
	}
	if n := mustSweep(t, s, created.Add(time.Hour+time.Second)); n != 0 {
		t.Fatalf("sweep removed %d entries, want 0 (an idempotency key is not an entry)", n)
	}
	if res := mustAppend(t, s, r); res[0].Duplicate || res[0].Seq != 2 {
		t.Fatalf("after retention: %+v, want a new entry 2", res[0])
	}
	if _, err := s.Entry(context.Background(), chatU1, 1); err != nil {
		t.Fatalf("forgetting an idempotency key removed its entry: %v", err)
	}
}

// testDuplicateBeforeIfKeySeq retries conditional appends whose own first
// try moved the key: the retry is answered from its idempotency key, not
// refused by IfKeySeq, and appends nothing. Record sync relies on this to
// apply an upload exactly once when its result was lost.
func testDuplicateBeforeIfKeySeq(t *testing.T, s syncpoint.Store) {
	create := idem(cond(put(recsG1, "a", `1`), 0), "w1")
	first := mustAppend(t, s, create)[0]
	if first.Err != nil || first.Seq != 1 {
		t.Fatalf("create: %+v", first)
	}
	update := idem(cond(put(recsG1, "a", `2`), 1), "w2")
	if r := mustAppend(t, s, update)[0]; r.Err != nil || r.Seq != 2 {
		t.Fatalf("update: %+v", r)
	}
	// The key is at 2 now: IfKeySeq 0 and 1 no longer hold, yet the retries
	// are duplicates of what they appended.
	res := mustAppend(t, s, create, update)
	for i, want := range []uint64{1, 2} {
		if res[i].Err != nil || !res[i].Duplicate || res[i].Seq != want || res[i].Epoch != first.Epoch {
			t.Fatalf("retry %d: %+v, want a duplicate of seq %d and no error", i, res[i], want)
		}
	}
	// In one call with the first try, too.
	both := mustAppend(t, s, idem(cond(put(recsG1, "b", `1`), 0), "w3"), idem(cond(put(recsG1, "b", `1`), 0), "w3"))
	if both[0].Err != nil || both[0].Seq != 3 || both[1].Err != nil || !both[1].Duplicate || both[1].Seq != 3 {
		t.Fatalf("first try and retry in one call: %+v", both)
	}
	// A condition that can never hold appends nothing, yet still finds a
	// spent key: the probe record sync makes after a lost result.
	never := ptr(^uint64(0))
	probe := mustAppend(t, s, with(idem(put(recsG1, "a", `2`), "w2"), func(r *syncpoint.AppendRequest) { r.IfKeySeq = never }),
		with(idem(put(recsG1, "a", `9`), "unused"), func(r *syncpoint.AppendRequest) { r.IfKeySeq = never }))
	if !probe[0].Duplicate || probe[0].Seq != 2 || probe[0].Err != nil {
		t.Fatalf("probe of a spent key: %+v, want a duplicate of 2", probe[0])
	}
	wantErr(t, "probe of an unused key", probe[1].Err, syncpoint.ErrKeyChanged)
	if probe[1].Duplicate || probe[1].KeySeq != 2 {
		t.Fatalf("probe of an unused key: %+v, want KeySeq 2", probe[1])
	}
	wantInfo(t, mustInfo(t, s, recsG1), 1, 3)
}

func cond(r syncpoint.AppendRequest, seq uint64) syncpoint.AppendRequest {
	r.IfKeySeq = ptr(seq)
	return r
}

func testIfKeySeq(t *testing.T, s syncpoint.Store) {
	res := mustAppend(t, s, cond(put(recsG1, "a", `1`), 0))
	if res[0].Err != nil || res[0].Seq != 1 {
		t.Fatalf("create with IfKeySeq 0: %+v", res[0])
	}
	res = mustAppend(t, s, cond(put(recsG1, "a", `2`), 0))
	wantErr(t, "create over an existing key", res[0].Err, syncpoint.ErrKeyChanged)
	if res[0].KeySeq != 1 || res[0].Seq != 0 {
		t.Fatalf("mismatch: %+v, want KeySeq 1 and no seq", res[0])
	}
	res = mustAppend(t, s, msg(recsG1, `{}`), cond(put(recsG1, "a", `3`), 1))
	if res[1].Err != nil || res[1].Seq != 3 {
		t.Fatalf("update with the right seq: %+v", res[1])
	}
	res = mustAppend(t, s, cond(put(recsG1, "a", `4`), 1), put(recsG1, "b", `1`))
	wantErr(t, "stale update", res[0].Err, syncpoint.ErrKeyChanged)
	if res[0].KeySeq != 3 || res[1].Err != nil || res[1].Seq != 4 {
		t.Fatalf("stale update in a call: %+v, want KeySeq 3, and the other request appended as 4", res)
	}
	res = mustAppend(t, s, cond(del(recsG1, "a"), 3))
	if res[0].Err != nil || res[0].Seq != 5 {
		t.Fatalf("delete: %+v", res[0])
	}
	// A delete is the key's newest entry: the key is not absent.
	res = mustAppend(t, s, cond(put(recsG1, "a", `5`), 0))
	wantErr(t, "create over a deleted key", res[0].Err, syncpoint.ErrKeyChanged)
	if res[0].KeySeq != 5 {
		t.Fatalf("KeySeq %d, want 5", res[0].KeySeq)
	}
	// Messages do not move a key.
	res = mustAppend(t, s, with(msg(recsG1, `{}`), func(r *syncpoint.AppendRequest) { r.Entry.Key = "a" }), cond(put(recsG1, "a", `6`), 5))
	if res[1].Err != nil {
		t.Fatalf("a msg with a key counted as the key's entry: %+v", res[1])
	}
	wantInfo(t, mustInfo(t, s, recsG1), 1, 7)
	// IfKeySeq holds in another channel independently.
	res = mustAppend(t, s, cond(put(chatU1, "a", `1`), 0))
	if res[0].Err != nil {
		t.Fatalf("same key, other channel: %+v", res[0])
	}
}

func testIfKeySeqSameCall(t *testing.T, s syncpoint.Store) {
	res := mustAppend(t, s, cond(put(recsG1, "k", `1`), 0), cond(put(recsG1, "k", `2`), 0), cond(put(recsG1, "k", `3`), 1), cond(del(recsG1, "k"), 2))
	if res[0].Err != nil || res[0].Seq != 1 {
		t.Fatalf("first: %+v", res[0])
	}
	wantErr(t, "second create", res[1].Err, syncpoint.ErrKeyChanged)
	if res[1].KeySeq != 1 {
		t.Fatalf("second: KeySeq %d, want 1", res[1].KeySeq)
	}
	if res[2].Err != nil || res[2].Seq != 2 || res[3].Err != nil || res[3].Seq != 3 {
		t.Fatalf("chained updates: %+v %+v, want seqs 2 and 3", res[2], res[3])
	}
	e, err := s.KeyEntry(context.Background(), recsG1, "k")
	if err != nil || e.Seq != 3 || e.Op != syncpoint.OpDelete {
		t.Fatalf("KeyEntry: %+v %v, want the delete at 3", e, err)
	}
	// Concurrent creates of one key: exactly one wins.
	var wg sync.WaitGroup
	wins := make(chan uint64, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := s.Append(context.Background(), []syncpoint.AppendRequest{cond(put(recsG1, "race", `{}`), 0)})
			if err != nil {
				t.Error(err)
				return
			}
			if res[0].Err == nil {
				wins <- res[0].Seq
			} else if !errors.Is(res[0].Err, syncpoint.ErrKeyChanged) {
				t.Errorf("result error %v", res[0].Err)
			}
		}()
	}
	wg.Wait()
	close(wins)
	if n := len(wins); n != 1 {
		t.Fatalf("%d concurrent creates of one key succeeded, want 1", n)
	}
}

var compact = syncpoint.Policy{Compact: true, Retention: time.Hour}

func pol(r syncpoint.AppendRequest, p syncpoint.Policy) syncpoint.AppendRequest {
	r.Policy = p
	return r
}

func testCompaction(t *testing.T, s syncpoint.Store) {
	mustAppend(t, s, pol(put(recsG1, "a", `1`), compact), pol(put(recsG1, "b", `1`), compact))
	mustAppend(t, s, pol(put(recsG1, "a", `2`), compact), pol(msg(recsG1, `m`), compact))
	mustAppend(t, s, pol(del(recsG1, "b"), compact))
	p := mustRead(t, s, recsG1, 0, 0, time.Now())
	wantSeqs(t, "after compaction", seqs(p.Entries), []uint64{3, 4, 5})
	wantInfo(t, p.Info, 1, 5) // compaction never moves FirstSeq
	for _, seq := range []uint64{1, 2} {
		_, err := s.Entry(context.Background(), recsG1, seq)
		wantErr(t, fmt.Sprintf("compacted entry %d", seq), err, syncpoint.ErrNotFound)
	}
	for key, want := range map[string]uint64{"a": 3, "b": 5} {
		e, err := s.KeyEntry(context.Background(), recsG1, key)
		if err != nil || e.Seq != want {
			t.Fatalf("KeyEntry %s: seq %d %v, want %d", key, e.Seq, err, want)
		}
	}
	// Within one call too.
	mustAppend(t, s, pol(put(recsG1, "c", `1`), compact), pol(put(recsG1, "c", `2`), compact), pol(put(recsG1, "c", `3`), compact))
	p = mustRead(t, s, recsG1, 5, 0, time.Now())
	wantSeqs(t, "compaction within a call", seqs(p.Entries), []uint64{8})
}

func testNoCompaction(t *testing.T, s syncpoint.Store) {
	mustAppend(t, s, put(recsG1, "a", `1`), put(recsG1, "a", `2`), del(recsG1, "a"))
	p := mustRead(t, s, recsG1, 0, 0, time.Now())
	wantSeqs(t, "without compaction", seqs(p.Entries), []uint64{1, 2, 3})
}

func testTombstones(t *testing.T, s syncpoint.Store) {
	created := time.Now()
	at := func(r syncpoint.AppendRequest) syncpoint.AppendRequest {
		r.Entry.CreatedAt = created
		return pol(r, compact)
	}
	mustAppend(t, s, at(put(recsG1, "a", `1`)), at(msg(recsG1, `m`)), at(del(recsG1, "a")))
	if n := mustSweep(t, s, created.Add(30*time.Minute)); n != 0 {
		t.Fatalf("sweep within retention removed %d", n)
	}
	if e, err := s.KeyEntry(context.Background(), recsG1, "a"); err != nil || e.Seq != 3 {
		t.Fatalf("tombstone within retention: %+v %v", e, err)
	}
	if n := mustSweep(t, s, created.Add(time.Hour+time.Second)); n != 1 {
		t.Fatalf("sweep after retention removed %d, want the tombstone", n)
	}
	_, err := s.KeyEntry(context.Background(), recsG1, "a")
	wantErr(t, "KeyEntry after the tombstone went", err, syncpoint.ErrNotFound)
	_, err = s.Entry(context.Background(), recsG1, 3)
	wantErr(t, "Entry of the swept tombstone", err, syncpoint.ErrNotFound)
	p := mustRead(t, s, recsG1, 0, 0, time.Now())
	wantSeqs(t, "after the sweep", seqs(p.Entries), []uint64{2})
	if p.Info.FirstSeq != 1 || p.Info.LastSeq != 3 {
		t.Fatalf("info %+v: entry 2 remains, so FirstSeq stays 1", p.Info)
	}
	// The key is absent again.
	res := mustAppend(t, s, cond(pol(put(recsG1, "a", `2`), compact), 0))
	if res[0].Err != nil || res[0].Seq != 4 {
		t.Fatalf("create after the tombstone went: %+v", res[0])
	}
}

func testMaxBacklog(t *testing.T, s syncpoint.Store) {
	capped := syncpoint.Policy{MaxBacklog: 3}
	for i := 1; i <= 5; i++ {
		mustAppend(t, s, pol(msg(chatU1, fmt.Sprint(i)), capped))
	}
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	wantSeqs(t, "trimmed", seqs(p.Entries), []uint64{3, 4, 5})
	wantInfo(t, p.Info, 3, 5)
	_, err := s.Entry(context.Background(), chatU1, 2)
	wantErr(t, "trimmed entry", err, syncpoint.ErrNotFound)
	if st, resume := p.Info.Check(syncpoint.Position{Epoch: p.Info.Epoch, Seq: 1}); st != syncpoint.StatusGap || resume != 2 {
		t.Fatalf("a device at 1 is told %s %d, want gap 2", st, resume)
	}
	// Trimming keeps a key index honest: the key's entry is gone.
	mustAppend(t, s, pol(put(chatU2, "k", `1`), capped), pol(msg(chatU2, `2`), capped), pol(msg(chatU2, `3`), capped), pol(msg(chatU2, `4`), capped))
	_, err = s.KeyEntry(context.Background(), chatU2, "k")
	wantErr(t, "KeyEntry of a trimmed key", err, syncpoint.ErrNotFound)
	res := mustAppend(t, s, cond(put(chatU2, "k", `5`), 0))
	if res[0].Err != nil {
		t.Fatalf("create of a key whose entry was trimmed: %+v", res[0])
	}
}

func testMaxBacklogOneCall(t *testing.T, s syncpoint.Store) {
	capped := syncpoint.Policy{MaxBacklog: 2}
	var reqs []syncpoint.AppendRequest
	for i := range 6 {
		reqs = append(reqs, pol(msg(chatU1, fmt.Sprint(i)), capped))
	}
	wantSeqs(t, "results", resultSeqs(mustAppend(t, s, reqs...)), []uint64{1, 2, 3, 4, 5, 6})
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	wantSeqs(t, "trimmed in one call", seqs(p.Entries), []uint64{5, 6})
	wantInfo(t, p.Info, 5, 6)
}

// hourFromNow is a time in the future, in whole milliseconds so that a
// store keeping microseconds holds it exactly.
func hourFromNow() time.Time { return time.Now().Add(time.Hour).Truncate(time.Millisecond) }

func expiring(r syncpoint.AppendRequest, at time.Time) syncpoint.AppendRequest {
	r.Entry.ExpiresAt = at
	return r
}

func testReadSkipsExpired(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	mustAppend(t, s, expiring(msg(chatU1, `1`), t1), msg(chatU1, `2`), expiring(msg(chatU1, `3`), t1.Add(time.Hour)))
	wantSeqs(t, "before expiry", seqs(mustRead(t, s, chatU1, 0, 0, t1.Add(-time.Microsecond)).Entries), []uint64{1, 2, 3})
	p := mustRead(t, s, chatU1, 0, 0, t1)
	wantSeqs(t, "at expiry", seqs(p.Entries), []uint64{2, 3})
	wantInfo(t, p.Info, 1, 3) // nothing swept yet
	wantSeqs(t, "later", seqs(mustRead(t, s, chatU1, 0, 0, t1.Add(time.Hour)).Entries), []uint64{2})
	// A page of the given limit is filled from live entries.
	wantSeqs(t, "limit 1", seqs(mustRead(t, s, chatU1, 0, 1, t1).Entries), []uint64{2})
	// Entry still returns an entry that expired but was not swept.
	if _, err := s.Entry(context.Background(), chatU1, 1); err != nil {
		t.Fatalf("Entry of an expired, unswept entry: %v", err)
	}
}

func testSweepOldest(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	mustAppend(t, s, expiring(msg(chatU1, `1`), t1), expiring(msg(chatU1, `2`), t1), msg(chatU1, `3`))
	if n := mustSweep(t, s, t1.Add(-time.Second)); n != 0 {
		t.Fatalf("early sweep removed %d", n)
	}
	if n := mustSweep(t, s, t1); n != 2 {
		t.Fatalf("sweep removed %d, want 2", n)
	}
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	wantSeqs(t, "after sweep", seqs(p.Entries), []uint64{3})
	wantInfo(t, p.Info, 3, 3)
	for _, seq := range []uint64{1, 2} {
		_, err := s.Entry(context.Background(), chatU1, seq)
		wantErr(t, "swept entry", err, syncpoint.ErrNotFound)
	}
	wantSeqs(t, "next append", resultSeqs(mustAppend(t, s, msg(chatU1, `4`))), []uint64{4})
	wantInfo(t, mustInfo(t, s, chatU1), 3, 4)
	if n := mustSweep(t, s, t1.Add(time.Hour)); n != 0 {
		t.Fatalf("second sweep removed %d, want 0", n)
	}
}

func testSweepMiddle(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	mustAppend(t, s, msg(chatU1, `1`), expiring(msg(chatU1, `2`), t1), msg(chatU1, `3`))
	if n := mustSweep(t, s, t1); n != 1 {
		t.Fatalf("sweep removed %d, want 1", n)
	}
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	wantSeqs(t, "after sweep", seqs(p.Entries), []uint64{1, 3})
	wantInfo(t, p.Info, 1, 3) // entry 1 is older and still there
	_, err := s.Entry(context.Background(), chatU1, 2)
	wantErr(t, "swept middle entry", err, syncpoint.ErrNotFound)
}

func testSweepPastCompacted(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	mustAppend(t, s,
		pol(expiring(msg(recsG1, `1`), t1), compact),
		pol(put(recsG1, "k", `2`), compact),
		pol(expiring(put(recsG1, "k", `3`), t1), compact), // compacts 2
		pol(msg(recsG1, `4`), compact))
	if n := mustSweep(t, s, t1); n != 2 {
		t.Fatalf("sweep removed %d, want 2", n)
	}
	p := mustRead(t, s, recsG1, 0, 0, time.Now())
	wantSeqs(t, "after sweep", seqs(p.Entries), []uint64{4})
	// Seq 2 was compacted away, so nothing below 3 is left: 1 to 3 are gone.
	wantInfo(t, p.Info, 4, 4)
	_, err := s.KeyEntry(context.Background(), recsG1, "k")
	wantErr(t, "KeyEntry of a swept key", err, syncpoint.ErrNotFound)
}

func testSweepEverything(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	mustAppend(t, s, expiring(msg(chatU1, `1`), t1), expiring(msg(chatU1, `2`), t1.Add(-time.Minute)))
	mustAppend(t, s, expiring(msg(chatU2, `1`), t1))
	if n := mustSweep(t, s, t1); n != 3 {
		t.Fatalf("sweep removed %d, want 3", n)
	}
	info := mustInfo(t, s, chatU1)
	wantInfo(t, info, 3, 2) // empty: FirstSeq = LastSeq+1
	if st, resume := info.Check(syncpoint.Position{}); st != syncpoint.StatusGap || resume != 2 {
		t.Fatalf("a new device is told %s %d, want gap 2", st, resume)
	}
	wantInfo(t, mustInfo(t, s, chatU2), 2, 1)
	if len(mustRead(t, s, chatU1, 0, 0, time.Now()).Entries) != 0 {
		t.Fatal("entries left after everything was swept")
	}
	wantSeqs(t, "next append", resultSeqs(mustAppend(t, s, msg(chatU1, `3`))), []uint64{3})
}

func testSweepLater(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	t2 := t1.Add(time.Hour)
	mustAppend(t, s, expiring(msg(chatU1, `1`), t2), expiring(msg(chatU1, `2`), t1), msg(chatU1, `3`))
	mustSweep(t, s, t1)
	wantInfo(t, mustInfo(t, s, chatU1), 1, 3)
	if n := mustSweep(t, s, t2); n != 1 {
		t.Fatalf("second sweep removed %d, want 1", n)
	}
	info := mustInfo(t, s, chatU1)
	if info.FirstSeq < 2 || info.FirstSeq > 3 || info.LastSeq != 3 {
		t.Fatalf("info %+v: after entry 1 went, FirstSeq is 2 or 3", info)
	}
	wantSeqs(t, "left", seqs(mustRead(t, s, chatU1, 0, 0, time.Now()).Entries), []uint64{3})
}

// testSweepConcurrently sweeps from two goroutines while writers append
// entries that are already due and entries that are not: each due entry is
// removed and counted exactly once, no other entry is touched, and seqs
// stay gap-free.
func testSweepConcurrently(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	const writers, calls = 4, 25
	var wg sync.WaitGroup
	writing := make(chan struct{})
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				// chatU1 alternates due and lasting entries; chatU2 has only
				// due ones, so its FirstSeq must pass them all.
				reqs := []syncpoint.AppendRequest{expiring(msg(chatU1, `"due"`), t1), msg(chatU1, fmt.Sprintf(`"%d-%d"`, g, i)), expiring(msg(chatU2, `"due"`), t1)}
				if _, err := s.Append(context.Background(), reqs); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(writing) }()
	var removed [2]int
	var sweepers sync.WaitGroup
	for i := range removed {
		sweepers.Add(1)
		go func() {
			defer sweepers.Done()
			for {
				select {
				case <-writing:
					return
				default:
				}
				n, err := s.Sweep(context.Background(), t1)
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
	total := removed[0] + removed[1] + mustSweep(t, s, t1)
	if want := 2 * writers * calls; total != want {
		t.Fatalf("the sweeps removed %d entries in all, want %d: each due entry once", total, want)
	}
	p := mustRead(t, s, chatU1, 0, 0, time.Now())
	if len(p.Entries) != writers*calls || p.Info.LastSeq != 2*writers*calls {
		t.Fatalf("chatU1: %d entries left, info %+v; want the %d lasting ones and LastSeq %d", len(p.Entries), p.Info, writers*calls, 2*writers*calls)
	}
	seen := map[string]bool{}
	for _, e := range p.Entries {
		if string(e.Data) == `"due"` || seen[string(e.Data)] {
			t.Fatalf("chatU1 entry %d holds %s after the sweeps", e.Seq, e.Data)
		}
		seen[string(e.Data)] = true
	}
	if p.Info.FirstSeq > p.Entries[0].Seq {
		t.Fatalf("FirstSeq %d passed the oldest entry %d", p.Info.FirstSeq, p.Entries[0].Seq)
	}
	wantInfo(t, mustInfo(t, s, chatU2), writers*calls+1, writers*calls)
	if next := mustAppend(t, s, msg(chatU2, `{}`))[0]; next.Seq != writers*calls+1 {
		t.Fatalf("append after the sweeps: seq %d, want %d", next.Seq, writers*calls+1)
	}
}

func testPaging(t *testing.T, s syncpoint.Store) {
	var reqs []syncpoint.AppendRequest
	for i := range 25 {
		reqs = append(reqs, msg(chatU1, fmt.Sprint(i+1)))
	}
	mustAppend(t, s, reqs...)
	var pages [][]uint64
	for after := uint64(0); ; {
		p := mustRead(t, s, chatU1, after, 10, time.Now())
		wantInfo(t, p.Info, 1, 25)
		if len(p.Entries) == 0 {
			break
		}
		pages = append(pages, seqs(p.Entries))
		after = p.Entries[len(p.Entries)-1].Seq
	}
	if len(pages) != 3 || len(pages[0]) != 10 || len(pages[1]) != 10 || len(pages[2]) != 5 || pages[1][0] != 11 || pages[2][4] != 25 {
		t.Fatalf("pages %v, want 1-10, 11-20, 21-25", pages)
	}
	if n := len(mustRead(t, s, chatU1, 0, 0, time.Now()).Entries); n != 25 {
		t.Fatalf("limit 0 gave %d entries, want all 25 (a default limit)", n)
	}
	if n := len(mustRead(t, s, chatU1, 0, -1, time.Now()).Entries); n != 25 {
		t.Fatalf("limit -1 gave %d entries, want all 25 (a default limit)", n)
	}
	p := mustRead(t, s, chatU1, 25, 10, time.Now())
	if len(p.Entries) != 0 {
		t.Fatal("entries after the last one")
	}
	wantInfo(t, p.Info, 1, 25)
	wantInfo(t, mustRead(t, s, chatU1, 1000, 10, time.Now()).Info, 1, 25)
}

func testEntryAndKeyEntry(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	t1 := hourFromNow()
	mustAppend(t, s, put(recsG1, "a", `1`), put(recsG1, "b", `1`), expiring(put(recsG1, "a", `2`), t1))
	for seq, want := range map[uint64]string{1: `1`, 2: `1`, 3: `2`} {
		e, err := s.Entry(ctx, recsG1, seq)
		if err != nil || e.Seq != seq || string(e.Data) != want {
			t.Fatalf("Entry %d: %+v %v", seq, e, err)
		}
	}
	for _, seq := range []uint64{0, 4, 1000} {
		_, err := s.Entry(ctx, recsG1, seq)
		wantErr(t, fmt.Sprintf("Entry %d", seq), err, syncpoint.ErrNotFound)
	}
	e, err := s.KeyEntry(ctx, recsG1, "a")
	if err != nil || e.Seq != 3 || e.Key != "a" || e.Channel != recsG1 {
		t.Fatalf("KeyEntry a: %+v %v, want seq 3", e, err)
	}
	// Read skips it once expired; KeyEntry still returns it.
	wantSeqs(t, "read after a expired", seqs(mustRead(t, s, recsG1, 0, 0, t1).Entries), []uint64{1, 2})
	if e, err := s.KeyEntry(ctx, recsG1, "a"); err != nil || e.Seq != 3 {
		t.Fatalf("KeyEntry of an expired entry: %+v %v", e, err)
	}
	_, err = s.KeyEntry(ctx, recsG1, "zzz")
	wantErr(t, "KeyEntry of an unknown key", err, syncpoint.ErrNotFound)
}

func testResetChannel(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	old := mustAppend(t, s, idem(put(recsG1, "a", `1`), "i1"), msg(recsG1, `2`))[0].Epoch
	mustAppend(t, s, msg(chatU1, `other`))
	info, err := s.ResetChannel(ctx, recsG1)
	if err != nil {
		t.Fatal(err)
	}
	if info.Epoch == "" || info.Epoch == old || info.FirstSeq != 1 || info.LastSeq != 0 || info.Channel != recsG1 {
		t.Fatalf("reset: %+v, want a new epoch (not %s), first 1, last 0", info, old)
	}
	if got := mustInfo(t, s, recsG1); got != info {
		t.Fatalf("Channel after reset: %+v, want %+v", got, info)
	}
	p := mustRead(t, s, recsG1, 0, 0, time.Now())
	if len(p.Entries) != 0 || p.Info != info {
		t.Fatalf("read after reset: %+v", p)
	}
	if st, _ := info.Check(syncpoint.Position{Epoch: old, Seq: 2}); st != syncpoint.StatusReset {
		t.Fatalf("a device of the old epoch is told %s, want reset", st)
	}
	_, err = s.KeyEntry(ctx, recsG1, "a")
	wantErr(t, "KeyEntry after reset", err, syncpoint.ErrNotFound)
	_, err = s.Entry(ctx, recsG1, 1)
	wantErr(t, "Entry after reset", err, syncpoint.ErrNotFound)
	res := mustAppend(t, s, idem(cond(put(recsG1, "a", `new`), 0), "i1"))
	if res[0].Err != nil || res[0].Duplicate || res[0].Seq != 1 || res[0].Epoch != info.Epoch {
		t.Fatalf("first append after reset: %+v, want seq 1 in epoch %s, not a duplicate, key absent", res[0], info.Epoch)
	}
	if e, err := s.Entry(ctx, recsG1, 1); err != nil || string(e.Data) != `new` || e.Epoch != info.Epoch {
		t.Fatalf("Entry 1 after reset: %+v %v", e, err)
	}
	wantInfo(t, mustInfo(t, s, chatU1), 1, 1) // other channels are untouched
}

// testReadsDuringTrimming reads while writers trim: a page never has a
// hole that its Info does not explain, and never goes past Info.LastSeq.
func testReadsDuringTrimming(t *testing.T, s syncpoint.Store) {
	capped := syncpoint.Policy{MaxBacklog: 5}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, so a failing test stops its writers
	defer cancel()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40 && ctx.Err() == nil; i++ {
				if _, err := s.Append(ctx, []syncpoint.AppendRequest{pol(msg(chatU1, `{}`), capped), pol(msg(chatU1, `{}`), capped)}); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var lastSeen uint64
	check := func() {
		after := lastSeen / 2
		p := mustRead(t, s, chatU1, after, 0, time.Now())
		if p.Info.LastSeq < lastSeen {
			t.Fatalf("LastSeq went back from %d to %d", lastSeen, p.Info.LastSeq)
		}
		lastSeen = p.Info.LastSeq
		want := max(after+1, p.Info.FirstSeq)
		for _, e := range p.Entries {
			if e.Seq != want {
				t.Fatalf("read after %d with info %d..%d gave %v: want %d..%d without holes", after, p.Info.FirstSeq, p.Info.LastSeq, seqs(p.Entries), max(after+1, p.Info.FirstSeq), p.Info.LastSeq)
			}
			want++
		}
		if want <= p.Info.LastSeq {
			t.Fatalf("read after %d with info %d..%d gave %v: entries up to LastSeq are missing", after, p.Info.FirstSeq, p.Info.LastSeq, seqs(p.Entries))
		}
	}
	for {
		select {
		case <-done:
			check()
			if lastSeen != 320 {
				t.Fatalf("LastSeq %d after 320 appends", lastSeen)
			}
			return
		default:
			check()
			runtime.Gosched() // leave the writers some CPU on a small machine
		}
	}
}

// testReadsDuringResets reads while a channel is reset and refilled: a
// page never mixes entries of one epoch with the Info of another.
func testReadsDuringResets(t *testing.T, s syncpoint.Store) {
	first := mustAppend(t, s, msg(chatU1, `"first"`))[0].Epoch
	done, stop := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-done }()
	go func() {
		defer close(done)
		for range 20 {
			select {
			case <-stop:
				return
			default:
			}
			info, err := s.ResetChannel(context.Background(), chatU1)
			if err != nil {
				t.Error(err)
				return
			}
			data, _ := json.Marshal(info.Epoch)
			for range 3 {
				if _, err := s.Append(context.Background(), []syncpoint.AppendRequest{msg(chatU1, string(data))}); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		p := mustRead(t, s, chatU1, 0, 0, time.Now())
		runtime.Gosched()
		if p.Info.Epoch == first {
			continue
		}
		if p.Info.FirstSeq != 1 || p.Info.LastSeq > 3 || len(p.Entries) != int(p.Info.LastSeq) {
			t.Fatalf("read during resets: %+v with %d entries", p.Info, len(p.Entries))
		}
		for _, e := range p.Entries {
			var epoch string
			json.Unmarshal(e.Data, &epoch)
			if epoch != p.Info.Epoch || e.Epoch != p.Info.Epoch {
				t.Fatalf("entry %d of epoch %s (says %s) in a page of epoch %s", e.Seq, epoch, e.Epoch, p.Info.Epoch)
			}
		}
	}
}

func testSyncPoints(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	sp := func(dev string, ch syncpoint.Channel, epoch string, seq uint64) syncpoint.SyncPoint {
		return syncpoint.SyncPoint{DeviceID: dev, Channel: ch, Position: syncpoint.Position{Epoch: epoch, Seq: seq}, UpdatedAt: at}
	}
	get := func(dev string) map[syncpoint.Channel]syncpoint.Position {
		t.Helper()
		pts, err := s.SyncPoints(ctx, dev)
		if err != nil {
			t.Fatal(err)
		}
		out := map[syncpoint.Channel]syncpoint.Position{}
		for _, p := range pts {
			if p.DeviceID != dev {
				t.Fatalf("sync point of %s listed for %s", p.DeviceID, dev)
			}
			if _, dup := out[p.Channel]; dup {
				t.Fatalf("two sync points for %s %s", dev, p.Channel)
			}
			out[p.Channel] = p.Position
		}
		return out
	}
	save := func(points ...syncpoint.SyncPoint) {
		t.Helper()
		if err := s.SaveSyncPoints(ctx, points); err != nil {
			t.Fatal(err)
		}
	}
	if got := get("d1"); len(got) != 0 {
		t.Fatalf("unknown device has sync points %v", got)
	}
	save(sp("d1", chatU1, "e1", 5), sp("d1", cfgAll, "c1", 2), sp("d2", chatU1, "e1", 1))
	want := map[syncpoint.Channel]syncpoint.Position{chatU1: {Epoch: "e1", Seq: 5}, cfgAll: {Epoch: "c1", Seq: 2}}
	if got := get("d1"); !mapsEqual(got, want) {
		t.Fatalf("d1: %v, want %v", got, want)
	}
	save(sp("d1", chatU1, "e1", 3)) // backwards in the same epoch: ignored
	save(sp("d1", cfgAll, "c1", 7))
	want[cfgAll] = syncpoint.Position{Epoch: "c1", Seq: 7}
	if got := get("d1"); !mapsEqual(got, want) {
		t.Fatalf("after a backward save: %v, want %v", got, want)
	}
	save(sp("d1", chatU1, "e2", 1)) // a new epoch replaces, even lower
	want[chatU1] = syncpoint.Position{Epoch: "e2", Seq: 1}
	if got := get("d1"); !mapsEqual(got, want) {
		t.Fatalf("after an epoch change: %v, want %v", got, want)
	}
	save(sp("d1", chatU2, "x", 4), sp("d1", chatU2, "x", 2)) // in one call too
	want[chatU2] = syncpoint.Position{Epoch: "x", Seq: 4}
	if got := get("d1"); !mapsEqual(got, want) {
		t.Fatalf("after one call: %v, want %v", got, want)
	}
	if got := get("d2"); !mapsEqual(got, map[syncpoint.Channel]syncpoint.Position{chatU1: {Epoch: "e1", Seq: 1}}) {
		t.Fatalf("d2: %v", got)
	}
	pts, _ := s.SyncPoints(ctx, "d2")
	if !pts[0].UpdatedAt.Equal(at) {
		t.Fatalf("updated_at %v, want %v", pts[0].UpdatedAt, at)
	}
	// Concurrent saves of one point end at the highest.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{sp("d3", chatU1, "e", uint64(i+1))}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := get("d3")[chatU1]; got.Seq != 20 {
		t.Fatalf("after concurrent saves: %v, want seq 20", got)
	}
}

func testUserPositions(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	payU1 := syncpoint.Channel{Biz: "pay", Target: syncpoint.UserTarget("u1")}
	up := func(user string, ch syncpoint.Channel, epoch string, seq uint64) syncpoint.UserPosition {
		return syncpoint.UserPosition{UserID: user, Channel: ch, Position: syncpoint.Position{Epoch: epoch, Seq: seq}}
	}
	get := func(user string) map[syncpoint.Channel]syncpoint.Position {
		t.Helper()
		ps, err := s.UserPositions(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		out := map[syncpoint.Channel]syncpoint.Position{}
		for _, p := range ps {
			if p.UserID != user || p.UpdatedAt.IsZero() {
				t.Fatalf("user %s: position %+v", user, p)
			}
			out[p.Channel] = p.Position
		}
		return out
	}
	if got := get("u1"); len(got) != 0 {
		t.Fatalf("unknown user has positions %v", got)
	}
	save := func(ps ...syncpoint.UserPosition) {
		t.Helper()
		if err := s.SaveUserPositions(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	save(up("u1", payU1, "e1", 4), up("u1", chatU1, "c1", 2), up("u2", chatU2, "c2", 9))
	save(up("u1", payU1, "e1", 3)) // backwards in the same epoch: ignored
	want := map[syncpoint.Channel]syncpoint.Position{payU1: {Epoch: "e1", Seq: 4}, chatU1: {Epoch: "c1", Seq: 2}}
	if got := get("u1"); !mapsEqual(got, want) {
		t.Fatalf("u1: %v, want %v", got, want)
	}
	save(up("u1", payU1, "e2", 1)) // a new epoch replaces, even lower
	want[payU1] = syncpoint.Position{Epoch: "e2", Seq: 1}
	if got := get("u1"); !mapsEqual(got, want) {
		t.Fatalf("u1 after an epoch change: %v, want %v", got, want)
	}
	if got := get("u2"); !mapsEqual(got, map[syncpoint.Channel]syncpoint.Position{chatU2: {Epoch: "c2", Seq: 9}}) {
		t.Fatalf("u2: %v", got)
	}
	err := s.SaveUserPositions(ctx, []syncpoint.UserPosition{up("u1", chatU1, "c1", 5), up("bad user", chatU1, "c1", 5)})
	if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
		t.Fatalf("a bad user id: %v (code %q), want %q", err, c, syncpoint.CodeInvalid)
	}
	if got := get("u1")[chatU1]; got.Seq != 2 {
		t.Fatalf("a refused call saved %v", got)
	}
}

func testCursors(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	notesLog := syncpoint.Channel{Biz: "syncpoint-uploads", Target: syncpoint.GroupTarget("notes")}
	teamLog := syncpoint.Channel{Biz: "syncpoint-uploads", Target: syncpoint.GroupTarget("team")}
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := func(reader string, ch syncpoint.Channel, epoch string, seq uint64) syncpoint.Cursor {
		return syncpoint.Cursor{Reader: reader, Channel: ch, Position: syncpoint.Position{Epoch: epoch, Seq: seq}, UpdatedAt: at}
	}
	list := func(reader string) []syncpoint.Cursor {
		t.Helper()
		cs, err := s.Cursors(ctx, reader)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	if cs := list("notifier"); len(cs) != 0 {
		t.Fatalf("unknown reader has cursors %v", cs)
	}
	for _, c := range []syncpoint.Cursor{cur("notifier", teamLog, "t", 3), cur("notifier", notesLog, "n", 8), cur("other", notesLog, "n", 1)} {
		if err := s.SaveCursor(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	byChannel := func(reader string) map[syncpoint.Channel]syncpoint.Position {
		t.Helper()
		out := map[syncpoint.Channel]syncpoint.Position{}
		for _, c := range list(reader) {
			if c.Reader != reader || !c.UpdatedAt.Equal(at) {
				t.Fatalf("cursor %+v listed for %s", c, reader)
			}
			out[c.Channel] = c.Position
		}
		return out
	}
	want := map[syncpoint.Channel]syncpoint.Position{notesLog: {Epoch: "n", Seq: 8}, teamLog: {Epoch: "t", Seq: 3}}
	if got := byChannel("notifier"); !mapsEqual(got, want) {
		t.Fatalf("cursors %v, want %v", got, want)
	}
	// A cursor moves back when told: a reader starts a new epoch over.
	if err := s.SaveCursor(ctx, cur("notifier", notesLog, "n2", 0)); err != nil {
		t.Fatal(err)
	}
	want[notesLog] = syncpoint.Position{Epoch: "n2"}
	if got := byChannel("notifier"); !mapsEqual(got, want) {
		t.Fatalf("cursors after moving back: %v, want %v", got, want)
	}
	if cs := list("other"); len(cs) != 1 || cs[0].Position.Seq != 1 {
		t.Fatalf("another reader's cursors: %+v", cs)
	}
	if c := syncpoint.Code(s.SaveCursor(ctx, cur("", notesLog, "n", 1))); c != syncpoint.CodeInvalid {
		t.Fatalf("a cursor without a reader: code %q, want %q", c, syncpoint.CodeInvalid)
	}
}

// testDeviceNamedLikeAUser: device ids may hold ':', so a device may be
// called "user:u1" or "syncpoint-uploads". Its sync points, a user's
// positions and a reader's cursors never meet.
func testDeviceNamedLikeAUser(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	notice := syncpoint.Channel{Biz: "syncpoint-uploads", Target: syncpoint.GroupTarget("notes")}
	if err := s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{
		{DeviceID: "user:u1", Channel: chatU1, Position: syncpoint.Position{Epoch: "device", Seq: 7}},
		{DeviceID: "syncpoint-uploads", Channel: chatU1, Position: syncpoint.Position{Epoch: "device", Seq: 8}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveUserPositions(ctx, []syncpoint.UserPosition{{UserID: "u1", Channel: chatU1, Position: syncpoint.Position{Epoch: "user", Seq: 3}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCursor(ctx, syncpoint.Cursor{Reader: "syncpoint-uploads", Channel: notice, Position: syncpoint.Position{Epoch: "reader", Seq: 5}}); err != nil {
		t.Fatal(err)
	}
	pts, err := s.SyncPoints(ctx, "user:u1")
	if err != nil || len(pts) != 1 || pts[0].Position != (syncpoint.Position{Epoch: "device", Seq: 7}) {
		t.Fatalf("the device user:u1 has sync points %+v %v, want only its own", pts, err)
	}
	ups, err := s.UserPositions(ctx, "u1")
	if err != nil || len(ups) != 1 || ups[0].Position != (syncpoint.Position{Epoch: "user", Seq: 3}) {
		t.Fatalf("user u1 has positions %+v %v, want only the user's", ups, err)
	}
	pts, err = s.SyncPoints(ctx, "syncpoint-uploads")
	if err != nil || len(pts) != 1 || pts[0].Channel != chatU1 {
		t.Fatalf("the device syncpoint-uploads has sync points %+v %v, want only its own", pts, err)
	}
	cs, err := s.Cursors(ctx, "syncpoint-uploads")
	if err != nil || len(cs) != 1 || cs[0].Position.Epoch != "reader" {
		t.Fatalf("the reader syncpoint-uploads has cursors %+v %v, want only its own", cs, err)
	}
	if ups, _ := s.UserPositions(ctx, "user:u1"); len(ups) != 0 {
		t.Fatalf("a user named like the device has positions %+v", ups)
	}
}

func mapsEqual[K comparable, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func testDevices(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	base := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dev := func(id, user string, seen time.Duration) syncpoint.Device {
		return syncpoint.Device{ID: id, UserID: user, Platform: "ios", AppVersion: "1.0.0", LastSeen: base.Add(seen)}
	}
	save := func(d syncpoint.Device) {
		t.Helper()
		if err := s.SaveDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	list := func(user string) []string {
		t.Helper()
		ds, err := s.UserDevices(ctx, user)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{}
		for _, d := range ds {
			if d.UserID != user {
				t.Fatalf("device %s of %s listed for %s", d.ID, d.UserID, user)
			}
			ids = append(ids, d.ID)
		}
		return ids
	}
	_, err := s.Device(ctx, "d1")
	wantErr(t, "unknown device", err, syncpoint.ErrNotFound)
	if got := list("u1"); len(got) != 0 {
		t.Fatalf("unknown user has devices %v", got)
	}
	save(dev("d1", "u1", 0))
	save(dev("d2", "u1", time.Minute))
	save(dev("d3", "u1", -time.Minute))
	save(dev("d4", "u2", 0))
	got, err := s.Device(ctx, "d2")
	if err != nil || got.ID != "d2" || got.UserID != "u1" || got.Platform != "ios" || got.AppVersion != "1.0.0" || !got.LastSeen.Equal(base.Add(time.Minute)) {
		t.Fatalf("Device d2: %+v %v", got, err)
	}
	if ids := list("u1"); !slices.Equal(ids, []string{"d2", "d1", "d3"}) {
		t.Fatalf("u1's devices %v, want most recently seen first: d2 d1 d3", ids)
	}
	save(dev("d3", "u1", 2*time.Minute)) // seen again
	if ids := list("u1"); !slices.Equal(ids, []string{"d3", "d2", "d1"}) {
		t.Fatalf("after d3 was seen: %v, want d3 d2 d1", ids)
	}
	save(dev("d1", "u2", 3*time.Minute)) // moved to another user
	if ids := list("u1"); !slices.Equal(ids, []string{"d3", "d2"}) {
		t.Fatalf("u1 after d1 moved: %v", ids)
	}
	if ids := list("u2"); !slices.Equal(ids, []string{"d1", "d4"}) {
		t.Fatalf("u2 after d1 moved: %v", ids)
	}
	d := dev("d4", "u2", 0)
	d.AppVersion = "2.0.0"
	save(d)
	if got, _ := s.Device(ctx, "d4"); got.AppVersion != "2.0.0" {
		t.Fatalf("replace: app version %q", got.AppVersion)
	}
	if ids := list("u2"); !slices.Equal(ids, []string{"d1", "d4"}) {
		t.Fatalf("u2 after a replace: %v", ids)
	}
}

func testBizzes(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	names := func() []string {
		t.Helper()
		bs, err := s.Bizzes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, b := range bs {
			out = append(out, b.Name)
		}
		return out
	}
	if got := names(); len(got) != 0 {
		t.Fatalf("empty store has bizzes %v", got)
	}
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	chat.MaxBacklog, chat.Compact, chat.Retention = 100, true, syncpoint.Duration(time.Hour)
	for _, b := range []syncpoint.Biz{syncpoint.NewBiz("posts", syncpoint.TargetGroup), chat, syncpoint.NewBiz("config", syncpoint.TargetGlobal)} {
		if err := s.SaveBiz(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if got := names(); !slices.Equal(got, []string{"chat", "config", "posts"}) {
		t.Fatalf("bizzes %v, want by name", got)
	}
	chat.Writable, chat.Conflict = true, syncpoint.ConflictMerge
	if err := s.SaveBiz(ctx, chat); err != nil {
		t.Fatal(err)
	}
	bs, _ := s.Bizzes(ctx)
	if bs[0] != chat {
		t.Fatalf("replaced biz: %+v, want %+v", bs[0], chat)
	}
	if err := s.DeleteBiz(ctx, "config"); err != nil {
		t.Fatal(err)
	}
	if got := names(); !slices.Equal(got, []string{"chat", "posts"}) {
		t.Fatalf("after delete: %v", got)
	}
	wantErr(t, "delete of an unknown biz", s.DeleteBiz(ctx, "config"), syncpoint.ErrNotFound)
}

// testDeleteBizDropsChannels deletes a biz and creates it again: its
// channels start over in new epochs, so a device at, behind or ahead of
// the old history is told reset, and none of the old entries comes back.
func testDeleteBizDropsChannels(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	for _, b := range []syncpoint.Biz{syncpoint.NewBiz("chat", syncpoint.TargetUser), syncpoint.NewBiz("records", syncpoint.TargetGroup)} {
		if err := s.SaveBiz(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	old := mustAppend(t, s, idem(put(chatU1, "k", `1`), "i"), msg(chatU1, `2`), msg(chatU1, `3`), msg(chatU2, `1`), msg(recsG1, `kept`))
	oldEpoch := old[0].Epoch
	if err := s.DeleteBiz(ctx, "chat"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []syncpoint.Channel{chatU1, chatU2} {
		_, err := s.Channel(ctx, ch)
		wantErr(t, "Channel of a deleted biz", err, syncpoint.ErrNotFound)
		if p := mustRead(t, s, ch, 0, 0, time.Now()); len(p.Entries) != 0 || p.Info.Epoch != "" {
			t.Fatalf("read of %s after its biz was deleted: %+v", ch, p)
		}
	}
	_, err := s.KeyEntry(ctx, chatU1, "k")
	wantErr(t, "KeyEntry of a deleted biz", err, syncpoint.ErrNotFound)
	_, err = s.Entry(ctx, chatU1, 2)
	wantErr(t, "Entry of a deleted biz", err, syncpoint.ErrNotFound)
	if p := mustRead(t, s, recsG1, 0, 0, time.Now()); len(p.Entries) != 1 {
		t.Fatalf("another biz lost its entries: %+v", p)
	}

	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, s, idem(put(chatU1, "k", `new`), "i"))[0]
	if res.Duplicate || res.Seq != 1 || res.Epoch == "" || res.Epoch == oldEpoch {
		t.Fatalf("first append to the new biz: %+v, want seq 1 in a new epoch (not %s), not a duplicate", res, oldEpoch)
	}
	info := mustInfo(t, s, chatU1)
	for _, seq := range []uint64{0, 1, 2, 3, 4} {
		st, _ := info.Check(syncpoint.Position{Epoch: oldEpoch, Seq: seq})
		if want := syncpoint.StatusReset; seq > 0 && st != want {
			t.Fatalf("a device at seq %d of the old biz is told %s, want %s", seq, st, want)
		}
	}
	if p := mustRead(t, s, chatU1, 0, 0, time.Now()); len(p.Entries) != 1 || string(p.Entries[0].Data) != `new` {
		t.Fatalf("the new biz reads %+v, want only its own entry", p.Entries)
	}
	if r := mustAppend(t, s, cond(put(chatU1, "k", `newer`), 1))[0]; r.Err != nil || r.Seq != 2 {
		t.Fatalf("the key index of the new biz: %+v", r)
	}
	if _, err := s.Channel(ctx, chatU2); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("a channel of the old biz came back: %v", err)
	}
	wantErr(t, "DeleteBiz of an unknown biz", s.DeleteBiz(ctx, "nope"), syncpoint.ErrNotFound)
}

// testNewBizDropsLeftovers creates a biz under a name whose channels are
// still stored without a biz (left by a store that kept them on delete):
// they are dropped, while saving an existing biz again keeps its channels.
func testNewBizDropsLeftovers(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	mustAppend(t, s, msg(chatU1, `left`), msg(recsG1, `1`))
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); err != nil {
		t.Fatal(err)
	}
	_, err := s.Channel(ctx, chatU1)
	wantErr(t, "a leftover channel of a new biz", err, syncpoint.ErrNotFound)
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("records", syncpoint.TargetGroup)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, msg(recsG1, `2`), msg(chatU1, `mine`))
	b := syncpoint.NewBiz("records", syncpoint.TargetGroup)
	b.MaxBacklog = 10
	if err := s.SaveBiz(ctx, b); err != nil { // an update, not a creation
		t.Fatal(err)
	}
	if err := s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)); err != nil {
		t.Fatal(err)
	}
	wantInfo(t, mustInfo(t, s, recsG1), 1, 1)
	wantInfo(t, mustInfo(t, s, chatU1), 1, 1)
}

func testBlobs(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	_, err := s.Blob(ctx, "a")
	wantErr(t, "unknown blob", err, syncpoint.ErrNotFound)
	later := hourFromNow()
	if err := s.PutBlob(ctx, "a", []byte("one"), later); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "b", []byte("two"), later.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Blob(ctx, "a"); err != nil || string(v) != "one" {
		t.Fatalf("blob a: %q %v", v, err)
	}
	if err := s.PutBlob(ctx, "a", []byte("uno"), later); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Blob(ctx, "a"); err != nil || string(v) != "uno" {
		t.Fatalf("replaced blob a: %q %v", v, err)
	}
	if err := s.PutBlob(ctx, "gone", []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Blob(ctx, "gone")
	wantErr(t, "expired blob", err, syncpoint.ErrNotFound)
	mustSweep(t, s, later)
	_, err = s.Blob(ctx, "a")
	wantErr(t, "swept blob", err, syncpoint.ErrNotFound)
	if v, err := s.Blob(ctx, "b"); err != nil || string(v) != "two" {
		t.Fatalf("blob b after sweeping a: %q %v", v, err)
	}
	// A blob replaced with a later expiry survives a sweep of the earlier one.
	if err := s.PutBlob(ctx, "c", []byte("1"), later); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBlob(ctx, "c", []byte("2"), later.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustSweep(t, s, later.Add(time.Minute))
	if v, err := s.Blob(ctx, "c"); err != nil || string(v) != "2" {
		t.Fatalf("blob c after a sweep of its old expiry: %q %v", v, err)
	}
}

// testInvalidArguments checks the CodeInvalid errors the Store docs list,
// and that a refused call saves nothing.
func testInvalidArguments(t *testing.T, s syncpoint.Store) {
	ctx := context.Background()
	badChannel := syncpoint.Channel{Biz: "Chat!", Target: syncpoint.UserTarget("u1")}
	for name, err := range map[string]error{
		"SaveSyncPoints with a bad device id": s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{
			{DeviceID: "d1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 1}},
			{DeviceID: "bad id", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 1}},
		}),
		"SaveSyncPoints with a bad channel": s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{{DeviceID: "d1", Channel: badChannel}}),
		"SaveDevice with a bad id":          s.SaveDevice(ctx, syncpoint.Device{ID: "", UserID: "u1"}),
		"SaveDevice with a bad user id":     s.SaveDevice(ctx, syncpoint.Device{ID: "d1", UserID: "u 1"}),
		"SaveBiz with a bad name":           s.SaveBiz(ctx, syncpoint.NewBiz("Bad Name", syncpoint.TargetUser)),
		"PutBlob with an empty key":         s.PutBlob(ctx, "", []byte("v"), time.Time{}),
		"Read of a bad channel": func() error {
			_, err := s.Read(ctx, badChannel, 0, 10, time.Now())
			return err
		}(),
	} {
		if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
			t.Errorf("%s: error %v has code %q, want %q", name, err, c, syncpoint.CodeInvalid)
		}
	}
	if pts, err := s.SyncPoints(ctx, "d1"); err != nil || len(pts) != 0 {
		t.Fatalf("a refused SaveSyncPoints saved %v (%v)", pts, err)
	}
	if _, err := s.Device(ctx, "d1"); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("a refused SaveDevice saved: %v", err)
	}
	if bs, err := s.Bizzes(ctx); err != nil || len(bs) != 0 {
		t.Fatalf("Bizzes after a refused SaveBiz: %v %v", bs, err)
	}
	// Lookups of ids that cannot exist find nothing, without an error.
	if pts, err := s.SyncPoints(ctx, strings.Repeat("x", 1000)); err != nil || len(pts) != 0 {
		t.Fatalf("SyncPoints of an impossible id: %v %v", pts, err)
	}
	if ds, err := s.UserDevices(ctx, strings.Repeat("x", 1000)); err != nil || len(ds) != 0 {
		t.Fatalf("UserDevices of an impossible id: %v %v", ds, err)
	}
}

func testCancelledContext(t *testing.T, s syncpoint.Store) {
	mustAppend(t, s, msg(chatU2, `{}`))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for name, fn := range map[string]func() error{
		"Append": func() error { _, err := s.Append(ctx, []syncpoint.AppendRequest{msg(chatU1, `{}`)}); return err },
		"Read":   func() error { _, err := s.Read(ctx, chatU2, 0, 10, time.Now()); return err },
		"Channel": func() error {
			_, err := s.Channel(ctx, chatU2)
			return err
		},
		"Entry":          func() error { _, err := s.Entry(ctx, chatU2, 1); return err },
		"KeyEntry":       func() error { _, err := s.KeyEntry(ctx, chatU2, "k"); return err },
		"ResetChannel":   func() error { _, err := s.ResetChannel(ctx, chatU2); return err },
		"Sweep":          func() error { _, err := s.Sweep(ctx, time.Now()); return err },
		"SaveSyncPoints": func() error { return s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{{DeviceID: "d1", Channel: chatU1}}) },
		"SyncPoints":     func() error { _, err := s.SyncPoints(ctx, "d1"); return err },
		"SaveUserPositions": func() error {
			return s.SaveUserPositions(ctx, []syncpoint.UserPosition{{UserID: "u1", Channel: chatU1}})
		},
		"UserPositions": func() error { _, err := s.UserPositions(ctx, "u1"); return err },
		"SaveCursor":    func() error { return s.SaveCursor(ctx, syncpoint.Cursor{Reader: "r", Channel: chatU1}) },
		"Cursors":       func() error { _, err := s.Cursors(ctx, "r"); return err },
		"SaveDevice":    func() error { return s.SaveDevice(ctx, syncpoint.Device{ID: "d1", UserID: "u1"}) },
		"Device":        func() error { _, err := s.Device(ctx, "d1"); return err },
		"UserDevices":   func() error { _, err := s.UserDevices(ctx, "u1"); return err },
		"SaveBiz":       func() error { return s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)) },
		"DeleteBiz":     func() error { return s.DeleteBiz(ctx, "chat") },
		"Bizzes":        func() error { _, err := s.Bizzes(ctx); return err },
		"PutBlob":       func() error { return s.PutBlob(ctx, "k", []byte("v"), time.Time{}) },
		"Blob":          func() error { _, err := s.Blob(ctx, "k"); return err },
		"Health":        func() error { return s.Health(ctx) },
	} {
		wantErr(t, name+" with a cancelled context", fn(), context.Canceled)
	}
	_, err := s.Channel(context.Background(), chatU1)
	wantErr(t, "a cancelled Append appended", err, syncpoint.ErrNotFound)
	if _, err := s.Device(context.Background(), "d1"); !errors.Is(err, syncpoint.ErrNotFound) {
		t.Fatalf("a cancelled SaveDevice saved: %v", err)
	}
}

func testClosed(t *testing.T, s syncpoint.Store) {
	mustAppend(t, s, msg(chatU1, `{}`))
	if err := s.Health(context.Background()); err != nil {
		t.Fatalf("health of an open store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_, err := s.Append(ctx, []syncpoint.AppendRequest{msg(chatU1, `{}`)})
	wantErr(t, "Append after Close", err, syncpoint.ErrClosed)
	_, err = s.Read(ctx, chatU1, 0, 10, time.Now())
	wantErr(t, "Read after Close", err, syncpoint.ErrClosed)
	wantErr(t, "SaveBiz after Close", s.SaveBiz(ctx, syncpoint.NewBiz("chat", syncpoint.TargetUser)), syncpoint.ErrClosed)
	_, err = s.Blob(ctx, "k")
	wantErr(t, "Blob after Close", err, syncpoint.ErrClosed)
	wantErr(t, "SaveSyncPoints after Close", s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{{DeviceID: "d1", Channel: chatU1}}), syncpoint.ErrClosed)
	wantErr(t, "SaveDevice after Close", s.SaveDevice(ctx, syncpoint.Device{ID: "d1", UserID: "u1"}), syncpoint.ErrClosed)
	_, err = s.Bizzes(ctx)
	wantErr(t, "Bizzes after Close", err, syncpoint.ErrClosed)
	_, err = s.Sweep(ctx, time.Now())
	wantErr(t, "Sweep after Close", err, syncpoint.ErrClosed)
	wantErr(t, "Health after Close", s.Health(ctx), syncpoint.ErrClosed)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
