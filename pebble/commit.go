package pebble

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	pebbledb "github.com/cockroachdb/pebble/v2"

	"github.com/syncpoint/syncpoint"
)

// Op states: a caller whose ctx ends may cancel its op only before the
// committer has taken it, so a cancelled Append has written nothing.
const (
	opPending int32 = iota
	opTaken
	opCancelled
)

// op is one queued write: an Append call, or a function that adds writes
// to a batch. Exclusive ops (sweeps, resets) get a batch of their own, so
// their reads see every earlier write.
type op struct {
	reqs      []syncpoint.AppendRequest
	hashes    [][]byte // per request with an idempotency key: its content hash
	res       []syncpoint.AppendResult
	fn        func(t *txn) error
	exclusive bool

	state atomic.Int32
	done  chan struct{}
	err   error
}

// do queues o and waits for its result. If ctx ends before the committer
// takes o, nothing is written and ctx's error is returned; once taken, do
// waits for the outcome, which takes at most one fsync.
func (s *Store) do(ctx context.Context, o *op) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.failure(); err != nil {
		return err
	}
	o.done = make(chan struct{})
	s.queue.push(o)
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opPending, opCancelled) {
			return ctx.Err()
		}
		<-o.done
		return o.err
	}
}

// queue is the committer's inbox.
type queue struct {
	mu     sync.Mutex
	ops    []*op
	spare  []*op
	wake   chan struct{}
	closed bool
}

func (q *queue) init() { q.wake = make(chan struct{}, 1) }

func (q *queue) push(o *op) {
	q.mu.Lock()
	q.ops = append(q.ops, o)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// poll returns up to max queued ops without waiting, and whether the queue
// is closed and drained. The slice is valid until the next call.
func (q *queue) poll(max int) ([]*op, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.ops), max)
	if n == 0 {
		return nil, q.closed && len(q.ops) == 0
	}
	out := append(q.spare[:0], q.ops[:n]...)
	rest := copy(q.ops, q.ops[n:])
	clear(q.ops[rest:])
	q.ops = q.ops[:rest]
	q.spare = out
	return out, false
}

// txn is one commit batch in the making, with an overlay of its own writes
// so that ops later in the batch read what earlier ones wrote.
type txn struct {
	s       *Store
	batch   *pebbledb.Batch
	ops     []*op
	num     uint64
	now     time.Time
	start   time.Time
	over    map[string]overlay
	touched []*chanState
	snaps   []meta
	resets  map[*chanState]bool
	entries int
	err     error // an I/O error: the whole batch fails
	applied bool
	delay   *time.Timer // see startGathering
	want    int
	buf     []byte // scratch for values
	kbuf    []byte // scratch for keys
}

type overlay struct {
	v   []byte
	del bool
}

func (s *Store) newTxn() *txn {
	return &txn{
		s:     s,
		batch: s.db.NewBatch(),
		now:   s.clock.Now(),
		start: time.Now(),
		over:  make(map[string]overlay),
	}
}

// get reads key as this batch will leave it.
func (t *txn) get(key []byte) ([]byte, bool) {
	if o, ok := t.over[string(key)]; ok {
		return o.v, !o.del
	}
	v, ok, err := t.s.get(key)
	if err != nil && t.err == nil {
		t.err = err
	}
	return v, ok
}

// set writes key and remembers it for later reads in the batch.
func (t *txn) set(key, v []byte) {
	t.over[string(key)] = overlay{v: v}
	t.batch.Set(key, v, nil)
}

// setBlind writes a key that nothing in the batch reads back.
func (t *txn) setBlind(key, v []byte) { t.batch.Set(key, v, nil) }

func (t *txn) del(key []byte) {
	t.over[string(key)] = overlay{del: true}
	t.batch.Delete(key, nil)
}

func (t *txn) delBlind(key []byte) { t.batch.Delete(key, nil) }

// channel returns the loaded state of ch; the caller must call touch before
// changing its head.
func (t *txn) channel(ch syncpoint.Channel) *chanState {
	st, err := t.s.chans.get(ch)
	if err != nil {
		if t.err == nil {
			t.err = err
		}
		return nil
	}
	return st
}

// touch marks st as written by this batch, so its meta is saved with it.
func (t *txn) touch(st *chanState) {
	if st.lastTxn == t.s.applied+1 {
		return
	}
	st.lastTxn = t.s.applied + 1
	t.touched = append(t.touched, st)
}

