package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/syncpoint/syncpoint"
)

// Append implements syncpoint.Store. A request whose Policy.Retention is
// zero keeps its idempotency key (and tombstone) for
// syncpoint.DefaultRetention; a zero CreatedAt is set to the store's
// clock.
//
// The call joins the next group-commit transaction. If ctx ends before a
// committer takes it, nothing is written and ctx's error is returned;
// after that, Append waits for the transaction's outcome.
func (s *Store) Append(ctx context.Context, reqs []syncpoint.AppendRequest) ([]syncpoint.AppendResult, error) {
	o := &appendOp{reqs: reqs}
	for i := range reqs {
		if err := validateRequest(&reqs[i]); err != nil {
			return nil, fmt.Errorf("append: request %d: %w", i, err)
		}
		r := &reqs[i]
		o.bytes += len(r.Entry.Data) + len(r.Entry.Key)
		if r.Entry.IdempotencyKey == "" {
			continue
		}
		// Hashed here rather than in a committer, which every append waits on.
		if o.hashes == nil {
			o.hashes = make([][]byte, len(reqs))
		}
		if o.hashes[i] = r.ContentHash; len(r.ContentHash) == 0 {
			sum := r.Entry.ContentHash()
			o.hashes[i] = sum[:]
		}
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	if err := s.start(ctx); err != nil {
		return nil, fmt.Errorf("append: %w", err)
	}
	defer s.leave()
	o.done = make(chan struct{})
	s.queue.push(o)
	select {
	case <-o.done:
	case <-ctx.Done():
		if o.state.CompareAndSwap(opPending, opCancelled) {
			return nil, fmt.Errorf("append: %w", ctx.Err())
		}
		<-o.done
	}
	if o.err != nil {
		return nil, fmt.Errorf("append: %w", o.err)
	}
	return o.res, nil
}

// validateRequest checks what the store relies on, and what PostgreSQL
// would refuse (text with a NUL byte or bad UTF-8), so that no request
// fails a transaction it shares with other callers. The API validates the
// rest (data, conditions, sizes) against the biz.
func validateRequest(r *syncpoint.AppendRequest) error {
	e := &r.Entry
	if err := e.Channel.Validate(); err != nil {
		return err
	}
	if !e.Op.Valid() {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "op %q: want msg, put or delete", e.Op)
	}
	if (e.Op == syncpoint.OpPut || e.Op == syncpoint.OpDelete) && e.Key == "" {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "op %s needs a key", e.Op)
	}
	if r.IfKeySeq != nil && e.Key == "" {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "a conditional append needs a key")
	}
	if len(e.Key) > syncpoint.MaxKeyLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "key: longer than %d bytes", syncpoint.MaxKeyLen)
	}
	if len(e.IdempotencyKey) > syncpoint.MaxIdempotencyKeyLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "idempotency_key: longer than %d bytes", syncpoint.MaxIdempotencyKeyLen)
	}
	if len(r.ContentHash) > syncpoint.MaxContentHashLen {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "content hash: longer than %d bytes", syncpoint.MaxContentHashLen)
	}
	if r.Policy.MaxBacklog < 0 {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "max_backlog must not be negative")
	}
	for _, f := range []struct{ name, v string }{{"key", e.Key}, {"idempotency_key", e.IdempotencyKey}, {"origin", e.Origin}} {
		if !textOK(f.v) {
			return syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want UTF-8 without NUL bytes", f.name)
		}
	}
	return nil
}

