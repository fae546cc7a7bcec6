// Package client is the Go SDK for syncpoint devices.
//
// A Client keeps one connection to a syncpoint server (WebSocket at
// /v1/connect, or raw TCP with optional TLS), subscribes to a device's
// bizzes, and applies what the server pushes to a local SQLite database
// (modernc.org/sqlite, pure Go, WAL mode). It reconnects with jittered
// exponential backoff, answers heartbeats and watches for a silent server.
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
// The local schema lives in tables named syncpoint_*, so the app can keep
// its own tables in the same database file.
package client
