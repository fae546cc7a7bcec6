package syncpoint

import "context"

// Broker carries freshly appended entries from the node that stored them to
// the hub of every node, so that any node can serve any device. Entries of
// non-persistent bizzes travel only this way and have Seq 0.
type Broker interface {
	// Publish hands entries to every subscriber, on every node, in the
	// order given. It returns once the entries are handed off.
	Publish(ctx context.Context, entries []Entry) error
	// Subscribe calls fn with every published batch, in publish order per
	// channel, until the returned function is called. fn must not block.
	Subscribe(fn func([]Entry)) (unsubscribe func(), err error)
	// Close stops delivery.
	Close() error
}