// textOK reports whether PostgreSQL takes s as text.
func textOK(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// Op states: a caller whose ctx ends may cancel its call only before a
// committer has taken it, so a cancelled Append has written nothing.
const (
	opPending int32 = iota
	opTaken
	opCancelled
)

// appendOp is one Append call waiting for a committer.
type appendOp struct {
	reqs   []syncpoint.AppendRequest
	hashes [][]byte // per request with an idempotency key: its content hash
	bytes  int
	state  atomic.Int32
	done   chan struct{}
	res    []syncpoint.AppendResult
	err    error
}

// queue is the committers' inbox.
type queue struct {
	mu     sync.Mutex
	ops    []*appendOp
	wake   chan struct{}
	closed bool
}

func (q *queue) init() { q.wake = make(chan struct{}, 1) }

func (q *queue) push(o *appendOp) {
	q.mu.Lock()
	q.ops = append(q.ops, o)
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

// take moves queued calls into batch, up to the limits, dropping those
// cancelled meanwhile. It reports whether calls were left for want of
// room, and whether the queue is closed and empty.
func (q *queue) take(batch []*appendOp, maxReqs, maxBytes int) (_ []*appendOp, full, closed bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	reqs, bytes := 0, 0
	for _, o := range batch {
		reqs += len(o.reqs)
		bytes += o.bytes
	}
	n := 0
	for _, o := range q.ops {
		if len(batch) > 0 && (reqs+len(o.reqs) > maxReqs || bytes+o.bytes > maxBytes) {
			full = true
			break
		}
		n++
		if !o.state.CompareAndSwap(opPending, opTaken) {
			continue
		}
		batch = append(batch, o)
		reqs += len(o.reqs)
		bytes += o.bytes
	}
	rest := copy(q.ops, q.ops[n:])
	clear(q.ops[rest:])
	q.ops = q.ops[:rest]
	if rest > 0 {
		// Another committer can start on what this batch had no room for.
		defer q.signal()
	}
	return batch, full, q.closed && len(q.ops) == 0 && len(batch) == 0
}

// commitLoop is one committer: it takes every queued call (up to the
// batch limits), appends them all in one transaction, and answers them.
// While one committer's transaction runs, calls queue up for the next
// committer, so transactions grow with load and durability costs one WAL
// flush per transaction, not per call.
func (s *Store) commitLoop() {
	defer s.workers.Done()
	var batch []*appendOp
	for {
		var full, closed bool
		batch, full, closed = s.queue.take(batch[:0], s.opts.MaxBatch, s.opts.MaxBatchBytes)
		if closed {
			s.queue.signal() // the next committer sees the close too
			return
		}
		if len(batch) == 0 {
			<-s.queue.wake
			continue
		}
		if s.opts.CommitWindow > 0 && s.lastBatch.Load() > 1 && !full {
			batch = s.gather(batch)
		}
		s.lastBatch.Store(int64(len(batch)))
		s.commitBatch(batch)
		clear(batch)
	}
}

// gather holds a batch back for up to CommitWindow, until the callers of
// the last transaction had time to come back, as PostgreSQL's commit_delay
// does: writers that append in a loop then share one transaction instead
// of splitting into two groups that alternate.
func (s *Store) gather(batch []*appendOp) []*appendOp {
	last := int(s.lastBatch.Load())
	want := len(batch) + last - last/10
	t := time.NewTimer(s.opts.CommitWindow)
	defer t.Stop()
	for len(batch) < want {
		select {
		case <-s.queue.wake:
			var full bool
			if batch, full, _ = s.queue.take(batch, s.opts.MaxBatch, s.opts.MaxBatchBytes); full {
				return batch
			}
		case <-t.C:
			return batch
		}
	}
	return batch
}

// commitBatch appends the calls of batch in one transaction and answers
// them, retrying lost connections and deadlocks. Should the transaction
// fail for another reason, each call is tried alone, so that one call's
// failure is not every call's.
func (s *Store) commitBatch(batch []*appendOp) {
	start := time.Now()
	p, err := s.runBatch(batch)
	if err != nil && !transient(err) && !errors.Is(err, syncpoint.ErrUnavailable) && len(batch) > 1 {
		for _, o := range batch {
			s.commitBatch([]*appendOp{o})
		}
		return
	}
	if err != nil {
		err = giveUp(err)
		for _, o := range batch {
			o.err = err
			close(o.done)
		}
		return
	}
	s.metrics.observe(p, len(batch), time.Since(start))
	s.batches.Add(1)
	for i, o := range batch {
		o.res = p.results[i]
		close(o.done)
	}
}

// runBatch runs the batch's transaction until it commits, fails for good,
// or the retry budget is spent, and returns the plan that committed.
func (s *Store) runBatch(batch []*appendOp) (*plan, error) {
	var p *plan
	err := s.once(context.Background(), "append", appendTx, func(ctx context.Context, t *onceTx) error {
		var err error
		p, err = s.tryBatch(ctx, t, batch)
		return err
	})
	return p, err
}

// plan is one try of a batch: what the database held when the heads were
// locked, and what the batch's requests make of it.
type plan struct {
	now time.Time

	heads   map[string]*head // by channel name
	ids     map[ckey]idemRow // idempotency keys: the database's, then the batch's
	newIDs  map[ckey]idemRow // the batch's, to upsert
	keys    map[ckey]uint64  // newest put/delete seq per key: the database's, then the batch's
	newKeys map[ckey]keyRow  // the batch's, to upsert
	entries []pendingEntry   // in append order
	pending map[chanSeq]int  // index into entries, for compaction within the batch
	dels    []chanSeq        // stored entries that compaction replaced
	results [][]syncpoint.AppendResult
	counts  struct{ appended, duplicates, mismatches int }
}

// head is a channel's head row as this transaction leaves it.
type head struct {
	id          int64
	name        string
	epoch       string // "" while the channel does not exist
	first, last uint64
	// The row as locked.
	storedEpoch             string
	storedFirst, storedLast uint64
}

// ckey names a key (idempotency key or record key) in a channel.
type ckey struct{ ch, key string }

type chanSeq struct {
	id  int64
	seq uint64
}

// keyRow is a row of the keys table.
type keyRow struct {
	ch      *head
	seq     uint64
	put     bool
	expires time.Time
}

type idemRow struct {
	seq      uint64
	hash     []byte
	deadline time.Time
}

type pendingEntry struct {
	ch     *head
	seq    uint64
	e      *syncpoint.Entry
	goneAt time.Time
	gone   bool // compacted within the batch
}

// tryBatch runs one try of the batch's transaction in two round trips.
// The first begins it, locks the head rows of every channel the batch
// writes (in name order, the one order every writer of every node locks
// them in, so that transactions never deadlock on heads) and reads the
// idempotency keys and record keys the requests name. The requests are
// then settled here, in call order, and the second round trip writes the
// outcome and commits.
func (s *Store) tryBatch(ctx context.Context, t *onceTx, batch []*appendOp) (*plan, error) {
	p := &plan{
		now:     s.clock.Now(),
		heads:   make(map[string]*head),
		ids:     make(map[ckey]idemRow),
		newIDs:  make(map[ckey]idemRow),
		keys:    make(map[ckey]uint64),
		newKeys: make(map[ckey]keyRow),
		pending: make(map[chanSeq]int),
	}
	var names, bizzes, idNames, idKeys, keyNames, keyKeys []string
	seenID, seenKey := map[ckey]bool{}, map[ckey]bool{}
	for _, o := range batch {
		for _, r := range o.reqs {
			name := r.Entry.Channel.String()
			if _, ok := p.heads[name]; !ok {
				p.heads[name] = &head{name: name}
				names = append(names, name)
			}
			if ik := r.Entry.IdempotencyKey; ik != "" && !seenID[ckey{name, ik}] {
				seenID[ckey{name, ik}] = true
				idNames, idKeys = append(idNames, name), append(idKeys, ik)
			}
			if k := r.Entry.Key; k != "" && (r.IfKeySeq != nil || r.Policy.Compact && r.Entry.Op != syncpoint.OpMsg) && !seenKey[ckey{name, k}] {
				seenKey[ckey{name, k}] = true
				keyNames, keyKeys = append(keyNames, name), append(keyKeys, k)
				p.keys[ckey{name, k}] = 0
			}
		}
	}
	slices.Sort(names)
	for _, n := range names {
		biz, _, _ := strings.Cut(n, "/")
		bizzes = append(bizzes, biz)
	}

	b := &pgx.Batch{}
	t.begin(b)
	// A channel's first append needs a row to lock; one whose append ends
	// up appending nothing leaves it, with no epoch, as if it were absent.
	b.Queue(`INSERT INTO channels (name, biz) SELECT n, b FROM unnest($1::text[], $2::text[]) AS t(n, b) ORDER BY n
		ON CONFLICT (name) DO NOTHING`, names, bizzes)
	b.Queue(`SELECT id, name, epoch, first_seq, last_seq FROM channels WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE`, names).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id int64
				var name string
				var epoch *string
				var first, last int64
				if err := rows.Scan(&id, &name, &epoch, &first, &last); err != nil {
					return err
				}
				h := p.heads[name]
				h.id, h.first, h.last = id, uint64(first), uint64(last)
				if epoch != nil {
					h.epoch = *epoch
				}
				h.storedEpoch, h.storedFirst, h.storedLast = h.epoch, h.first, h.last
			}
			return rows.Err()
		})
	if len(idNames) > 0 {
		b.Queue(`SELECT t.n, t.k, i.seq, i.hash, i.deadline FROM unnest($1::text[], $2::text[]) AS t(n, k)
			JOIN channels c ON c.name = t.n JOIN idempotency_keys i ON i.channel_id = c.id AND i.key = t.k`, idNames, idKeys).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var k ckey
					var seq int64
					var r idemRow
					if err := rows.Scan(&k.ch, &k.key, &seq, &r.hash, &r.deadline); err != nil {
						return err
					}
					r.seq = uint64(seq)
					p.ids[k] = r
				}
				return rows.Err()
			})
	}
	if len(keyNames) > 0 {
		b.Queue(`SELECT t.n, t.k, k.seq FROM unnest($1::text[], $2::text[]) AS t(n, k)
			JOIN channels c ON c.name = t.n JOIN keys k ON k.channel_id = c.id AND k.key = t.k`,
			keyNames, keyKeys).
			Query(func(rows pgx.Rows) error {
				for rows.Next() {
					var k ckey
					var seq int64
					if err := rows.Scan(&k.ch, &k.key, &seq); err != nil {
						return err
					}
					p.keys[k] = uint64(seq)
				}
				return rows.Err()
			})
	}
	if err := t.send(ctx, b); err != nil {
		return nil, err
	}
	for _, h := range p.heads {
		if h.id == 0 {
			t.rollback()
			return nil, fmt.Errorf("channel %s: %w", h.name, errHeadGone)
		}
	}

	p.results = make([][]syncpoint.AppendResult, len(batch))
	for i, o := range batch {
		p.results[i] = make([]syncpoint.AppendResult, len(o.reqs))
		for j := range o.reqs {
			var hash []byte
			if o.hashes != nil {
				hash = o.hashes[j]
			}
			p.results[i][j] = p.settle(&o.reqs[j], hash)
		}
	}

	b = &pgx.Batch{}
	p.queueWrites(b)
	// On a lost answer to COMMIT the plan is kept: once may find that it
	// committed.
	return p, t.commit(ctx, b)
}

