package client

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/syncpoint/syncpoint/wire"
)

// MustOpenOffline opens a client that is never run, to drive applyPush
// directly; handler receives what the Handler is given.
func MustOpenOffline(tb testing.TB, handler func(*sql.Tx, []Entry) error) *Client {
	tb.Helper()
	c, err := Open(Config{Server: "http://127.0.0.1:1", Token: "t", DeviceID: "d1", Bizzes: []string{"chat"},
		DBPath: filepath.Join(tb.TempDir(), "local.db"), Handler: handler})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func push(ch, epoch string, last uint64, seqs ...uint64) *wire.Push {
	p := &wire.Push{Positions: []wire.Position{{Channel: ch, Epoch: epoch, Seq: last}}}
	for _, s := range seqs {
		p.Entries = append(p.Entries, wire.Entry{Channel: ch, Seq: s, Op: "put", Key: fmt.Sprintf("k%d", s%3), Data: json.RawMessage(fmt.Sprintf(`{"s":%d}`, s))})
	}
	return p
}

func TestApplyPushDropsRepeats(t *testing.T) {
	var got []uint64
	c := MustOpenOffline(t, func(tx *sql.Tx, batch []Entry) error {
		for _, e := range batch {
			got = append(got, e.Seq)
		}
		return nil
	})
	ctx := context.Background()
	epochs := map[string]string{}
	const ch = "chat/user:u1"
	steps := []struct {
		p    *wire.Push
		want []uint64
		pos  uint64
	}{
		{push(ch, "E1", 3, 1, 2, 3), []uint64{1, 2, 3}, 3},
		{push(ch, "E1", 5, 2, 3, 4, 5), []uint64{4, 5}, 5}, // a resend overlapping the position
		{push(ch, "E1", 5, 4, 5), nil, 5},                  // all of it again
		{push(ch, "E1", 9, 6, 6, 7), []uint64{6, 7}, 9},    // a repeat inside one push; 8 and 9 were not for us
		{push(ch, "E1", 8), nil, 9},                        // a position never moves back
	}
	for i, st := range steps {
		got = nil
		res, err := c.applyPush(ctx, st.p, epochs)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !slices.Equal(got, st.want) || res.applied != len(st.want) {
			t.Fatalf("step %d: handler got %v (applied %d), want %v", i, got, res.applied, st.want)
		}
		if p := c.Positions()[ch]; p.Seq != st.pos || p.Epoch != "E1" {
			t.Fatalf("step %d: position %+v, want E1/%d", i, p, st.pos)
		}
	}
	// Live-only entries are never deduplicated or positioned.
	got = nil
	eph := &wire.Push{Entries: []wire.Entry{{Channel: "presence/user:u1", Op: "msg"}, {Channel: "presence/user:u1", Op: "msg"}}}
	if _, err := c.applyPush(ctx, eph, epochs); err != nil || !slices.Equal(got, []uint64{0, 0}) {
		t.Fatalf("ephemeral: got %v, %v", got, err)
	}
	// Another epoch without a reset in between is refused, and nothing changes.
	if _, err := c.applyPush(ctx, push(ch, "E2", 10, 10), epochs); err == nil {
		t.Fatal("a push in another epoch was applied")
	}
	if p := c.Positions()[ch]; p.Seq != 9 {
		t.Fatalf("position after a refused push = %+v", p)
	}
	v, ok, err := c.Get(ctx, ch, "k1")
	if err != nil || !ok || string(v) != `{"s":7}` {
		t.Fatalf("Get(k1) = %s, %v, %v", v, ok, err)
	}
}

func TestHandlerErrorRollsBack(t *testing.T) {
	fail := true
	c := MustOpenOffline(t, func(tx *sql.Tx, batch []Entry) error {
		if _, err := tx.Exec(`CREATE TABLE IF NOT EXISTS app (seq INTEGER)`); err != nil {
			return err
		}
		if fail {
			return fmt.Errorf("app says no")
		}
		return nil
	})
	ctx := context.Background()
	epochs := map[string]string{}
	if _, err := c.applyPush(ctx, push("chat/user:u1", "E1", 2, 1, 2), epochs); err == nil {
		t.Fatal("applyPush ignored the handler's error")
	}
	if p := c.Positions(); len(p) != 0 {
		t.Fatalf("positions after a failed push = %v", p)
	}
	if m, _ := c.List(ctx, "chat/user:u1"); len(m) != 0 {
		t.Fatalf("records after a failed push = %v", m)
	}
	fail = false
	if _, err := c.applyPush(ctx, push("chat/user:u1", "E1", 2, 1, 2), epochs); err != nil {
		t.Fatal(err)
	}
	if p := c.Positions()["chat/user:u1"]; p.Seq != 2 {
		t.Fatalf("position = %+v", p)
	}
}

// FuzzApplyPush feeds arbitrary frames, as a server could send them, to the
// apply step: it must never panic, never move a position back within an
// epoch, and never hand the same (channel, seq) to the app twice.
func FuzzApplyPush(f *testing.F) {
	f.Add([]byte(`{"push":{"entries":[{"channel":"chat/user:u1","seq":1,"op":"put","key":"a","data":{"x":1}}],"positions":[{"channel":"chat/user:u1","epoch":"E","seq":1}]}}`))
	f.Add([]byte(`{"push":{"entries":[{"channel":"c/global","seq":3,"op":"delete","key":"a"},{"channel":"c/global","seq":2,"op":"msg"}],"positions":[{"channel":"c/global","epoch":"E","seq":1}]}}`))
	f.Add([]byte(`{"push":{"entries":[{"channel":"p/user:u1","op":"msg","data":"hi"}]}}`))
	f.Add([]byte(`{"push":{"positions":[{"channel":"chat/user:u1","epoch":"E","seq":18446744073709551615}]}}`))
	f.Add([]byte(`{"push":{"entries":[{"channel":"x","seq":5,"op":"put","data":null},{"channel":"x","seq":5,"op":"put","key":"k"}],"positions":[{"channel":"x","seq":4}]}}`))
	seen := map[string]bool{}
	c := MustOpenOffline(f, func(tx *sql.Tx, batch []Entry) error {
		for _, e := range batch {
			if e.Seq == 0 {
				continue
			}
			k := fmt.Sprintf("%s#%d", e.Channel, e.Seq)
			if seen[k] {
				return fmt.Errorf("%s handed over twice", k)
			}
			seen[k] = true
		}
		return nil
	})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wire.DecodeJSON(b)
		if err != nil || fr.Push == nil {
			return
		}
		if _, err := c.db.Exec(`DELETE FROM syncpoint_positions; DELETE FROM syncpoint_records`); err != nil {
			t.Fatal(err)
		}
		c.mu.Lock()
		clear(c.pos)
		c.mu.Unlock()
		clear(seen)
		epochs := map[string]string{}
		for range 2 {
			before := c.Positions()
			if _, err := c.applyPush(ctx, fr.Push, epochs); err != nil {
				if strings.Contains(err.Error(), "handed over twice") {
					t.Fatal(err)
				}
				continue // refused as a whole: fine
			}
			for ch, p := range c.Positions() {
				if b, ok := before[ch]; ok && b.Epoch == p.Epoch && p.Seq < b.Seq {
					t.Fatalf("%s moved back from %d to %d", ch, b.Seq, p.Seq)
				}
			}
		}
	})
}

// BenchmarkApplyPush measures applying a full push (256 put entries over 4
// channels) in one durable local transaction.
func BenchmarkApplyPush(b *testing.B) {
	c := MustOpenOffline(b, func(*sql.Tx, []Entry) error { return nil })
	ctx := context.Background()
	epochs := map[string]string{}
	chans := []string{"chat/user:u1", "config/global", "inbox/device:d1", "team/group:g1"}
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		p := &wire.Push{}
		for i := range 64 {
			seq++
			for _, ch := range chans {
				p.Entries = append(p.Entries, wire.Entry{Channel: ch, Seq: seq, Op: "put", Key: fmt.Sprintf("k%d", i), Data: json.RawMessage(`{"text":"hello, world","n":12345}`)})
			}
		}
		for _, ch := range chans {
			p.Positions = append(p.Positions, wire.Position{Channel: ch, Epoch: "E", Seq: seq})
		}
		if _, err := c.applyPush(ctx, p, epochs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "entries/s")
}
