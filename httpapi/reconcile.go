package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/feed"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// Reconcile by manifest: a device whose sync point is gone (reset or gap)
// lists the records it holds, {id, seq, hash}, in pages by id range, and
// gets back only what differs. docs/http-sync-reconcile.md states the
// protocol; the limits are here.
const (
	// MaxReconcileRecords bounds the records of one request; more is 413.
	MaxReconcileRecords = 10_000
	// MaxReconcileAnswerBytes bounds the data of the puts of one answer
	// (one put always goes); past it the answer ends early, with next_id.
	MaxReconcileAnswerBytes = 4 << 20
	// maxReconcileSettled bounds the ids one answer settles, the device's
	// and the server's together, so that a short manifest over a range of
	// many server keys is answered in several turns.
	maxReconcileSettled = 2 * MaxReconcileRecords
	// reconcileKeysChunk is how many keys one store listing takes.
	reconcileKeysChunk = 1000
	// RecordHashLen is the length of a record's hash (RecordHash).
	RecordHashLen = 16
	// maxEpochLen bounds an epoch a client names.
	maxEpochLen = 128
)

// reconcilePath is the device route of reconcile by manifest.
const reconcilePath = "/v1/sync/reconcile"

// The headers (and the query parameter, for clients that cannot set
// headers) that name a device on the device routes, as on every HTTP form.
const (
	headerDevice     = "X-Device-Id"
	headerPlatform   = "X-Device-Platform"
	headerAppVersion = "X-Device-App-Version"
	queryDevice      = "device_id"
	maxDeviceField   = 64
)

// reconcileRequest is the body of POST /v1/sync/reconcile.
type reconcileRequest struct {
	Biz   string          `json:"biz"`
	Scope *reconcileScope `json:"scope"`
	// Epoch is the epoch the records' seqs are of. When it is the
	// channel's, equal seqs mean equal versions; otherwise only hashes
	// compare.
	Epoch string `json:"epoch"`
	// Position is the first answer's, sent back with every later page so
	// that all pages answer for the same point of the channel.
	Position *reconcilePosition `json:"position"`
	AfterID  string             `json:"after_id"`
	UpToID   *string            `json:"up_to_id"`
	Records  []manifestRecord   `json:"records"`
}

// reconcileScope names the channel's target, as in one-shot sync: at most
// one of the fields; none means the biz's default target for the device.
type reconcileScope struct {
	User   string `json:"user"`
	Group  string `json:"group"`
	Device string `json:"device"`
}

// manifestRecord is a record the device holds.
type manifestRecord struct {
	ID   string `json:"id"`
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

type reconcilePosition struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// reconcileAnswer is the answer's shape. writeReconcile encodes it by hand,
// to pass each record's data through byte for byte (the hash is of those
// bytes); TestReconcileAnswerMatchesType holds the two together.
type reconcileAnswer struct {
	Put      []reconcilePut  `json:"put"`
	Same     []reconcileSame `json:"same"`
	Stale    []string        `json:"stale"`
	Delete   []string        `json:"delete"`
	Position answerPosition  `json:"position"`
	NextID   *string         `json:"next_id,omitempty"`
}

// reconcilePut is a record the device lacks or holds another version of.
// Times are Unix milliseconds, as in the device protocol.
type reconcilePut struct {
	ID        string          `json:"id"`
	Seq       uint64          `json:"seq"`
	Data      json.RawMessage `json:"data,omitempty"`
	CreatedAt int64           `json:"created_at"`
	ExpiresAt int64           `json:"expires_at,omitempty"`
	Origin    string          `json:"origin"`
}

// reconcileSame is a record whose data the device has, under another seq:
// it takes this seq and expiry (Unix milliseconds; absent: never).
type reconcileSame struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	ExpiresAt int64  `json:"expires_at,omitempty"`
}

