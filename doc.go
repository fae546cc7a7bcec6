// Package syncpoint is the domain of a self-hosted data sync service.
//
// A business backend publishes changes. Each change becomes an Entry in a
// Channel: the ordered, durable log of one Biz (a business type such as
// "chat" or "config") for one Target (a user, a device, a group, or
// everyone). Entries in a channel carry a Seq that starts at 1 and has no
// gaps; a channel also has an Epoch, which changes only when its history
// cannot continue (the channel was reset or the store was restored).
//
// A device holds a Position (epoch, seq) per channel, its sync point. The
// server pushes every entry after the sync point, in order, over one
// connection that carries all of the device's bizzes; the device acks
// cumulatively and the server stores the acked position. The wire is
// at-least-once; the SDK drops duplicates by (channel, seq) and records the
// sync point in the same local transaction as the data, so the app sees each
// entry exactly once.
//
// Entries can expire (ExpiresAt), be trimmed to a biz's MaxBacklog, or be
// compacted (a newer put/delete for a key replaces older ones). A channel's
// FirstSeq tells a reader which entries are gone, so a device that fell
// behind is told of the gap rather than silently skipped ahead.
//
// This package holds the types and the interfaces between the parts: Store
// (durable logs, sync points, devices, bizzes) and Broker (fan-out between
// nodes). Adapters live in their own packages and meet only here.
package syncpoint
