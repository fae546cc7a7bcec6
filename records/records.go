package records

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/clock"
	"github.com/syncpoint/syncpoint/internal/keylock"
	"github.com/syncpoint/syncpoint/publish"
	"github.com/syncpoint/syncpoint/wire"
)

// Codes of per-record errors, besides the syncpoint.ErrorCode values
// (conflict, forbidden, invalid, not_found, too_large, internal) that
// RecordError.Code also carries.
const (
	CodeInvalidID   = "invalid_id"   // not a UUID, ULID or ObjectId
	CodeInvalidData = "invalid_data" // data is not a JSON object
	CodeUnknownBiz  = "unknown_biz"
	CodeNotWritable = "not_writable" // the biz takes no uploads
	CodeExists      = "exists"       // created an id that has a live record
	CodeRejected    = "rejected"     // refused by the biz's validation webhook
)

// Defaults for Config.
const (
	DefaultResultTTL        = 7 * 24 * time.Hour
	DefaultMaxRecords       = 1000
	DefaultNoticeRetention  = 7 * 24 * time.Hour
	DefaultNotifyBatch      = 100
	DefaultNotifyBatchBytes = 1 << 20
	DefaultNotifyPoll       = 5 * time.Second
	DefaultNotifyMinBackoff = time.Second
	DefaultNotifyMaxBackoff = time.Minute
)

// NoticeBiz is the reserved biz name of the upload-notice logs: the notices
// of biz b are kept in the channel NoticeBiz/group:b. No biz of this name
// may be configured, or devices could subscribe to the notices.
const NoticeBiz = "syncpoint-uploads"

// noticeReader names the notice deliverer's cursors in the store. It is
// the id under which stores of format 1 kept them as sync points, so an
// upgraded store finds them here.
const noticeReader = NoticeBiz

// maxAttempts bounds how often a change is re-read and re-tried when a
// concurrent write moves its record between the read and the append.
const maxAttempts = 8

// Config is what a Service needs. Publisher, Store and Registry are
// required.
type Config struct {
	Publisher  *publish.Publisher
	Store      syncpoint.Store
	Registry   *syncpoint.Registry
	HTTPClient *http.Client          // for webhooks; nil: one that follows no redirects
	Clock      clock.Clock           // nil: clock.Real{}
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: no metrics are registered
	// ResultTTL is how long a write's result is kept, so that a resend
	// with the same write_id gets it back instead of applying again.
	ResultTTL time.Duration
	// MaxRecords is the most record changes in one write.
	MaxRecords int

	// NoticeRetention is how long an upload notice waits for the notify
	// webhook before it is dropped.
	NoticeRetention time.Duration
	// NotifyBatch and NotifyBatchBytes bound one notify request (at least
	// one notice is always sent).
	NotifyBatch      int
	NotifyBatchBytes int
	// NotifyPoll is how often Run looks for notices written by other nodes.
	NotifyPoll time.Duration
	// NotifyMinBackoff and NotifyMaxBackoff bound the wait after a failed
	// notify request; it doubles on each failure in a row.
	NotifyMinBackoff time.Duration
	NotifyMaxBackoff time.Duration
}

func (c *Config) setDefaults() {
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultHTTPClient()
	}
	if c.ResultTTL <= 0 {
		c.ResultTTL = DefaultResultTTL
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.NoticeRetention <= 0 {
		c.NoticeRetention = DefaultNoticeRetention
	}
	if c.NotifyBatch <= 0 {
		c.NotifyBatch = DefaultNotifyBatch
	}
	if c.NotifyBatchBytes <= 0 {
		c.NotifyBatchBytes = DefaultNotifyBatchBytes
	}
	if c.NotifyPoll <= 0 {
		c.NotifyPoll = DefaultNotifyPoll
	}
	if c.NotifyMinBackoff <= 0 {
		c.NotifyMinBackoff = DefaultNotifyMinBackoff
	}
	if c.NotifyMaxBackoff < c.NotifyMinBackoff {
		c.NotifyMaxBackoff = max(DefaultNotifyMaxBackoff, c.NotifyMinBackoff)
	}
}

// Service applies record uploads from devices: it checks them, settles
// conflicts by base_seq, asks the biz's webhook, appends each change through
// the Publisher and remembers the result under the write_id. It is the
// hub's RecordWriter, and is safe for concurrent use.
type Service struct {
	cfg      Config
	pub      *publish.Publisher
	store    syncpoint.Store
	registry *syncpoint.Registry
	http     *http.Client
	clock    clock.Clock
	log      *slog.Logger
	metrics  *metrics

	writing keylock.Set   // one apply per device and write_id at a time
	wake    chan struct{} // a notice was queued
}

