package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint"
)

func mustKeys(tb testing.TB, s syncpoint.Store, ch syncpoint.Channel, after string, limit int, now time.Time) syncpoint.KeyPage {
	tb.Helper()
	p, err := s.Keys(context.Background(), ch, after, limit, now)
	if err != nil {
		tb.Fatalf("keys of %s after %q: %v", ch, after, err)
	}
	return p
}

// keySeqs renders a page's keys as "key@seq" for messages and comparisons.
func keySeqs(p syncpoint.KeyPage) []string {
	out := []string{}
	for _, k := range p.Keys {
		out = append(out, fmt.Sprintf("%s@%d", k.Key, k.Seq))
	}
	return out
}

func wantKeys(tb testing.TB, what string, p syncpoint.KeyPage, more bool, want ...string) {
	tb.Helper()
	if got := keySeqs(p); !slices.Equal(got, want) || p.More != more {
		tb.Fatalf("%s: keys %v more=%v, want %v more=%v", what, got, p.More, want, more)
	}
}

// testKeysPaging lists keys in pages, in byte order, resuming after the
// last key of a page or after any string at all.
func testKeysPaging(t *testing.T, s syncpoint.Store) {
	var reqs []syncpoint.AppendRequest
	for i := range 25 {
		reqs = append(reqs, pol(put(recsG1, fmt.Sprintf("k%02d", i), `1`), compact))
	}
	mustAppend(t, s, reqs...)
	now := time.Now()
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		p := mustKeys(t, s, recsG1, after, 10, now)
		if len(p.Keys) > 10 || pages > 3 {
			t.Fatalf("page %d has %d keys with a limit of 10", pages, len(p.Keys))
		}
		got = append(got, keySeqs(p)...)
		if !p.More {
			break
		}
		after = p.Keys[len(p.Keys)-1].Key
	}
	var want []string
	for i := range 25 {
		want = append(want, fmt.Sprintf("k%02d@%d", i, i+1))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged keys %v, want %v", got, want)
	}
	wantKeys(t, "after a string between keys", mustKeys(t, s, recsG1, "k21x", 10, now), false, "k22@23", "k23@24", "k24@25")
	wantKeys(t, "after the last key", mustKeys(t, s, recsG1, "k24", 10, now), false)
	p := mustKeys(t, s, recsG1, "", 0, now)
	if len(p.Keys) == 0 || p.Info.LastSeq != 25 || p.Info.Epoch == "" || p.Info.Channel != recsG1 {
		t.Fatalf("a default limit lists %d keys with info %+v", len(p.Keys), p.Info)
	}

	// Keys compare by their bytes, as Go strings do.
	mustAppend(t, s, pol(put(cfgAll, "é", `1`), compact), pol(put(cfgAll, "a", `1`), compact), pol(put(cfgAll, "B", `1`), compact), pol(put(cfgAll, "ab", `1`), compact))
	wantKeys(t, "byte order", mustKeys(t, s, cfgAll, "", 10, now), false, "B@3", "a@2", "ab@4", "é@1")
}