// settle decides one request against the state the batch has reached, in
// the order store.go lays down: idempotency key, then IfKeySeq, then the
// append itself, with compaction and MaxBacklog trimming.
func (p *plan) settle(r *syncpoint.AppendRequest, hash []byte) syncpoint.AppendResult {
	h := p.heads[r.Entry.Channel.String()]
	e := r.Entry
	if e.CreatedAt.IsZero() {
		e.CreatedAt = p.now
	}
	retention := r.Policy.Retention
	if retention <= 0 {
		retention = syncpoint.DefaultRetention
	}
	if ik := e.IdempotencyKey; ik != "" && h.epoch != "" {
		if was, ok := p.ids[ckey{h.name, ik}]; ok && p.now.Before(was.deadline) {
			if len(was.hash) > 0 && string(was.hash) != string(hash) {
				p.counts.mismatches++
				return syncpoint.AppendResult{Seq: was.seq, Epoch: h.epoch, Err: syncpoint.ErrIdempotencyMismatch}
			}
			p.counts.duplicates++
			return syncpoint.AppendResult{Seq: was.seq, Epoch: h.epoch, Duplicate: true}
		}
	}
	if r.IfKeySeq != nil {
		if cur := p.keySeq(h, e.Key); cur != *r.IfKeySeq {
			return syncpoint.AppendResult{Epoch: h.epoch, Err: syncpoint.ErrKeyChanged, KeySeq: cur}
		}
	}
	if h.epoch == "" {
		h.epoch, h.first, h.last = newEpoch(), 1, 0
	}
	h.last++
	seq := h.last
	pe := pendingEntry{ch: h, seq: seq, e: &e}
	if !e.ExpiresAt.IsZero() {
		pe.goneAt = e.ExpiresAt
	}
	if ik := e.IdempotencyKey; ik != "" {
		row := idemRow{seq: seq, hash: hash, deadline: e.CreatedAt.Add(retention)}
		p.ids[ckey{h.name, ik}] = row
		p.newIDs[ckey{h.name, ik}] = row
	}
	if e.Op != syncpoint.OpMsg {
		if r.Policy.Compact {
			if prev := p.keySeq(h, e.Key); prev != 0 {
				if i, ok := p.pending[chanSeq{h.id, prev}]; ok {
					p.entries[i].gone = true
				} else {
					p.dels = append(p.dels, chanSeq{h.id, prev})
				}
			}
			if tomb := e.CreatedAt.Add(retention); e.Op == syncpoint.OpDelete && (pe.goneAt.IsZero() || tomb.Before(pe.goneAt)) {
				pe.goneAt = tomb
			}
		}
		p.keys[ckey{h.name, e.Key}] = seq
		p.newKeys[ckey{h.name, e.Key}] = keyRow{ch: h, seq: seq, put: e.Op == syncpoint.OpPut, expires: e.ExpiresAt}
	}
	p.pending[chanSeq{h.id, seq}] = len(p.entries)
	p.entries = append(p.entries, pe)
	if n := uint64(r.Policy.MaxBacklog); n > 0 && h.last-h.first+1 > n {
		h.first = h.last - n + 1
	}
	p.counts.appended++
	return syncpoint.AppendResult{Seq: seq, Epoch: h.epoch}
}