type answerPosition struct {
	Channel string `json:"channel"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
}

// RecordHash is what a manifest record's hash is: the first 12 bytes of
// the SHA-256 of the record's data, byte for byte as stored, in unpadded
// base64url. The SDK computes the same over what it received. Validity is
// left out, so that a record published again unchanged (with a new expiry)
// is recognised; same items carry the new expiry.
func RecordHash(data []byte) string {
	sum := sha256.Sum256(data)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// decodeReconcile decodes and checks a reconcile body; the records come
// back sorted by id. Errors are *syncpoint.Error.
func decodeReconcile(body []byte) (reconcileRequest, error) {
	var req reconcileRequest
	err := checkIJSON(body)
	if err == nil {
		err = decodeStrict(body, &req)
	}
	if err != nil {
		return reconcileRequest{}, err
	}
	if err := syncpoint.ValidateBizName(req.Biz); err != nil {
		return reconcileRequest{}, err
	}
	if sc := req.Scope; sc != nil {
		n := 0
		for _, v := range []struct{ what, id string }{{"scope.user", sc.User}, {"scope.group", sc.Group}, {"scope.device", sc.Device}} {
			if v.id == "" {
				continue
			}
			if err := syncpoint.ValidateID(v.what, v.id); err != nil {
				return reconcileRequest{}, err
			}
			n++
		}
		if n > 1 {
			return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "scope: name one of user, group and device")
		}
	}
	if len(req.Epoch) > maxEpochLen {
		return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "epoch: at most %d bytes", maxEpochLen)
	}
	if p := req.Position; p != nil && (len(p.Epoch) > maxEpochLen || p.Epoch == "" && p.Seq != 0) {
		return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "position: want the position of the first answer")
	}
	if req.AfterID != "" {
		if err := validRecordID("after_id", req.AfterID); err != nil {
			return reconcileRequest{}, err
		}
	}
	if up := req.UpToID; up != nil {
		if err := validRecordID("up_to_id", *up); err != nil {
			return reconcileRequest{}, err
		}
		if *up <= req.AfterID {
			return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "up_to_id %q is not above after_id %q", clip(*up), clip(req.AfterID))
		}
	}
	if len(req.Records) > MaxReconcileRecords {
		return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeTooLarge, "records: %d given; one request takes at most %d: send the manifest in pages by id range (after_id, up_to_id]", len(req.Records), MaxReconcileRecords)
	}
	for i := range req.Records {
		rec := &req.Records[i]
		if err := validRecordID(fmt.Sprintf("records[%d].id", i), rec.ID); err != nil {
			return reconcileRequest{}, err
		}
		if rec.ID <= req.AfterID || req.UpToID != nil && rec.ID > *req.UpToID {
			return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "records[%d].id %q is outside the page's range (after_id, up_to_id]", i, clip(rec.ID))
		}
		if rec.Hash != "" && !validHash(rec.Hash) {
			return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "records[%d].hash: want %d characters of unpadded base64url", i, RecordHashLen)
		}
	}
	slices.SortFunc(req.Records, func(a, b manifestRecord) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(req.Records); i++ {
		if req.Records[i].ID == req.Records[i-1].ID {
			return reconcileRequest{}, syncpoint.Errorf(syncpoint.CodeInvalid, "records: id %q is given twice", clip(req.Records[i].ID))
		}
	}
	return req, nil
}

// validRecordID holds an id to the rules of entry keys.
func validRecordID(what, id string) error {
	if id == "" || len(id) > syncpoint.MaxKeyLen || !utf8.ValidString(id) || strings.ContainsFunc(id, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "%s: want 1-%d bytes of UTF-8 without control characters", what, syncpoint.MaxKeyLen)
	}
	return nil
}

func validHash(h string) bool {
	if len(h) != RecordHashLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(h)
	return err == nil
}

// deviceIdentity verifies a device route's bearer token and reads the
// device's name and what it says about itself. It checks nothing against
// the store; bindDevice does.
func (s *Server) deviceIdentity(r *http.Request) (syncpoint.Identity, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return syncpoint.Identity{}, syncpoint.Errorf(syncpoint.CodeUnauthorized, "Authorization header: want Bearer <device token>")
	}
	if s.devices == nil {
		return syncpoint.Identity{}, syncpoint.Errorf(syncpoint.CodeUnauthorized, "this server takes no device tokens here")
	}
	claims, err := s.devices.Verify(strings.TrimSpace(token))
	if err != nil {
		return syncpoint.Identity{}, err
	}
	dev := r.Header.Get(headerDevice)
	if q := r.URL.Query().Get(queryDevice); dev == "" {
		dev = q
	} else if q != "" && q != dev {
		return syncpoint.Identity{}, syncpoint.Errorf(syncpoint.CodeInvalid, "the request names two devices; name one")
	}
	if dev == "" {
		return syncpoint.Identity{}, syncpoint.Errorf(syncpoint.CodeInvalid, "no device named: send %s (or the %s query parameter)", headerDevice, queryDevice)
	}
	if err := syncpoint.ValidateID("device id", dev); err != nil {
		return syncpoint.Identity{}, err
	}
	id := syncpoint.Identity{DeviceID: dev, UserID: claims.User, Groups: claims.Groups, Platform: r.Header.Get(headerPlatform), AppVersion: r.Header.Get(headerAppVersion)}
	if len(id.Platform) > maxDeviceField || len(id.AppVersion) > maxDeviceField {
		return syncpoint.Identity{}, syncpoint.Errorf(syncpoint.CodeInvalid, "platform and app version are limited to %d bytes", maxDeviceField)
	}
	return id, nil
}

// scopeChannel is the channel a request means.
func scopeChannel(b syncpoint.Biz, sc *reconcileScope, id syncpoint.Identity) (syncpoint.Channel, error) {
	if sc == nil || *sc == (reconcileScope{}) {
		ch, ok := id.DefaultChannel(b)
		if !ok {
			return syncpoint.Channel{}, syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s is a group biz: name the group in scope", b.Name)
		}
		return ch, nil
	}
	t := syncpoint.GlobalTarget()
	switch {
	case sc.User != "":
		t = syncpoint.UserTarget(sc.User)
	case sc.Group != "":
		t = syncpoint.GroupTarget(sc.Group)
	case sc.Device != "":
		t = syncpoint.DeviceTarget(sc.Device)
	}
	if t.Kind != b.Target {
		return syncpoint.Channel{}, syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s has %s targets; scope names a %s", b.Name, b.Target, t.Kind)
	}
	return syncpoint.Channel{Biz: b.Name, Target: t}, nil
}

// handleReconcile answers one page of a manifest: see
// docs/http-sync-reconcile.md.
func (s *Server) handleReconcile(w http.ResponseWriter, r *http.Request) error {
	id, err := s.deviceIdentity(r)
	if err != nil {
		return err
	}
	body, done, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	req, err := decodeReconcile(body)
	done()
	if err != nil {
		return err
	}
	b, err := s.registry.Lookup(req.Biz)
	if err != nil {
		return err
	}
	if !b.Compact || !b.Persistent {
		return syncpoint.Errorf(syncpoint.CodeInvalid, "biz %s is not a compact, persistent biz: reconcile needs one record per key; sync it from position 0 instead", b.Name)
	}
	ctx := r.Context()
	if err := feed.BindDevice(ctx, s.store, &id, s.clock.Now()); err != nil {
		return err
	}
	ch, err := scopeChannel(b, req.Scope, id)
	if err != nil {
		return err
	}
	if !id.CanRead(b, ch) {
		return syncpoint.Errorf(syncpoint.CodeForbidden, "the token does not grant %s", ch)
	}
	w.Header().Set("Cache-Control", "no-store")
	for attempt := 0; ; attempt++ {
		ans, err := s.reconcile(ctx, ch, id, &req)
		var reset *resetDuring
		if errors.As(err, &reset) && req.Position == nil && attempt < 3 {
			continue // a first page simply starts over from the new head
		}
		if reset != nil {
			return syncpoint.Errorf(syncpoint.CodeConflict, "channel %s was reset during the reconcile: start again from the first page, without a position", ch)
		}
		if err != nil {
			return err
		}
		writeBody(w, http.StatusOK, ans)
		return nil
	}
}

// resetDuring means the channel's epoch changed under a reconcile.
type resetDuring struct{}

func (*resetDuring) Error() string { return "the channel was reset during the reconcile" }

// reconcile computes one answer. Its position P is the channel's head,
// taken before any key is listed (or the first page's, sent back): every
// listing that follows sees the channel at P or later, so what it leaves
// out changed after P, and the device's sync from P brings it.
//
// For each id in the range, the device's record d and the server's newest
// live put s (a listed key):
//   - s.seq > P: the sync from P brings s; the device's copy goes stale
//     when its seq is not below s's (another epoch's), so that s applies;
//   - s.seq ≤ P, for the device (conditions): nothing when d has s's seq
//     in s's epoch, or s's seq and data; same (take s's seq and expiry)
//     when d has s's data under another seq; put otherwise;
//   - not listed, or not for the device, while d exists: delete, unless a
//     newer delete or put than P comes in the sync from P (then stale, or
//     nothing).
func (s *Server) reconcile(ctx context.Context, ch syncpoint.Channel, id syncpoint.Identity, req *reconcileRequest) ([]byte, error) {
	now := s.now()
	info, err := s.store.Channel(ctx, ch)
	switch {
	case errors.Is(err, syncpoint.ErrNotFound):
		info = syncpoint.ChannelInfo{Channel: ch, FirstSeq: 1}
	case err != nil:
		return nil, fmt.Errorf("channel %s: %w", ch, err)
	}
	pos := syncpoint.Position{Epoch: info.Epoch, Seq: info.LastSeq}
	if p := req.Position; p != nil {
		if p.Epoch != info.Epoch && p.Epoch != "" {
			return nil, &resetDuring{}
		}
		if p.Epoch == info.Epoch && p.Seq > info.LastSeq {
			return nil, syncpoint.Errorf(syncpoint.CodeInvalid, "position seq %d is beyond the channel's last seq %d", p.Seq, info.LastSeq)
		}
		// A first page of a channel that did not exist yet started at
		// seq 0, which matches any epoch.
		pos = syncpoint.Position{Epoch: p.Epoch, Seq: p.Seq}
		if p.Epoch == "" {
			pos.Epoch = info.Epoch
		}
	}
	sameEpoch := req.Epoch != "" && req.Epoch == info.Epoch
	rc := reconcileRun{s: s, ctx: ctx, ch: ch, id: id, now: now, pos: pos, sameEpoch: sameEpoch, cursor: req.AfterID, more: info.Epoch != "", upTo: req.UpToID}
	recs := req.Records
	var nextID *string
	for ri := 0; ; {
		if len(rc.keys) == 0 && rc.more {
			if err := rc.fetch(); err != nil {
				return nil, err
			}
			continue
		}
		var key *syncpoint.KeySeq
		var rec *manifestRecord
		switch {
		case len(rc.keys) > 0 && ri < len(recs):
			switch c := strings.Compare(rc.keys[0].Key, recs[ri].ID); {
			case c < 0:
				key = &rc.keys[0]
			case c > 0:
				rec = &recs[ri]
			default:
				key, rec = &rc.keys[0], &recs[ri]
			}
		case len(rc.keys) > 0:
			key = &rc.keys[0]
		case ri < len(recs):
			rec = &recs[ri]
		}
		if key == nil && rec == nil {
			break
		}
		var settled string
		if key != nil {
			settled = key.Key
			rc.keys = rc.keys[1:]
		}
		if rec != nil {
			settled = rec.ID
			ri++
		}
		if err := rc.settle(settled, key, rec); err != nil {
			return nil, err
		}
		rc.settled++
		if rc.full() && (len(rc.keys) > 0 || rc.more || ri < len(recs)) {
			nextID = &settled
			break
		}
	}
	return rc.encode(nextID), nil
}

// reconcileRun is one answer in the making.
type reconcileRun struct {
	s         *Server
	ctx       context.Context
	ch        syncpoint.Channel
	id        syncpoint.Identity
	now       time.Time
	pos       syncpoint.Position
	sameEpoch bool
	upTo      *string

	// keys are listed server keys not settled yet; more, that the store
	// may list more above cursor.
	keys   []syncpoint.KeySeq
	cursor string
	more   bool

	puts     []syncpoint.Entry
	putBytes int
	same     []reconcileSame
	stale    []string
	deletes  []string
	settled  int
}

// fetch lists the next chunk of live keys of the range.
func (rc *reconcileRun) fetch() error {
	p, err := rc.s.store.Keys(rc.ctx, rc.ch, rc.cursor, reconcileKeysChunk, rc.now)
	if err != nil {
		return fmt.Errorf("keys of %s: %w", rc.ch, err)
	}
	if p.Info.Epoch != rc.pos.Epoch && rc.pos.Seq > 0 {
		return &resetDuring{}
	}
	// Without a key listed the cursor cannot move: the range is done.
	rc.more = p.More && len(p.Keys) > 0
	if len(p.Keys) > 0 {
		rc.cursor = p.Keys[len(p.Keys)-1].Key
	}
	rc.keys = p.Keys
	if rc.upTo != nil {
		i, _ := slices.BinarySearchFunc(rc.keys, *rc.upTo, func(k syncpoint.KeySeq, up string) int {
			if k.Key <= up {
				return -1
			}
			return 1
		})
		if i < len(rc.keys) {
			rc.keys, rc.more = rc.keys[:i], false
		} else if rc.cursor >= *rc.upTo {
			rc.more = false
		}
	}
	return nil
}

// full reports whether the answer has reached a bound.
func (rc *reconcileRun) full() bool {
	return rc.putBytes >= MaxReconcileAnswerBytes || rc.settled >= maxReconcileSettled
}

// settle decides one id; key is the server's live key of that id, rec the
// device's record, either may be nil.
func (rc *reconcileRun) settle(id string, key *syncpoint.KeySeq, rec *manifestRecord) error {
	if key != nil && key.Seq > rc.pos.Seq {
		rc.later(id, key.Seq, rec)
		return nil
	}
	if key != nil {
		if rec != nil && rc.sameEpoch && rec.Seq == key.Seq {
			return nil
		}
		e, err := rc.s.store.Entry(rc.ctx, rc.ch, key.Seq)
		switch {
		case errors.Is(err, syncpoint.ErrNotFound):
			// Compacted since the listing: a newer entry is past P.
			return rc.gone(id, rec)
		case err != nil:
			return fmt.Errorf("entry %s/%d: %w", rc.ch, key.Seq, err)
		}
		if e.Expired(rc.now) || !e.Conditions.Match(rc.id.Platform, rc.id.AppVersion) {
			return rc.gone(id, rec)
		}
		if rec != nil && rec.Hash != "" && rec.Hash == RecordHash(e.Data) {
			if rec.Seq != key.Seq {
				rc.same = append(rc.same, reconcileSame{ID: id, Seq: key.Seq, ExpiresAt: unixMs(e.ExpiresAt)})
			}
			return nil
		}
		rc.puts = append(rc.puts, e)
		rc.putBytes += len(e.Data)
		return nil
	}
	return rc.gone(id, rec)
}

// gone settles an id the server has no live record of for this device, at
// least as of P.
func (rc *reconcileRun) gone(id string, rec *manifestRecord) error {
	if rec == nil {
		return nil
	}
	e, err := rc.s.store.KeyEntry(rc.ctx, rc.ch, id)
	switch {
	case errors.Is(err, syncpoint.ErrNotFound):
	case err != nil:
		return fmt.Errorf("key entry %s %q: %w", rc.ch, id, err)
	case e.Seq > rc.pos.Seq && (e.Op == syncpoint.OpDelete || !e.Expired(rc.now) && e.Conditions.Match(rc.id.Platform, rc.id.AppVersion)):
		rc.later(id, e.Seq, rec)
		return nil
	}
	rc.deletes = append(rc.deletes, id)
	return nil
}

// later settles an id whose newest entry, at seq, comes in the sync from P.
func (rc *reconcileRun) later(id string, seq uint64, rec *manifestRecord) {
	if rec != nil && rec.Seq >= seq {
		rc.stale = append(rc.stale, id)
	}
}

// encode writes the answer by hand: data goes through as stored.
func (rc *reconcileRun) encode(nextID *string) []byte {
	b := make([]byte, 0, 256+rc.putBytes+64*(len(rc.puts)+len(rc.same)+len(rc.stale)+len(rc.deletes)))
	b = append(b, `{"put":[`...)
	for i := range rc.puts {
		e := &rc.puts[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsontext.AppendString(b, e.Key)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, e.Seq, 10)
		if len(e.Data) > 0 {
			b = append(b, `,"data":`...)
			b = append(b, e.Data...)
		}
		b = append(b, `,"created_at":`...)
		b = strconv.AppendInt(b, unixMs(e.CreatedAt), 10)
		if ms := unixMs(e.ExpiresAt); ms != 0 {
			b = append(b, `,"expires_at":`...)
			b = strconv.AppendInt(b, ms, 10)
		}
		b = append(b, `,"origin":`...)
		b = jsontext.AppendString(b, e.Origin)
		b = append(b, '}')
	}
	b = append(b, `],"same":[`...)
	for i, sm := range rc.same {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = jsontext.AppendString(b, sm.ID)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, sm.Seq, 10)
		if sm.ExpiresAt != 0 {
			b = append(b, `,"expires_at":`...)
			b = strconv.AppendInt(b, sm.ExpiresAt, 10)
		}
		b = append(b, '}')
	}
	b = appendIDs(append(b, `],"stale":`...), rc.stale)
	b = appendIDs(append(b, `,"delete":`...), rc.deletes)
	b = append(b, `,"position":{"channel":`...)
	b = jsontext.AppendString(b, rc.ch.String())
	b = append(b, `,"epoch":`...)
	b = jsontext.AppendString(b, rc.pos.Epoch)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, rc.pos.Seq, 10)
	b = append(b, '}')
	if nextID != nil {
		b = append(b, `,"next_id":`...)
		b = jsontext.AppendString(b, *nextID)
	}
	return append(b, "}\n"...)
}

func appendIDs(b []byte, ids []string) []byte {
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, id)
	}
	return append(b, ']')
}
