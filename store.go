package syncpoint

import (
	"context"
	"time"
)

// Policy is the part of a biz's settings that governs its channels' storage.
type Policy struct {
	Retention  time.Duration // how long idempotency keys and tombstones are kept
	MaxBacklog int           // keep only the newest N entries per channel; 0: all
	Compact    bool          // a newer put/delete for a key removes older entries for it
}

// AppendRequest asks to append one entry to its channel.
type AppendRequest struct {
	// Entry carries Channel, Op, Key, Data, CreatedAt, ExpiresAt,
	// Conditions, Origin and IdempotencyKey. The store assigns Seq.
	Entry  Entry
	Policy Policy
	// IfKeySeq, when set, makes the append conditional: the newest entry
	// for Entry.Key (put or delete) must have this seq, 0 meaning the key
	// has no entry at all. Otherwise the result's Err is ErrKeyChanged and
	// nothing is appended for this request.
	IfKeySeq *uint64
	// ContentHash, when set (at most MaxContentHashLen bytes), stands for
	// the content the idempotency key is checked against, instead of
	// Entry.ContentHash(). Record sync hashes the change a device sent: the
	// entry it appends for that change (a merge) can differ between tries.
	ContentHash []byte
}

// MaxContentHashLen bounds AppendRequest.ContentHash.
const MaxContentHashLen = 64

// AppendResult is the outcome of one AppendRequest.
type AppendResult struct {
	Seq       uint64
	Epoch     string
	Duplicate bool // the idempotency key was seen: Seq is the original entry's
	// Err is ErrKeyChanged, or ErrIdempotencyMismatch (then Seq is the
	// original entry's); other failures fail the whole call.
	Err    error
	KeySeq uint64 // with ErrKeyChanged: the seq the key is really at
}

// Page is a slice of a channel read after some seq.
type Page struct {
	Info    ChannelInfo
	Entries []Entry
}

// KeySeq is a live key of a channel and the seq of its newest entry.
type KeySeq struct {
	Key string
	Seq uint64
}

// KeyPage is a slice of a channel's live keys, in key order.
type KeyPage struct {
	Info ChannelInfo
	Keys []KeySeq
	// More reports that live keys above the last one listed may remain.
	More bool
}