// keySeq is the seq of the newest put or delete of key that is still
// kept, 0 if none.
func (p *plan) keySeq(h *head, key string) uint64 {
	seq := p.keys[ckey{h.name, key}]
	if seq < h.first {
		return 0
	}
	return seq
}

// queueWrites adds the plan's writes to b: the entries that survive the
// batch (neither compacted nor trimmed within it), the record keys and
// idempotency keys, the deletions of stored entries that compaction and
// trimming removed (with the record keys still pointing at them), and the
// heads.
func (p *plan) queueWrites(b *pgx.Batch) {
	n := len(p.entries)
	var (
		chans, seqs               = make([]int64, 0, n), make([]int64, 0, n)
		ops, keys, conds, origins = make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
		ikeys                     = make([]string, 0, n)
		data                      = make([][]byte, 0, n)
		created, expires, goneAts = make([]time.Time, 0, n), make([]pgtype.Timestamptz, 0, n), make([]pgtype.Timestamptz, 0, n)
	)
	for _, pe := range p.entries {
		if pe.gone || pe.seq < pe.ch.first {
			continue
		}
		e := pe.e
		chans, seqs = append(chans, pe.ch.id), append(seqs, int64(pe.seq))
		ops, keys = append(ops, string(e.Op)), append(keys, e.Key)
		data = append(data, e.Data)
		created = append(created, e.CreatedAt)
		expires = append(expires, pgtype.Timestamptz{Time: e.ExpiresAt, Valid: !e.ExpiresAt.IsZero()})
		goneAts = append(goneAts, pgtype.Timestamptz{Time: pe.goneAt, Valid: !pe.goneAt.IsZero()})
		conds = append(conds, encodeConditions(e.Conditions))
		origins, ikeys = append(origins, e.Origin), append(ikeys, e.IdempotencyKey)
	}
	if len(chans) > 0 {
		b.Queue(`INSERT INTO entries (channel_id, seq, op, key, data, created_at, expires_at, gone_at, conditions, origin, idempotency_key)
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::timestamptz[],
				$7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[])`,
			chans, seqs, ops, keys, data, created, expires, goneAts, conds, origins, ikeys)
	}
	var kCh, kSeq []int64
	var kKey []string
	var kPut []bool
	var kExp []pgtype.Timestamptz
	for k, r := range p.newKeys {
		if r.seq < r.ch.first {
			continue // trimmed within the batch
		}
		kCh, kKey, kSeq = append(kCh, r.ch.id), append(kKey, k.key), append(kSeq, int64(r.seq))
		kPut, kExp = append(kPut, r.put), append(kExp, pgtype.Timestamptz{Time: r.expires, Valid: !r.expires.IsZero()})
	}
	if len(kCh) > 0 {
		b.Queue(`INSERT INTO keys (channel_id, key, seq, put, expires_at)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::boolean[], $5::timestamptz[])
			ON CONFLICT (channel_id, key) DO UPDATE SET seq = excluded.seq, put = excluded.put, expires_at = excluded.expires_at`,
			kCh, kKey, kSeq, kPut, kExp)
	}
	if len(p.newIDs) > 0 {
		var ch []int64
		var ks []string
		var sq []int64
		var hs [][]byte
		var dl []time.Time
		for k, r := range p.newIDs {
			ch, ks, sq = append(ch, p.heads[k.ch].id), append(ks, k.key), append(sq, int64(r.seq))
			hs, dl = append(hs, r.hash), append(dl, r.deadline)
		}
		b.Queue(`INSERT INTO idempotency_keys (channel_id, key, seq, hash, deadline)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[], $5::timestamptz[])
			ON CONFLICT (channel_id, key) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, deadline = excluded.deadline`,
			ch, ks, sq, hs, dl)
	}
	if len(p.dels) > 0 {
		ch, sq := make([]int64, len(p.dels)), make([]int64, len(p.dels))
		for i, d := range p.dels {
			ch[i], sq[i] = d.id, int64(d.seq)
		}
		b.Queue(`WITH gone AS (
				DELETE FROM entries e USING unnest($1::bigint[], $2::bigint[]) AS d(c, s) WHERE e.channel_id = d.c AND e.seq = d.s
				RETURNING e.channel_id, e.key, e.seq
			) DELETE FROM keys k USING gone g WHERE k.channel_id = g.channel_id AND k.key = g.key AND k.seq = g.seq`, ch, sq)
	}
	var trimCh, trimFrom, trimTo []int64
	var upID, upFirst, upLast []int64
	var upEpoch []string
	for _, h := range p.heads {
		if h.first > h.storedFirst && h.storedLast >= h.storedFirst {
			trimCh = append(trimCh, h.id)
			trimFrom, trimTo = append(trimFrom, int64(h.storedFirst)), append(trimTo, int64(h.first))
		}
		if h.epoch != h.storedEpoch || h.first != h.storedFirst || h.last != h.storedLast {
			upID, upEpoch = append(upID, h.id), append(upEpoch, h.epoch)
			upFirst, upLast = append(upFirst, int64(h.first)), append(upLast, int64(h.last))
		}
	}
	if len(trimCh) > 0 {
		b.Queue(`WITH gone AS (
				DELETE FROM entries e USING unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS d(c, f, t)
				WHERE e.channel_id = d.c AND e.seq >= d.f AND e.seq < d.t
				RETURNING e.channel_id, e.key, e.seq, e.op
			) DELETE FROM keys k USING gone g WHERE g.op <> 'msg' AND k.channel_id = g.channel_id AND k.key = g.key AND k.seq = g.seq`,
			trimCh, trimFrom, trimTo)
	}
	if len(upID) > 0 {
		b.Queue(`UPDATE channels c SET epoch = u.e, first_seq = u.f, last_seq = u.l
			FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[]) AS u(id, e, f, l) WHERE c.id = u.id`,
			upID, upEpoch, upFirst, upLast)
	}
}

// encodeConditions gives the empty string for the conditions that match every device,
// which nearly every entry has, so that reads decode no JSON for them.
func encodeConditions(c syncpoint.Conditions) string {
	if c.IsZero() {
		return ""
	}
	b, _ := json.Marshal(c) // strings and a slice of them: cannot fail
	return string(b)
}

func decodeConditions(s string, c *syncpoint.Conditions) error {
	if s == "" {
		return nil
	}
	if err := json.Unmarshal([]byte(s), c); err != nil {
		return fmt.Errorf("conditions: %w", err)
	}
	return nil
}

func newEpoch() string {
	var b [8]byte
	rand.Read(b[:]) // never fails on supported platforms
	return hex.EncodeToString(b[:])
}
