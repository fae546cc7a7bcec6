package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/syncpoint/syncpoint"
)

var chatU1 = syncpoint.Channel{Biz: "chat", Target: syncpoint.UserTarget("u1")}

func msgReq(ch syncpoint.Channel, data string) syncpoint.AppendRequest {
	return syncpoint.AppendRequest{Entry: syncpoint.Entry{Channel: ch, Op: syncpoint.OpMsg, Data: []byte(data), Origin: syncpoint.OriginAPI}}
}

func mustAppend(tb testing.TB, s *Store, reqs ...syncpoint.AppendRequest) []syncpoint.AppendResult {
	tb.Helper()
	res, err := s.Append(context.Background(), reqs)
	if err != nil {
		tb.Fatalf("append: %v", err)
	}
	return res
}

func readAll(tb testing.TB, s *Store, ch syncpoint.Channel) (seqs []uint64, data []string) {
	tb.Helper()
	p, err := s.Read(context.Background(), ch, 0, MaxReadLimit, time.Now())
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	for _, e := range p.Entries {
		seqs, data = append(seqs, e.Seq), append(data, string(e.Data))
	}
	return seqs, data
}

// TestUnavailableAndBack takes the database away from a running store
// and gives it back: meanwhile writes, reads and Health fail with
// ErrUnavailable (503 at the API); afterwards the store works again by
// itself, and nothing acknowledged is lost.
func TestUnavailableAndBack(t *testing.T) {
	base := MustCreateSchema(t)
	px := startProxy(t, base)
	s := MustOpenStoreURL(t, px.url(base), Options{RetryTimeout: 300 * time.Millisecond, HealthTimeout: time.Second})
	ctx := context.Background()
	mustAppend(t, s, msgReq(chatU1, `1`))
	if err := s.Health(ctx); err != nil {
		t.Fatalf("health before the outage: %v", err)
	}

	px.stop()
	for i := range 2 { // the second meets an outage already known
		_, err := s.Append(ctx, []syncpoint.AppendRequest{msgReq(chatU1, `lost`)})
		if !errors.Is(err, syncpoint.ErrUnavailable) || syncpoint.Code(err) != syncpoint.CodeUnavailable {
			t.Fatalf("append %d while the database is gone: %v (code %q), want ErrUnavailable", i, err, syncpoint.Code(err))
		}
	}
	for name, err := range map[string]error{
		"Health":         s.Health(ctx),
		"SaveSyncPoints": s.SaveSyncPoints(ctx, []syncpoint.SyncPoint{{DeviceID: "d1", Channel: chatU1, Position: syncpoint.Position{Epoch: "e", Seq: 1}}}),
		"Read": func() error {
			_, err := s.Read(ctx, chatU1, 0, 10, time.Now())
			return err
		}(),
		"ResetChannel": func() error {
			_, err := s.ResetChannel(ctx, chatU1)
			return err
		}(),
	} {
		if !errors.Is(err, syncpoint.ErrUnavailable) {
			t.Errorf("%s while the database is gone: %v, want ErrUnavailable", name, err)
		}
	}

	px.restart()
	res := mustAppend(t, s, msgReq(chatU1, `2`))
	if res[0].Seq != 2 {
		t.Fatalf("first append after the outage: %+v, want seq 2", res[0])
	}
	if err := s.Health(ctx); err != nil {
		t.Fatalf("health after the outage: %v", err)
	}
	if seqs, data := readAll(t, s, chatU1); !slices.Equal(seqs, []uint64{1, 2}) || !slices.Equal(data, []string{"1", "2"}) {
		t.Fatalf("after the outage: seqs %v data %v, want 1 and 2 only", seqs, data)
	}
}

// TestInDoubtCommit loses the answer to an append's COMMIT, once after
// the database committed it and once before the database got it: either
// way the append succeeds, exactly once, under the seq it was given.
func TestInDoubtCommit(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mode    cutMode
		outcome string
	}{
		{"committed", cutAfterCommit, "committed"},
		{"aborted", cutBefore, "aborted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := MustCreateSchema(t)
			px := startProxy(t, base)
			s := MustOpenStoreURL(t, px.url(base), Options{MaxConns: 2})
			var armed atomic.Bool
			s.beforeCommit = func(c *pgx.Conn) {
				if armed.CompareAndSwap(true, false) {
					px.arm(c.PgConn().Conn().LocalAddr().String(), tc.mode)
				}
			}
			mustAppend(t, s, msgReq(chatU1, `1`))
			armed.Store(true)
			res := mustAppend(t, s, msgReq(chatU1, `2`))
			if armed.Load() {
				t.Fatal("the cut was never armed")
			}
			if res[0].Seq != 2 || res[0].Err != nil {
				t.Fatalf("the append whose COMMIT lost its answer: %+v, want seq 2", res[0])
			}
			if n := testutil.ToFloat64(s.metrics.inDoubt.WithLabelValues(tc.outcome)); n != 1 {
				t.Fatalf("commits in doubt found %s: %v, want 1", tc.outcome, n)
			}
			mustAppend(t, s, msgReq(chatU1, `3`))
			if seqs, data := readAll(t, s, chatU1); !slices.Equal(seqs, []uint64{1, 2, 3}) || !slices.Equal(data, []string{"1", "2", "3"}) {
				t.Fatalf("seqs %v data %v, want 1 2 3, each once", seqs, data)
			}
		})
	}
}