// Store keeps the logs, device sync points, devices, bizzes and access
// tokens.
//
// Every method is safe for concurrent use, and so are several handles on
// one backend (one per node, for a store shared by a cluster): what one
// handle's call returned, every handle's later calls see, and seqs stay
// gap-free and in call order across handles.
//
// A channel's epoch changes only when its history cannot continue: on
// ResetChannel, when its biz is deleted (a biz created again under the name
// starts new channels), and when the store is restored from a backup. A
// restored store shows a new epoch for every channel, so that a device at,
// behind or ahead of the backup point is told reset instead of taking the
// rewound history for its own (pebble mixes a store incarnation, new at
// each restore, into every epoch).
//
// Besides the errors each method lists, every method returns ctx's error
// when ctx ends before the method took effect (a cancelled write wrote
// nothing), ErrClosed once Close was called, and other errors (I/O, a
// corrupt record, a lost connection) that callers treat as internal. A
// write also returns ErrUnavailable (wrapped with the cause) while the
// store cannot take writes: a full or failing disk, a directory it may not
// write, a database that is down. Health reports the same state.
type Store interface {
	// Append appends the entries and returns one result per request, in
	// order. Seqs are assigned per channel in call order, from 1, without
	// gaps; a new channel gets an epoch. When Append returns nil every
	// result is durable. Compaction and MaxBacklog trimming are applied as
	// part of the append.
	//
	// Each request is settled in this order, and the first rule that
	// applies decides it:
	//  1. Its idempotency key was already used in the channel within the
	//     policy's retention. If the content is the same (ContentHash, else
	//     Entry.ContentHash()), the result has the original seq and
	//     Duplicate set; if not, the result's Err is ErrIdempotencyMismatch
	//     with the original seq. Either way nothing is appended. A key kept
	//     without its content's hash (a store written before hashes were
	//     kept) counts as the same content. This comes before IfKeySeq, so
	//     a retried conditional append answers as a duplicate even though
	//     its own entry moved the key; record sync relies on it to apply an
	//     upload exactly once.
	//  2. IfKeySeq does not hold: the result's Err is ErrKeyChanged.
	//  3. The entry is appended.
	//
	// Errors: a *Error with CodeInvalid when a request is malformed (bad
	// channel or op, a put or delete without a key, a conditional append
	// without a key, a key, idempotency key or content hash over its
	// limit, a negative MaxBacklog); then nothing of the call is appended.
	// An I/O error also means that nothing of the call is durable or
	// visible.
	Append(ctx context.Context, reqs []AppendRequest) ([]AppendResult, error)

	// Read returns up to limit entries with seq > after, in seq order,
	// skipping entries that are expired at now, compacted or trimmed, with
	// the channel's info. It never returns an entry that is not yet
	// durable. A limit of 0 or less means a default of the store's. An
	// unknown channel gives an empty page whose Info has an empty epoch,
	// FirstSeq 1 and LastSeq 0, and no error.
	// Errors: a *Error with CodeInvalid when ch is malformed.
	Read(ctx context.Context, ch Channel, after uint64, limit int, now time.Time) (Page, error)

	// Keys lists the channel's live keys above after, in byte order of the
	// key, each with the seq of its newest entry: up to limit of them, where
	// a limit of 0 or less means a default of the store's, and a store may
	// list fewer than asked (More then says so). A key is live when KeyEntry
	// would return a put with a seq of at least FirstSeq that has not
	// expired at now. So a key whose newest entry is a delete (a tombstone,
	// until Sweep removes it) is left out, as is one whose newest put
	// expired or was trimmed, even if an older put of it is still kept (a
	// biz that does not compact); a key that only msg entries carry was
	// never a key. As with Read, no entry that is not yet durable counts.
	// The page's Info is the channel's as of the listing. An unknown
	// channel gives an empty page whose Info has an empty epoch, FirstSeq 1
	// and LastSeq 0, and no error. A PostgreSQL store must order keys by
	// their bytes (COLLATE "C"), as Go compares strings.
	// Errors: a *Error with CodeInvalid when ch is malformed.
	Keys(ctx context.Context, ch Channel, after string, limit int, now time.Time) (KeyPage, error)

	// Channel returns the channel's info. Errors: ErrNotFound.
	Channel(ctx context.Context, ch Channel) (ChannelInfo, error)

	// KeyEntry returns the newest entry (put or delete) for key in the
	// channel, even if it expired. Errors: ErrNotFound.
	KeyEntry(ctx context.Context, ch Channel, key string) (Entry, error)

	// Entry returns the entry with this seq. Errors: ErrNotFound when it
	// never existed or was compacted, trimmed or swept.
	Entry(ctx context.Context, ch Channel, seq uint64) (Entry, error)

	// ResetChannel drops the channel's entries and gives it a new epoch;
	// seqs start again at 1. Errors: ErrNotFound.
	ResetChannel(ctx context.Context, ch Channel) (ChannelInfo, error)

	// Sweep deletes entries expired at now, tombstones and idempotency keys
	// past their retention and access tokens expired at now, and advances
	// FirstSeq over what it removed when nothing older is left. It returns how many entries it removed.
	// It may run while entries are appended and while other Sweeps run, on
	// this handle or another: each entry is removed, and counted, by one
	// Sweep only, and an entry that has not expired at now is never
	// removed.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// SaveSyncPoints stores device positions; a position never moves
	// backwards within an epoch (such a save is ignored, not an error).
	// Errors: a *Error with CodeInvalid when a device id or channel is
	// malformed; then nothing of the call is saved.
	SaveSyncPoints(ctx context.Context, points []SyncPoint) error
	// SyncPoints returns every stored position of a device; none for a
	// device the store does not know.
	SyncPoints(ctx context.Context, deviceID string) ([]SyncPoint, error)

	// SaveUserPositions stores users' positions in channels of
	// multi_device: false bizzes; as with sync points, a position never
	// moves backwards within an epoch. They have a keyspace of their own,
	// so a device named like a user ("user:u1") reaches none of them.
	// Errors: a *Error with CodeInvalid when a user id or channel is
	// malformed; then nothing of the call is saved.
	SaveUserPositions(ctx context.Context, points []UserPosition) error
	// UserPositions returns every stored position of a user; none for a
	// user the store does not know.
	UserPositions(ctx context.Context, userID string) ([]UserPosition, error)

	// SaveCursor stores a reader's position in a channel, replacing the
	// one stored: a cursor may move back, to the start of a new epoch.
	// Cursors have a keyspace of their own, apart from devices.
	// Errors: a *Error with CodeInvalid when the reader name (a valid id)
	// or the channel is malformed.
	SaveCursor(ctx context.Context, c Cursor) error
	// Cursors returns every cursor of a reader.
	Cursors(ctx context.Context, reader string) ([]Cursor, error)

	// SaveDevice creates or replaces a device.
	// Errors: a *Error with CodeInvalid when its id or user id is
	// malformed.
	SaveDevice(ctx context.Context, d Device) error
	// Device returns a device. Errors: ErrNotFound.
	Device(ctx context.Context, id string) (Device, error)
	// UserDevices returns a user's devices, most recently seen first.
	UserDevices(ctx context.Context, userID string) ([]Device, error)

	// SaveBiz creates or replaces a biz. A biz created under a name no
	// stored biz has starts without channels: whatever an earlier biz of
	// the name left behind is dropped first, as DeleteBiz drops it.
	// Errors: a *Error with CodeInvalid when its name is malformed.
	SaveBiz(ctx context.Context, b Biz) error
	// DeleteBiz removes a biz and drops its channels: their entries, keys
	// and idempotency keys go, and each channel of a biz created again
	// under the name starts afresh, at seq 1 in a new epoch. A device that
	// still holds a position of the old biz is therefore told reset, and
	// never gets the old history as if it were new. Sync points, user
	// positions and cursors that name the channels stay; they match no
	// epoch any more. Errors: ErrNotFound.
	DeleteBiz(ctx context.Context, name string) error
	// Bizzes returns every biz, by name; none in a new store. It returns
	// no error of its own beyond those every method returns.
	Bizzes(ctx context.Context) ([]Biz, error)

	// PutBlob keeps a small value under a key until expires; record sync
	// keeps write results and HTTP sync keeps sessions here.
	// Errors: a *Error with CodeInvalid when the key is empty or too long.
	PutBlob(ctx context.Context, key string, value []byte, expires time.Time) error
	// Blob returns a value kept by PutBlob. Errors: ErrNotFound, also once
	// it expired.
	Blob(ctx context.Context, key string) ([]byte, error)

	// SaveToken stores a new access token. From then on TokenByHash finds
	// it and UserTokens lists it, until it expires or DeleteToken removes
	// it. Errors: a *Error with CodeInvalid when it is malformed
	// (AccessToken.Validate); a *Error with CodeConflict when a token with
	// its id or its hash is stored already. Either way nothing is saved.
	SaveToken(ctx context.Context, t AccessToken) error
	// TokenByHash returns the token whose secret has this SHA-256.
	// Errors: ErrNotFound when none is stored: never saved, deleted, or
	// expired by the store's clock (an expired token may stay stored until
	// Sweep, but is not found); a *Error with CodeInvalid when hash is not
	// AccessTokenHashLen bytes.
	TokenByHash(ctx context.Context, hash []byte) (AccessToken, error)
	// UserTokens returns the user's tokens that have not expired by the
	// store's clock, newest first; none for a user without any.
	// Errors: a *Error with CodeInvalid when the user id is malformed.
	UserTokens(ctx context.Context, userID string) ([]AccessToken, error)
	// DeleteToken removes a token and returns it as it was; its hash finds
	// nothing once DeleteToken returned, on every handle. Errors:
	// ErrNotFound when no token has the id (also once it expired); a
	// *Error with CodeInvalid when the id is malformed.
	DeleteToken(ctx context.Context, id string) (AccessToken, error)

	// Health returns nil while the store takes writes, and otherwise an
	// error wrapping ErrUnavailable that says why; a server is not ready
	// while it fails. It writes nothing.
	Health(ctx context.Context) error

	// Close finishes in-flight appends and releases the store.
	Close() error
}

// A PageReader is a Store that can read a page into a caller's slice. A
// catch-up reads page after page, each a few hundred bytes an entry; one
// slice reused for all of them spares the collector that garbage.
type PageReader interface {
	// ReadInto is Read, with the page's entries in buf's array when it has
	// room for them (its length is ignored). The caller must be done with
	// what buf held.
	ReadInto(ctx context.Context, ch Channel, after uint64, limit int, now time.Time, buf []Entry) (Page, error)
}

// HeadReader is a Store that reads many channels' heads in one call. The
// hub uses it to find the entries a broker lost: after an EventLost it
// checks every channel it has readers for against the store, and reads
// what they are behind.
type HeadReader interface {
	// Heads returns the info of each channel, in the order asked, as
	// Channel would (the channels need not be distinct). A channel never
	// created gets the info of Read's unknown channel: an empty epoch,
	// FirstSeq 1 and LastSeq 0. Errors: a *Error with CodeInvalid when a
	// channel is malformed.
	Heads(ctx context.Context, chans []Channel) ([]ChannelInfo, error)
}