// commitLoop is the single committer. It keeps one batch open, adding
// every request that arrives, and applies it (without waiting for the
// fsync) as soon as the pipeline has room: while one batch syncs, the next
// one forms, so batches grow with load.
func (s *Store) commitLoop() {
	defer close(s.toSync)
	var t *txn // the open batch
	for {
		room := s.opts.MaxBatchOps
		if t != nil {
			room -= len(t.ops)
		}
		ops, closed := s.queue.poll(room)
		for _, o := range ops {
			if !o.state.CompareAndSwap(opPending, opTaken) {
				continue
			}
			if err := s.failure(); err != nil {
				o.err = err
				close(o.done)
				continue
			}
			if o.exclusive {
				// Its reads must see every earlier write, so it gets a
				// batch of its own after the open one is applied.
				if t != nil {
					s.commitWhenRoom(t)
				}
				t = s.newTxn()
				t.ops = append(t.ops, o)
				o.err = o.fn(t)
				s.commitWhenRoom(t)
				t = nil
				continue
			}
			if t == nil {
				t = s.newTxn()
			}
			t.ops = append(t.ops, o)
			if o.fn != nil {
				o.err = o.fn(t)
			} else {
				s.appendTo(t, o)
			}
			if t.err != nil {
				s.commitWhenRoom(t)
				t = nil
			}
		}
		switch {
		case t == nil && closed:
			return
		case t == nil:
			<-s.queue.wake
		case len(t.ops) >= s.opts.MaxBatchOps:
			s.commitWhenRoom(t)
			t = nil
		case t.gathering():
			select {
			case <-s.queue.wake:
			case <-t.delay.C:
				t.want = 0
			}
		default:
			select {
			case s.inflight <- struct{}{}:
				if s.startGathering(t) {
					<-s.inflight
					continue
				}
				s.commit(t)
				t = nil
			case <-s.queue.wake:
			}
		}
	}
}

// startGathering holds a batch that could be committed back for up to
// CommitDelay, until the callers of the last batch had time to come back,
// as PostgreSQL's commit_delay does: callers that append in a loop then
// share one fsync instead of alternating between two.
func (s *Store) startGathering(t *txn) bool {
	last := int(s.lastOps.Load())
	if s.opts.CommitDelay <= 0 || t.delay != nil || last < 2 {
		return false
	}
	t.want = min(len(t.ops)+last-last/10, s.opts.MaxBatchOps)
	t.delay = time.NewTimer(s.opts.CommitDelay)
	return len(t.ops) < t.want
}

// gathering reports whether t waits for more ops before it commits.
func (t *txn) gathering() bool { return t.delay != nil && len(t.ops) < t.want }

// commitWhenRoom waits for room in the pipeline and commits t.
func (s *Store) commitWhenRoom(t *txn) {
	s.inflight <- struct{}{}
	s.commit(t)
}

// commit saves the touched channels' meta, applies the batch and hands it
// to the syncer. The caller holds a pipeline slot for it, which the syncer
// gives back.
func (s *Store) commit(t *txn) {
	if t.delay != nil {
		t.delay.Stop()
	}
	s.applied++
	s.appliedNum.Store(s.applied)
	t.num = s.applied
	if t.err != nil {
		<-s.inflight
		s.failBatch(t, fmt.Errorf("commit: %w", t.err))
		return
	}
	t.snaps = make([]meta, len(t.touched))
	for i, st := range t.touched {
		t.snaps[i] = st.head
		if st.dirty {
			t.setBlind(metaKey(st.name), encodeMeta(st.head))
			st.dirty = false
		}
		st.mu.Lock()
		if t.resets[st] {
			st.resetGen++
			st.resetTxn = t.num
			st.pendingFirst = st.head.FirstSeq
		} else if st.head.FirstSeq > st.pendingFirst {
			st.pendingFirst = st.head.FirstSeq
		}
		st.mu.Unlock()
	}
	if !t.batch.Empty() {
		if err := s.db.ApplyNoSyncWait(t.batch, pebbledb.Sync); err != nil {
			<-s.inflight
			s.failBatch(t, fmt.Errorf("commit: %w", err))
			return
		}
		t.applied = true
	}
	s.toSync <- t
	synced, _ := s.syncState()
	s.chans.evict(synced, s.opts.MaxCachedChannels)
}

// failBatch fails every op of t and the store: the committer's channel
// state is now ahead of the disk, so carrying on could hand out wrong seqs.
func (s *Store) failBatch(t *txn, err error) {
	s.fail(err, t.num)
	err = s.failure()
	for _, o := range t.ops {
		o.err = err
		close(o.done)
	}
	t.batch.Close()
}

// syncLoop waits for each applied batch's fsync in order, then publishes
// the new durable channel state and answers the batch's callers.
func (s *Store) syncLoop() {
	defer close(s.done)
	for t := range s.toSync {
		var err error
		if t.applied {
			err = t.batch.SyncWait()
		}
		s.lastOps.Store(int64(len(t.ops))) // before the committer may go on
		<-s.inflight
		if err != nil {
			s.failBatch(t, fmt.Errorf("sync: %w", err))
			continue
		}
		if err := s.failedFor(t.num); err != nil {
			s.failBatch(t, err)
			continue
		}
		for i, st := range t.touched {
			st.mu.Lock()
			st.durable = t.snaps[i]
			st.mu.Unlock()
		}
		s.syncMu.Lock()
		s.synced = t.num
		s.syncMu.Unlock()
		s.wakeReaders()
		if t.entries > 0 {
			s.metrics.Appends.Add(float64(t.entries))
			s.metrics.BatchEntries.Observe(float64(t.entries))
		}
		s.metrics.CommitSeconds.Observe(time.Since(t.start).Seconds())
		for _, o := range t.ops {
			close(o.done)
		}
		t.batch.Close()
	}
}
