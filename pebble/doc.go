// Package pebble is the embedded Store: syncpoint's logs, sync points,
// devices, bizzes, blobs and access tokens kept in a Pebble database in one
// directory.
//
// Every write goes through one committer goroutine that drains all pending
// requests into one batch, applies it without waiting for the fsync, and
// hands it to a syncer goroutine; while one batch syncs the next one forms,
// so batches grow with load and durability costs one fsync per batch. A
// caller is answered only after its batch is synced, and readers never see
// an entry above its channel's durable last seq, although Pebble makes an
// applied batch visible before its fsync.
//
// Key layout. A channel is written ch = len16(name) name, where name is
// "biz/target" and len16 a big-endian uint16, so that every channel prefix
// is prefix-free. Times in keys are t12 = uint64(unix seconds) with the sign
// bit flipped, then uint32 nanoseconds, both big-endian, so they sort.
//
//	'm' ch                 channel meta: epoch, first seq, last seq; plain
//	                         appends skip it, so on load the newest 'e' key
//	                         can raise last seq
//	'e' ch seq8            entry (seq big-endian)
//	'k' ch key             key index: newest put/delete of the key: seq,
//	                         and (from format 4) its op and expiry, so that
//	                         Keys lists live keys without reading entries
//	'd' ch idemkey         idempotency key: seq, deadline
//	'x' t12 kind payload   expiry index, swept in time order; kind is
//	                         'e' entry (ch seq8), 't' tombstone
//	                         (ch seq8 epoch), 'i' idempotency key
//	                         (ch idemkey), 'b' blob (key), 'a' access
//	                         token (id)
//	'p' len16(dev) dev ch  sync point of a device in a channel
//	'q' len16(user) user ch  position of a user as a whole in a channel
//	'r' len16(reader) reader ch  cursor of a reader inside the server
//	'v' dev                device (JSON)
//	'u' len16(user) user inv-t12 dev   user index, most recently seen first
//	'z' name               biz (JSON)
//	'c' len16(biz) biz ch  channel index by biz, written when a channel is
//	                         created
//	'b' key                blob: expiry, value
//	'a' id                 access token: user, groups, label, times, hash
//	'h' hash               access token id by the SHA-256 of its secret
//	'o' len16(user) user inv-t12 id   a user's tokens, newest first
//	'S' name               a setting of the whole store: "format" (see
//	                         format.go), "incarnation" (see backup.go)
//
// Channel reads (Read, Channel, Entry, KeyEntry, Keys) see only synced
// batches.
// Sync points, devices, bizzes, blobs and tokens are read straight from the
// database, so such a read may see a write a moment before it is synced.
//
// Epochs shown to callers are a channel's stored epoch joined with the
// store's incarnation, which a restore from a backup sets anew; the rows
// that keep an epoch (meta, tombstone expiry rows) keep the stored one.
//
// Index rows are allowed to go stale (an entry trimmed, compacted or reset
// away keeps its expiry row); the sweep checks each row against what it
// points to before deleting anything.
package pebble