// New returns a Service. Call Run to deliver upload notices. It panics if
// the Registerer refuses its metrics, as that is a wiring mistake.
func New(cfg Config) *Service {
	cfg.setDefaults()
	return &Service{
		cfg:      cfg,
		pub:      cfg.Publisher,
		store:    cfg.Store,
		registry: cfg.Registry,
		http:     cfg.HTTPClient,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		metrics:  newMetrics(cfg.Registerer),
		wake:     make(chan struct{}, 1),
	}
}

// Write applies one write of a device and returns its result. Per-record
// problems become RecordErrors; only a write that cannot be judged at all
// (bad write_id, too many records, a store or webhook failure) gets
// WriteResult.Error. A write resent with the same write_id gets the first
// result back and is not applied again.
func (s *Service) Write(ctx context.Context, id syncpoint.Identity, w *wire.Write) *wire.WriteResult {
	if w == nil {
		return &wire.WriteResult{Error: wire.ErrorFrom(syncpoint.Errorf(syncpoint.CodeInvalid, "empty write"), false)}
	}
	if !validWriteID(w.WriteID) {
		return s.failed(w.WriteID, syncpoint.Errorf(syncpoint.CodeInvalid, "write_id: want 1-%d printable ASCII characters", MaxWriteIDLen))
	}
	n := len(w.Changes)
	for i := range w.Changes {
		c := &w.Changes[i]
		n += len(c.Created) + len(c.Updated) + len(c.Deleted)
	}
	if n-len(w.Changes) > s.cfg.MaxRecords || len(w.Changes) > s.cfg.MaxRecords {
		return s.failed(w.WriteID, syncpoint.Errorf(syncpoint.CodeInvalid, "a write may carry at most %d records; split it", s.cfg.MaxRecords))
	}
	key := resultKey(id.DeviceID, w.WriteID)
	// A resend can overtake the first send (a new connection while the old
	// one is still applying); it waits, then finds the kept result.
	unlock, err := s.writing.Lock(ctx, key)
	if err != nil {
		return s.failed(w.WriteID, syncpoint.Errorf(syncpoint.CodeUnavailable, "the write was interrupted; send it again with the same write_id"))
	}
	defer unlock()
	return s.writeOnce(ctx, id, w, key, writeHash(w))
}

func (s *Service) writeOnce(ctx context.Context, id syncpoint.Identity, w *wire.Write, key string, hash []byte) *wire.WriteResult {
	if b, err := s.store.Blob(ctx, key); err == nil {
		kept, frame, ok := decodeResult(b)
		if f, derr := wire.DecodeJSON(frame); ok && derr == nil && f.WriteResult != nil {
			if sameWrite(kept, hash) {
				s.metrics.write("resent")
				return f.WriteResult
			}
			// The write_id came back with other changes: apply it again,
			// and each change's idempotency key tells the spent ones apart.
		} else {
			s.log.Error("records: stored write result does not decode", "key", key)
		}
	} else if !errors.Is(err, syncpoint.ErrNotFound) {
		return s.storeFailed(w.WriteID, fmt.Errorf("load write result: %w", err))
	}
	res, err := s.apply(ctx, id, w)
	if err != nil {
		var we *writeError
		if errors.As(err, &we) {
			return s.failed(w.WriteID, we.err)
		}
		return s.storeFailed(w.WriteID, err)
	}
	s.metrics.write("applied")
	if b, err := wire.EncodeJSON(nil, &wire.Frame{WriteResult: res}); err != nil {
		s.log.Error("records: encode write result", "err", err)
	} else if err := s.store.PutBlob(ctx, key, encodeResult(hash, b), s.clock.Now().Add(s.cfg.ResultTTL)); err != nil {
		// The idempotency keys of the changes still keep a resend from
		// applying them twice; it recomputes the result instead.
		s.log.Warn("records: keep write result", "err", err, "device", id.DeviceID, "write_id", w.WriteID)
	}
	return res
}

// writeError fails a whole write with an error meant for the device; any
// other error of apply is a store failure, logged and not shown.
type writeError struct{ err *syncpoint.Error }

