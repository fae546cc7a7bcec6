package records_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/syncpoint/syncpoint/records"
	"github.com/syncpoint/syncpoint/wire"
)

// receiver is a notify webhook that fails while failing is set.
type receiver struct {
	mu       sync.Mutex
	failing  bool
	failures int
	batches  [][]records.Notice
}

func (rc *receiver) serve(t testing.TB) string {
	return hookServer(t, "hook-secret", func(w http.ResponseWriter, r *http.Request, body []byte) {
		var b struct {
			Biz     string           `json:"biz"`
			Notices []records.Notice `json:"notices"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.Biz != "told" || len(b.Notices) == 0 {
			t.Errorf("notify body %s: %v", body, err)
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if rc.failing {
			rc.failures++
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		rc.batches = append(rc.batches, b.Notices)
	}).URL
}

func (rc *receiver) set(failing bool) {
	rc.mu.Lock()
	rc.failing = failing
	rc.mu.Unlock()
}

// notices returns every notice received, in order, duplicates included.
func (rc *receiver) notices() []records.Notice {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []records.Notice
	for _, b := range rc.batches {
		out = append(out, b...)
	}
	return out
}

// waitNotices polls until n distinct changes were told, and returns the
// notices deduplicated by (channel, seq) as a receiver must.
func (rc *receiver) waitNotices(t *testing.T, n int) []records.Notice {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var out []records.Notice
		seen := map[string]bool{}
		for _, nt := range rc.notices() {
			k := fmt.Sprint(nt.Channel, "#", nt.Seq)
			if !seen[k] {
				seen[k] = true
				out = append(out, nt)
			}
		}
		if len(out) >= n {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d notices, want %d", len(out), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotify(t *testing.T) {
	e := MustOpenEnv(t, func(c *records.Config) { c.NotifyBatch = 2 })
	rc := &receiver{failing: true}
	e.putBiz(hookedBiz("told", "", rc.serve(t)))
	d := e.connect("u1", "d1", nil)

	// Five changes while the receiver is down.
	a, b := newID(), newID()
	mustSaved(t, d.write(changes("told", "", []wire.Record{rec(a, 0, `{"v":1}`), rec(b, 0, `{"v":1}`)}, nil, nil)), a, b)
	mustSaved(t, d.write(changes("told", "", nil, []wire.Record{rec(a, 1, `{"v":2}`)}, []wire.Record{rec(b, 2, "")})), a, b)
	c := newID()
	w := changes("told", "", []wire.Record{rec(c, 0, `{"v":1}`)}, nil, nil)
	mustSaved(t, d.write(w), c)
	mustSaved(t, d.write(w), c) // a resend is told once
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		f := rc.failures
		rc.mu.Unlock()
		if f >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the notifier did not retry")
		}
		time.Sleep(5 * time.Millisecond)
	}
	rc.set(false)
	got := rc.waitNotices(t, 5)
	want := []struct {
		id, change, op string
		seq            uint64
	}{{a, "create", "put", 1}, {b, "create", "put", 2}, {a, "update", "put", 3}, {b, "delete", "delete", 4}, {c, "create", "put", 5}}
	if len(got) != len(want) {
		t.Fatalf("got %d notices: %s", len(got), dump(got))
	}
	for i, wn := range want {
		n := got[i]
		if n.ID != wn.id || n.Change != wn.change || n.Op != wn.op || n.Seq != wn.seq || n.Channel != "told/user:u1" || n.DeviceID != "d1" || n.UserID != "u1" || n.WriteID == "" {
			t.Fatalf("notice %d = %s, want %+v", i, dump(n), wn)
		}
	}
	if !jsonEq(got[2].Data, `{"v":2}`) || got[3].Data != nil {
		t.Fatalf("notice data: %s", dump(got))
	}
	for i := 1; i < len(rc.notices()); i++ {
		if all := rc.notices(); all[i].Seq < all[i-1].Seq {
			t.Fatalf("notices out of order: %s", dump(all))
		}
	}

	// Wait until delivery is recorded, then stop; changes made while the
	// receiver is down again are told after a restart, and only they.
	waitCursor(t, e, 5)
	rc.set(true)
	x := newID()
	mustSaved(t, d.write(changes("told", "", []wire.Record{rec(x, 0, `{"v":1}`)}, nil, nil)), x)
	e.restart()
	before := len(rc.notices())
	rc.set(false)
	rc.waitNotices(t, 6)
	if after := rc.notices()[before:]; len(after) != 1 || after[0].ID != x || after[0].Seq != 6 {
		t.Fatalf("after the restart the receiver got %s", dump(after))
	}
}

// waitCursor polls until the notifier has stored seq as its position.
func waitCursor(t *testing.T, e *env, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		points, err := e.store.Cursors(context.Background(), records.NoticeBiz)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range points {
			if p.Position.Seq >= seq {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("notice cursor did not reach %d: %v", seq, points)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
