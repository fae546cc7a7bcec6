// Package records applies record uploads from devices to writable bizzes.
//
// A device sends a write: per biz and target, the records it created,
// updated and deleted while offline, each update and delete carrying the
// base_seq of the version it changed. Service checks each change, settles
// conflicts by base_seq (never by device clocks) under the biz's policy
// (reject, server_order or merge), optionally asks the biz's validation
// webhook, and appends every applied change through the one publish path as
// a put or delete entry keyed by the record id, so the other devices of the
// user or group receive it by the ordinary push. The store's conditional
// append (IfKeySeq) makes the check and the append one atomic step, and
// each change's idempotency key, with the write's stored result, makes a
// resent write apply exactly once. Applied changes are also queued, durably,
// for the biz's notify webhook, which Run delivers in order, at least once.
//
// docs/protocol.md, section "Record sync", is the reference for devices and
// backends.
package records