func (e *writeError) Error() string { return e.err.Error() }

// failed is a whole-write error that is safe to show as it is.
func (s *Service) failed(writeID string, err *syncpoint.Error) *wire.WriteResult {
	s.metrics.write("failed")
	return &wire.WriteResult{WriteID: writeID, Error: wire.ErrorFrom(err, false)}
}

// storeFailed logs a store failure and answers with a retryable error.
func (s *Service) storeFailed(writeID string, err error) *wire.WriteResult {
	s.log.Error("records: write failed", "write_id", writeID, "err", err)
	code := syncpoint.CodeInternal
	if errors.Is(err, syncpoint.ErrClosed) || errors.Is(err, syncpoint.ErrUnavailable) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		code = syncpoint.CodeUnavailable
	}
	return s.failed(writeID, syncpoint.Errorf(code, "the write could not be stored; send it again with the same write_id"))
}

// resultKey is where a write's result is kept. Device ids cannot hold '/',
// so the key is unambiguous.
func resultKey(deviceID, writeID string) string {
	return "records/result/" + deviceID + "/" + writeID
}

// idemKey is the idempotency key of one change: "w:<device>:<write>:<id>"
// when that is unambiguous and short enough, otherwise "w#" and a hash of
// the three.
func idemKey(deviceID, writeID, id string) string {
	k := "w:" + deviceID + ":" + writeID + ":" + id
	if len(k) <= syncpoint.MaxIdempotencyKeyLen && !strings.ContainsRune(writeID, ':') && !strings.ContainsRune(id, ':') {
		return k
	}
	h := sha256.New()
	for _, s := range []string{deviceID, writeID, id} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "w#" + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

type kind int

const (
	kindCreate kind = iota
	kindUpdate
	kindDelete
)

func (k kind) String() string {
	return [...]string{"create", "update", "delete"}[k]
}

type state int

const (
	statePending state = iota // to be decided
	stateReady                // decided: append data with ifSeq
	stateSaved
	stateFailed
	// stateReplay: the record's newest entry has this change's idempotency
	// key. The store tells, by content, whether it is this very change.
	stateReplay
)

// change is one record change on its way through a write.
type change struct {
	kind   kind
	biz    *syncpoint.Biz // nil when the biz is unknown
	ch     syncpoint.Channel
	chName string
	rec    *wire.Record
	idem   string  // "" until the change passed its checks
	hash   []byte  // with idem: the content the key is checked against
	upload *object // merge: the parsed data, once needed

	cur      *syncpoint.Entry // the record's newest entry, nil when none
	keySeq   uint64           // what the store says the key is at
	hintSeq  uint64           // the key's seq from the last ErrKeyChanged
	base     *object          // merge: the version the device edited, when still stored
	baseRead bool

	data      json.RawMessage // what to append (put)
	ifSeq     uint64
	overwrote bool
	conflicts []string // merge: fields kept from the current record
	appended  bool     // saved as a new (or, on a resend, earlier) entry

	state state
	seq   uint64
	errs  []wire.RecordError
}

func (c *change) fail(code, field, msg string, current *syncpoint.Entry) {
	c.state = stateFailed
	c.errs = append(c.errs, wire.RecordError{Channel: c.chName, ID: c.rec.ID, Field: field, Code: code, Message: msg, Current: toWireEntry(current)})
}

func (c *change) saved(seq uint64, appended bool) {
	c.state, c.seq, c.appended = stateSaved, seq, appended
}

// apply runs a write. A *writeError fails the write as a whole with its
// error; any other error is a store failure.
func (s *Service) apply(ctx context.Context, id syncpoint.Identity, w *wire.Write) (*wire.WriteResult, error) {
	now := s.clock.Now()
	all := s.check(id, w)

	pending := make([]*change, 0, len(all))
	for _, c := range all {
		if c.state == statePending {
			pending = append(pending, c)
		}
	}
	origin := "device:" + id.DeviceID
	for attempt := 0; len(pending) > 0; attempt++ {
		if attempt == maxAttempts {
			for _, c := range pending {
				c.fail(string(syncpoint.CodeConflict), "", "the record kept changing while it was saved; send the change again", c.cur)
			}
			break
		}
		if err := s.load(ctx, pending); err != nil {
			return nil, err
		}
		for _, c := range pending {
			s.decide(c, now)
		}
		if attempt == 0 {
			if err := s.validateAll(ctx, id, w.WriteID, pending); err != nil {
				return nil, err
			}
		}
		var ready []*change
		for _, c := range pending {
			if c.state == stateReady {
				ready = append(ready, c)
			}
		}
		if len(ready) == 0 {
			break
		}
		reqs := make([]publish.Request, len(ready))
		for i, c := range ready {
			ifSeq := c.ifSeq
			reqs[i] = publish.Request{
				Biz:            c.biz.Name,
				Targets:        []syncpoint.Target{c.ch.Target},
				Op:             syncpoint.OpPut,
				Key:            c.rec.ID,
				Data:           c.data,
				IdempotencyKey: c.idem,
				ContentHash:    c.hash,
				Origin:         origin,
				IfKeySeq:       &ifSeq,
			}
			if c.kind == kindDelete {
				reqs[i].Op, reqs[i].Data = syncpoint.OpDelete, nil
			}
		}
		results, errs, err := s.pub.PublishBatch(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("apply: %w", err)
		}
		pending = pending[:0]
		for i, c := range ready {
			var se *syncpoint.Error
			if errors.As(errs[i], &se) && se.Code == syncpoint.CodeIdempotencyMismatch {
				c.failReused(se.Seq)
				continue
			}
			if errs[i] != nil {
				// The biz changed under the write (deleted, or its limits).
				c.fail(string(syncpoint.Code(errs[i])), "", syncpoint.Message(errs[i]), nil)
				continue
			}
			r := results[i][0]
			switch {
			case errors.Is(r.Err, syncpoint.ErrKeyChanged):
				c.state, c.hintSeq = statePending, r.KeySeq
				pending = append(pending, c)
			case r.Err != nil:
				return nil, fmt.Errorf("apply: %w", r.Err)
			default:
				c.saved(r.Seq, true)
			}
		}
	}
	if err := s.probe(ctx, all); err != nil {
		return nil, err
	}
	if err := s.refreshCurrent(ctx, all); err != nil {
		return nil, err
	}
	if err := s.queueNotices(ctx, id, w.WriteID, all, now); err != nil {
		return nil, err
	}
	return s.result(w.WriteID, all), nil
}

// check resolves each change's channel and checks what can be checked
// without the store. Changes that fail are marked failed.
func (s *Service) check(id syncpoint.Identity, w *wire.Write) []*change {
	var all []*change
	type chanID struct {
		ch syncpoint.Channel
		id string
	}
	seen := make(map[chanID]bool)
	for i := range w.Changes {
		cs := &w.Changes[i]
		biz, ch, refuse := s.resolve(id, cs)
		for _, group := range []struct {
			k    kind
			recs []wire.Record
		}{{kindCreate, cs.Created}, {kindUpdate, cs.Updated}, {kindDelete, cs.Deleted}} {
			for j := range group.recs {
				c := &change{kind: group.k, biz: biz, ch: ch, rec: &group.recs[j]}
				if ch.Biz != "" {
					c.chName = ch.String()
				}
				all = append(all, c)
				if refuse != nil {
					c.fail(refuse.Code, refuse.Field, refuse.Message, nil)
					continue
				}
				if !s.checkRecord(c) {
					continue
				}
				k := chanID{ch, c.rec.ID}
				if seen[k] {
					c.fail(string(syncpoint.CodeInvalid), "id", "the record appears more than once in this write", nil)
					continue
				}
				seen[k] = true
				c.idem = idemKey(id.DeviceID, w.WriteID, c.rec.ID)
				c.hash = changeHash(c.kind, c.rec)
			}
		}
	}
	return all
}

// resolve finds the biz and channel of a change set, or the error that
// refuses all of its records (with the biz, when it exists, for metrics).
func (s *Service) resolve(id syncpoint.Identity, cs *wire.ChangeSet) (*syncpoint.Biz, syncpoint.Channel, *wire.RecordError) {
	b, ok := s.registry.Get(cs.Biz)
	refuse := func(code, field, format string, args ...any) (*syncpoint.Biz, syncpoint.Channel, *wire.RecordError) {
		var known *syncpoint.Biz
		if ok {
			known = &b
		}
		return known, syncpoint.Channel{}, &wire.RecordError{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
	}
	if !ok {
		return refuse(CodeUnknownBiz, "biz", "unknown biz %q", clip(cs.Biz, syncpoint.MaxBizNameLen+16))
	}
	if !b.Writable {
		return refuse(CodeNotWritable, "biz", "biz %s takes no uploads from devices", b.Name)
	}
	var ch syncpoint.Channel
	if cs.Target == "" {
		if ch, ok = id.DefaultChannel(b); !ok {
			return refuse(string(syncpoint.CodeInvalid), "target", "biz %s is a group biz: name the target, for example group:<id>", b.Name)
		}
	} else {
		t, err := syncpoint.ParseTarget(cs.Target)
		if err != nil {
			return refuse(string(syncpoint.CodeInvalid), "target", "%s", syncpoint.Message(err))
		}
		if t.Kind != b.Target {
			return refuse(string(syncpoint.CodeInvalid), "target", "biz %s takes %s targets, not %s", b.Name, b.Target, t)
		}
		ch = syncpoint.Channel{Biz: b.Name, Target: t}
	}
	if !id.CanWrite(b, ch) {
		return refuse(string(syncpoint.CodeForbidden), "target", "this device may not write to %s", ch)
	}
	return &b, ch, nil
}

// checkRecord checks one change's id, base_seq and data.
func (s *Service) checkRecord(c *change) bool {
	r := c.rec
	if !ValidID(r.ID) {
		c.fail(CodeInvalidID, "id", fmt.Sprintf("id %q: want a UUID, a ULID or a 24-hex ObjectId", clip(r.ID, 64)), nil)
		return false
	}
	if c.kind != kindCreate && r.BaseSeq == 0 {
		c.fail(string(syncpoint.CodeInvalid), "base_seq", fmt.Sprintf("%s needs the base_seq of the version it changes", c.kind), nil)
		return false
	}
	if c.kind == kindDelete {
		return true
	}
	if !isObject(r.Data) {
		c.fail(CodeInvalidData, "data", "data must be a JSON object", nil)
		return false
	}
	if limit := c.biz.EntryLimit(); len(r.Data)+len(r.ID) > limit {
		c.fail(string(syncpoint.CodeTooLarge), "data", fmt.Sprintf("the record is %d bytes; biz %s allows %d", len(r.Data)+len(r.ID), c.biz.Name, limit), nil)
		return false
	}
	if len(r.Fields) > maxFields {
		c.fail(string(syncpoint.CodeInvalid), "fields", fmt.Sprintf("fields: at most %d names", maxFields), nil)
		return false
	}
	for _, f := range r.Fields {
		if len(f) > maxFieldLen || !utf8.ValidString(f) {
			c.fail(string(syncpoint.CodeInvalid), "fields", fmt.Sprintf("fields: each name is at most %d bytes of UTF-8", maxFieldLen), nil)
			return false
		}
	}
	return true
}

// load reads the newest entry of each change's record, and for a stale
// merge update the version it was based on.
func (s *Service) load(ctx context.Context, cs []*change) error {
	for _, c := range cs {
		cur, err := s.store.KeyEntry(ctx, c.ch, c.rec.ID)
		switch {
		case errors.Is(err, syncpoint.ErrNotFound):
			// The key may still point at an entry that is gone (swept);
			// the append says so, and the next try uses its seq.
			c.cur, c.keySeq = nil, c.hintSeq
		case err != nil:
			return fmt.Errorf("load record: %w", err)
		default:
			c.cur, c.keySeq = &cur, cur.Seq
		}
		if c.kind == kindUpdate && c.biz.Conflict == syncpoint.ConflictMerge && c.cur != nil && c.cur.Seq != c.rec.BaseSeq && !c.baseRead {
			c.baseRead = true
			base, err := s.store.Entry(ctx, c.ch, c.rec.BaseSeq)
			switch {
			case errors.Is(err, syncpoint.ErrNotFound):
			case err != nil:
				return fmt.Errorf("load base: %w", err)
			case base.Key == c.rec.ID && base.Op == syncpoint.OpPut:
				c.base, _ = parseObject(base.Data) // a base that is not an object is as good as gone
			}
		}
	}
	return nil
}

// decide settles one change against the record's current entry: it is
// ready to append (data, ifSeq), or already saved, or refused.
func (s *Service) decide(c *change, now time.Time) {
	cur := c.cur
	if cur != nil && cur.IdempotencyKey == c.idem {
		// Applied before under this write_id, by an earlier try whose result
		// was lost, or by another change sent under the same write_id.
		c.state = stateReplay
		return
	}
	live := cur != nil && cur.Op == syncpoint.OpPut && !cur.Expired(now)
	c.state, c.ifSeq, c.overwrote, c.conflicts = stateReady, c.keySeq, false, nil
	base := c.rec.BaseSeq
	switch c.kind {
	case kindCreate:
		if live {
			c.fail(CodeExists, "id", "a record with this id exists", cur)
			return
		}
		c.data = c.rec.Data
		return
	case kindUpdate:
		c.data = c.rec.Data
	}
	if !live {
		c.fail(string(syncpoint.CodeNotFound), "id", "no such record: it was never created, or it was deleted", cur)
		return
	}
	if cur.Seq == base {
		return
	}
	stale := fmt.Sprintf("the record changed since base_seq %d; it is at seq %d", base, cur.Seq)
	switch c.biz.Conflict {
	case syncpoint.ConflictServerOrder:
		c.overwrote = true
	case syncpoint.ConflictMerge:
		if c.kind == kindDelete {
			c.fail(string(syncpoint.CodeConflict), "", stale+"; a merge biz does not delete over changes the device has not seen", cur)
			return
		}
		s.mergeInto(c)
	default:
		c.fail(string(syncpoint.CodeConflict), "", stale, cur)
	}
}

// mergeInto merges a stale update into the current record.
func (s *Service) mergeInto(c *change) {
	cur := c.cur
	current, err := parseObject(cur.Data)
	if err != nil {
		c.fail(string(syncpoint.CodeConflict), "", "the current record is not a JSON object, so the update cannot be merged into it", cur)
		return
	}
	if c.upload == nil {
		if c.upload, err = parseObject(c.rec.Data); err != nil {
			c.fail(CodeInvalidData, "data", "data must be a JSON object", nil)
			return
		}
	}
	merged, conflicts := merge(c.base, c.upload, current, c.rec.Fields)
	unchanged := len(merged.keys) == len(current.keys)
	for _, k := range merged.keys {
		if !unchanged {
			break
		}
		unchanged = sameField(merged, current, k)
	}
	if unchanged {
		// Nothing of the upload is new: no entry, the record stays as is.
		if len(conflicts) == 0 {
			c.saved(cur.Seq, false)
			return
		}
		for _, f := range conflicts {
			c.fail(string(syncpoint.CodeConflict), f, fmt.Sprintf("field %q changed on the server and on this device since base_seq %d", f, c.rec.BaseSeq), cur)
		}
		return
	}
	c.data = merged.marshal()
	if limit := c.biz.EntryLimit(); len(c.data)+len(c.rec.ID) > limit {
		c.fail(string(syncpoint.CodeTooLarge), "data", fmt.Sprintf("the merged record is %d bytes; biz %s allows %d", len(c.data)+len(c.rec.ID), c.biz.Name, limit), cur)
		return
	}
	c.conflicts = conflicts
}

// validateAll asks each biz's validation webhook about the changes about to
// be applied, one request per channel. An error fails the whole write.
func (s *Service) validateAll(ctx context.Context, id syncpoint.Identity, writeID string, cs []*change) error {
	var order []syncpoint.Channel
	groups := make(map[syncpoint.Channel][]*change)
	for _, c := range cs {
		if c.state != stateReady || c.biz.Webhook == nil || c.biz.Webhook.ValidateURL == "" {
			continue
		}
		if groups[c.ch] == nil {
			order = append(order, c.ch)
		}
		groups[c.ch] = append(groups[c.ch], c)
	}
	for _, ch := range order {
		group := groups[ch]
		biz := group[0].biz
		body := &validateRequest{Biz: biz.Name, Channel: ch.String(), DeviceID: id.DeviceID, UserID: id.UserID, WriteID: writeID}
		for _, c := range group {
			p := proposedChange{Op: c.kind.String(), ID: c.rec.ID, Current: toEntryJSON(c.cur)}
			if c.kind != kindCreate {
				p.BaseSeq = c.rec.BaseSeq
			}
			if c.kind != kindDelete {
				p.Data = c.data
			}
			body.Changes = append(body.Changes, p)
		}
		refused, err := s.validate(ctx, biz, body)
		if err != nil {
			s.log.Warn("records: validation webhook failed", "biz", biz.Name, "err", err)
			if ctx.Err() != nil {
				return &writeError{syncpoint.Errorf(syncpoint.CodeUnavailable, "the write was interrupted; send it again with the same write_id")}
			}
			return &writeError{syncpoint.Errorf(syncpoint.CodeUnavailable, "the business webhook of biz %s did not answer; nothing was applied, send the write again with the same write_id", biz.Name)}
		}
		for _, c := range group {
			for _, fe := range refused[c.rec.ID] {
				c.fail(CodeRejected, fe.field, fe.message, nil)
			}
		}
	}
	return nil
}

// probe asks the store about the replays, and about the refused changes
// in case an earlier try of the same write applied them after all (its
// result was lost, and the record changed again since): the store answers
// a spent idempotency key with the original seq before it looks at
// IfKeySeq, as a duplicate for the same change or a mismatch for another,
// and an impossible IfKeySeq appends nothing otherwise.
func (s *Service) probe(ctx context.Context, all []*change) error {
	var cs []*change
	var reqs []syncpoint.AppendRequest
	never := uint64(math.MaxUint64)
	for _, c := range all {
		if c.state != stateFailed && c.state != stateReplay || c.idem == "" {
			continue
		}
		cs = append(cs, c)
		reqs = append(reqs, syncpoint.AppendRequest{
			Entry:       syncpoint.Entry{Channel: c.ch, Op: syncpoint.OpPut, Key: c.rec.ID, IdempotencyKey: c.idem},
			Policy:      c.biz.Policy(),
			IfKeySeq:    &never,
			ContentHash: c.hash,
		})
	}
	if len(reqs) == 0 {
		return nil
	}
	res, err := s.store.Append(ctx, reqs)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	for i, c := range cs {
		switch {
		case i >= len(res):
		case res[i].Duplicate:
			c.errs = nil
			c.saved(res[i].Seq, true)
		case errors.Is(res[i].Err, syncpoint.ErrIdempotencyMismatch):
			c.errs = nil
			c.failReused(res[i].Seq)
		case c.state == stateReplay:
			// The store forgot the key (past retention) but the entry
			// still names it: as before hashes were kept, it is this change.
			c.saved(c.cur.Seq, true)
		}
	}
	return nil
}

// failReused refuses a change whose write_id already named another change
// to the same record, saved as seq.
func (c *change) failReused(seq uint64) {
	c.fail(string(syncpoint.CodeIdempotencyMismatch), "",
		fmt.Sprintf("write_id was already used for another change to this record, saved as seq %d; send a new change under a new write_id", seq), c.cur)
}

// refreshCurrent reads back the record of merges that kept some fields from
// the server, so their conflicts carry the record as it is now.
func (s *Service) refreshCurrent(ctx context.Context, all []*change) error {
	for _, c := range all {
		if c.state != stateSaved || len(c.conflicts) == 0 {
			continue
		}
		cur, err := s.store.KeyEntry(ctx, c.ch, c.rec.ID)
		if err != nil {
			return fmt.Errorf("read merged record: %w", err)
		}
		for _, f := range c.conflicts {
			c.errs = append(c.errs, wire.RecordError{Channel: c.chName, ID: c.rec.ID, Field: f, Code: string(syncpoint.CodeConflict),
				Message: fmt.Sprintf("field %q changed on the server and on this device since base_seq %d; the server's value was kept", f, c.rec.BaseSeq),
				Current: toWireEntry(&cur)})
		}
	}
	return nil
}

// result lists the outcome of each change in the order of the write.
func (s *Service) result(writeID string, all []*change) *wire.WriteResult {
	res := &wire.WriteResult{WriteID: writeID}
	for _, c := range all {
		label := unknownBiz
		if c.biz != nil {
			label = c.biz.Name
		}
		if c.state == stateSaved {
			res.Saved = append(res.Saved, wire.Saved{Channel: c.chName, ID: c.rec.ID, Seq: c.seq, Overwrote: c.overwrote})
			s.metrics.change(label, "saved")
		}
		for _, e := range c.errs {
			s.metrics.change(label, e.Code)
		}
		res.Errors = append(res.Errors, c.errs...)
	}
	return res
}

// toWireEntry is a stored entry as a device sees it.
func toWireEntry(e *syncpoint.Entry) *wire.Entry {
	if e == nil {
		return nil
	}
	return &wire.Entry{
		Channel:   e.Channel.String(),
		Seq:       e.Seq,
		Op:        string(e.Op),
		Key:       e.Key,
		Data:      e.Data,
		CreatedAt: e.CreatedAt,
		ExpiresAt: e.ExpiresAt,
		Origin:    e.Origin,
	}
}