// TestInDoubtSweepAndReset loses the answer to a sweep's and a reset's
// COMMIT after they committed: the sweep still counts what it removed,
// and the reset is not done twice.
func TestInDoubtSweepAndReset(t *testing.T) {
	base := MustCreateSchema(t)
	px := startProxy(t, base)
	s := MustOpenStoreURL(t, px.url(base), Options{MaxConns: 2})
	var armed atomic.Bool
	s.beforeCommit = func(c *pgx.Conn) {
		if armed.CompareAndSwap(true, false) {
			px.arm(c.PgConn().Conn().LocalAddr().String(), cutAfterCommit)
		}
	}
	ctx := context.Background()
	due := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	exp := msgReq(chatU1, `1`)
	exp.Entry.ExpiresAt = due
	mustAppend(t, s, exp, msgReq(chatU1, `2`))
	armed.Store(true)
	if n, err := s.Sweep(ctx, due); err != nil || n != 1 {
		t.Fatalf("sweep whose COMMIT lost its answer: %d %v, want 1", n, err)
	}
	info, err := s.Channel(ctx, chatU1)
	if err != nil || info.FirstSeq != 2 {
		t.Fatalf("after the sweep: %+v %v, want FirstSeq 2", info, err)
	}

	armed.Store(true)
	reset, err := s.ResetChannel(ctx, chatU1)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Channel(ctx, chatU1); err != nil || got != reset {
		t.Fatalf("after a reset whose COMMIT lost its answer: %+v %v, want %+v (one reset, not two)", got, err, reset)
	}
	if n := testutil.ToFloat64(s.metrics.inDoubt.WithLabelValues("committed")); n != 2 {
		t.Fatalf("commits in doubt found committed: %v, want 2", n)
	}
}

// TestOneBadCallFailsAlone puts a call the database refuses (a trigger
// refuses its key) among concurrent others: whether or not they share its
// transaction, they are appended and it fails alone.
func TestOneBadCallFailsAlone(t *testing.T) {
	s := MustOpenStore(t)
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.key = 'poison' THEN RAISE EXCEPTION 'poisoned entry'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON entries FOR EACH ROW EXECUTE FUNCTION refuse_poison();`); err != nil {
		t.Fatal(err)
	}
	const calls = 9
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			r := msgReq(chatU1, fmt.Sprint(i))
			if i == 0 {
				r.Entry.Key = "poison"
			}
			_, err := s.Append(ctx, []syncpoint.AppendRequest{r})
			switch {
			case i == 0 && err == nil:
				err = errors.New("the poisoned append succeeded")
			case i == 0:
				err = nil
			}
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if seqs, _ := readAll(t, s, chatU1); !slices.Equal(seqs, []uint64{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("the good calls appended %v, want seqs 1 to 8", seqs)
	}
}

// TestAppendsWhileBizDropped appends to a biz's channel while the biz is
// deleted and created again, over and over: an append that waited for a
// head row its biz's deletion took away creates the channel anew rather
// than fail, and each epoch's seqs stay gap-free.
func TestAppendsWhileBizDropped(t *testing.T) {
	s := MustOpenStore(t)
	ctx := context.Background()
	chat := syncpoint.NewBiz("chat", syncpoint.TargetUser)
	if err := s.SaveBiz(ctx, chat); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	dropped := make(chan error, 1)
	go func() {
		defer close(dropped)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.DeleteBiz(ctx, "chat"); err != nil {
				dropped <- err
				return
			}
			if err := s.SaveBiz(ctx, chat); err != nil {
				dropped <- err
				return
			}
		}
	}()
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			var err error
			for range 25 {
				if _, err = s.Append(ctx, []syncpoint.AppendRequest{msgReq(chatU1, `{}`), msgReq(chatU1, `{}`)}); err != nil {
					break
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	close(stop)
	if err := <-dropped; err != nil {
		t.Fatal(err)
	}
	p, err := s.Read(ctx, chatU1, 0, MaxReadLimit, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range p.Entries {
		if e.Seq != uint64(i+1) || e.Epoch != p.Info.Epoch {
			t.Fatalf("entry %d of the last epoch has seq %d: a gap", i, e.Seq)
		}
	}
}