// testKeysLive lists only keys whose newest entry is a put that has not
// expired, with that put's seq.
func testKeysLive(t *testing.T, s syncpoint.Store) {
	t1 := hourFromNow()
	created := time.Now()
	at := func(r syncpoint.AppendRequest) syncpoint.AppendRequest {
		r.Entry.CreatedAt = created
		return pol(r, compact)
	}
	mustAppend(t, s,
		at(put(recsG1, "a", `1`)),                    // 1
		at(put(recsG1, "b", `1`)),                    // 2
		at(msg(recsG1, `m`)),                         // 3
		at(expiring(put(recsG1, "c", `1`), t1)),      // 4
		at(put(recsG1, "a", `2`)),                    // 5: a moves to 5
		at(del(recsG1, "b")),                         // 6: b is a tombstone
		at(put(recsG1, "d", `1`)),                    // 7
		at(expiring(put(recsG1, "d", `2`), t1)),      // 8: d's newest expires
		at(expiring(put(recsG1, "e", `1`), t1)),      // 9
		at(put(recsG1, "e", `2`)),                    // 10: e's newest does not
		at(expiring(del(recsG1, "f"), t1)),           // 11: a delete alone
		at(expiring(put(recsG1, "g", `1`), created)), // 12: expired already
	)
	now := created.Add(time.Second)
	wantKeys(t, "before expiry", mustKeys(t, s, recsG1, "", 100, now), false, "a@5", "c@4", "d@8", "e@10")
	wantKeys(t, "at expiry", mustKeys(t, s, recsG1, "", 100, t1), false, "a@5", "e@10")
	// A page of the given limit is filled from live keys.
	wantKeys(t, "limit 1 past dead keys", mustKeys(t, s, recsG1, "a", 1, t1), false, "e@10")
	wantKeys(t, "limit 1", mustKeys(t, s, recsG1, "", 1, t1), true, "a@5")
	// The sweep of expired entries and tombstones changes nothing listed.
	mustSweep(t, s, created.Add(2*time.Hour))
	wantKeys(t, "after the sweep", mustKeys(t, s, recsG1, "", 100, created.Add(2*time.Hour)), false, "a@5", "e@10")

	// Without compaction a key's older puts stay, but only its newest
	// entry decides.
	mustAppend(t, s,
		put(chatU1, "x", `1`),               // 1
		del(chatU1, "x"),                    // 2
		put(chatU1, "y", `1`),               // 3
		expiring(put(chatU1, "y", `2`), t1), // 4
		put(chatU1, "z", `1`),               // 5
		put(chatU1, "z", `2`),               // 6
	)
	wantKeys(t, "without compaction", mustKeys(t, s, chatU1, "", 100, now), false, "y@4", "z@6")
	wantKeys(t, "without compaction, at expiry", mustKeys(t, s, chatU1, "", 100, t1), false, "z@6")
}

// testKeysTrimmedAndReset leaves out keys whose entries were trimmed, and
// lists nothing of a channel's old epoch after a reset.
func testKeysTrimmedAndReset(t *testing.T, s syncpoint.Store) {
	capped := syncpoint.Policy{MaxBacklog: 3, Compact: true, Retention: time.Hour}
	mustAppend(t, s, pol(put(chatU2, "old", `1`), capped), pol(put(chatU2, "k", `1`), capped), pol(msg(chatU2, `2`), capped), pol(put(chatU2, "new", `3`), capped))
	p := mustKeys(t, s, chatU2, "", 10, time.Now())
	wantKeys(t, "after trimming", p, false, "k@2", "new@4")
	wantInfo(t, p.Info, 2, 4)

	if _, err := s.ResetChannel(context.Background(), chatU2); err != nil {
		t.Fatal(err)
	}
	p = mustKeys(t, s, chatU2, "", 10, time.Now())
	wantKeys(t, "after a reset", p, false)
	wantInfo(t, p.Info, 1, 0)
	mustAppend(t, s, pol(put(chatU2, "k", `again`), capped))
	wantKeys(t, "in the new epoch", mustKeys(t, s, chatU2, "", 10, time.Now()), false, "k@1")
}

// testKeysArguments covers an unknown channel, a malformed one, and the
// common rules for ctx.
func testKeysArguments(t *testing.T, s syncpoint.Store) {
	p := mustKeys(t, s, chatU1, "", 10, time.Now())
	if len(p.Keys) != 0 || p.More || p.Info.Epoch != "" || p.Info.FirstSeq != 1 || p.Info.LastSeq != 0 || p.Info.Channel != chatU1 {
		t.Fatalf("keys of an unknown channel: %+v", p)
	}
	mustAppend(t, s, msg(chatU1, `1`))
	wantKeys(t, "a channel of messages only", mustKeys(t, s, chatU1, "", 10, time.Now()), false)
	_, err := s.Keys(context.Background(), syncpoint.Channel{Biz: "Bad!", Target: syncpoint.GlobalTarget()}, "", 10, time.Now())
	if c := syncpoint.Code(err); c != syncpoint.CodeInvalid {
		t.Fatalf("keys of a malformed channel: %v (%q), want %q", err, c, syncpoint.CodeInvalid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Keys(ctx, chatU1, "", 10, time.Now())
	wantErr(t, "Keys with a cancelled context", err, context.Canceled)
}
