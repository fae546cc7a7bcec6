// Package client is the Go SDK for syncpoint devices.
//
// A Client keeps one connection to a syncpoint server (WebSocket at
// /v1/connect, or raw TCP with optional TLS), subscribes to a device's
// bizzes, and applies what the server pushes to a local SQLite database
// (modernc.org/sqlite, pure Go, WAL mode). It reconnects with jittered
// exponential backoff, answers heartbeats and watches for a silent server.
// It stops, and Run returns why, only for what a retry would repeat: a
// close code whose action is stop (a refused token, a forbidden biz), or a
// PermanentError (an untrusted certificate, a server that does not speak
// TLS, a WebSocket upgrade refused with HTTP 4xx). It does not link the
// server: it imports the protocol (package wire) and nothing of hub, auth
// or the transports.
//
// The wire is at-least-once; the Client makes it exactly-once to the app.
// Each push is applied in one local transaction: entries at or below the
// channel's stored position are dropped, put and delete entries update the
// local records, Config.Handler sees the new entries inside the same
// transaction (so the app's own writes commit with them), and the new
// positions are stored. Only after the commit are the positions acked. A
// crash at any point either keeps the whole push or none of it, and the
// next session resumes from exactly what was committed.
//
// When the server says a channel was reset (its epoch changed), the Client
// drops that channel's local records and position and calls
// Config.OnReset; when entries after the position expired or were trimmed,
// it calls Config.OnGap. Both notices are stored in the same transaction as
// the change they describe and removed once the callback returns, so a crash
// can repeat a notice but never lose one.
//
// # Outbox
//
// Put, PutTo, Delete and DeleteFrom change a record of a writable biz on the
// device. The local record changes at once (Get, List, GetBiz and ListBiz
// show it) and the change is appended to an outbox in the same local
// transaction, so it survives a crash or a restart. Put and Delete use the
// device's default channel of a biz, learned from the server's welcome;
// PutTo and DeleteFrom name the channel, which a group biz needs and which
// works before the first connection too. Whenever the client is
// connected, the outbox is sent in order, in writes of up to
// Config.WriteRecords changes, a few writes in flight at a time. Each write's
// write_id is stored with its changes before it is first sent; a write whose
// result did not arrive (a dropped connection, a crash) is sent again with
// the same write_id, and the server applies it once. Changes to one record
// go one at a time: a change waits for the result of the one before it and
// is based on the seq that result gave (base_seq), so conflicts are judged
// by seqs, never by clocks.
//
// Until its result arrives, a pending change wins over pushes of the same
// record; the pushed versions are kept aside as the server's version, which
// the next upload is based on and a refused change is rolled back to. Each
// result is applied in one transaction that also takes the change out of the
// outbox:
//
//   - saved: the record's server version is the upload, at the seq given;
//     its own entry, pushed back later, is recognised by that seq.
//   - conflict (a reject biz, or a field both sides changed in a merge biz):
//     the local record becomes the server's current one, later unsent
//     changes to it are dropped, and Config.OnConflict gets the change, the
//     dropped ones and the server's record.
//   - any other refusal (invalid_id, invalid_data, exists, forbidden...):
//     the change is rolled back to the server's version and reported to
//     Config.OnWriteError.
//   - a passing failure (a whole write refused with a reconnect code, or a
//     change refused as unavailable): the change stays and is sent again
//     after a backoff.
//
// Conflicts and errors are stored as notices in the transaction that
// settles the change, and handed over like OnReset and OnGap: at least once.
// Pending returns how many changes wait for their result.
//
// # Sync without a socket
//
// SyncOnce runs one sync pass over plain HTTP (docs/http-sync.md), for a
// job that cannot hold a connection: it pulls everything new through
// one-shot sync, page by page, and sends the outbox. It applies pages and
// results through the same transactions as Run, so the two can take turns
// on one database, and each goes on from what the other committed.
//
// The local schema lives in tables named syncpoint_*, so the app can keep
// its own tables in the same database file.
package client
