// Package local is the in-process Broker: fan-out within one node, for the
// single-node deployment on the embedded store.
package local

import (
	"context"
	"sync"

	"github.com/syncpoint/syncpoint"
)

var _ syncpoint.Broker = (*Broker)(nil)

// Broker hands each published batch straight to the subscribers, on the
// publisher's goroutine. Subscribers must not block (the hub only enqueues),
// so a publish never waits on a device.
type Broker struct {
	mu     sync.RWMutex
	subs   map[int]func([]syncpoint.Entry)
	next   int
	closed bool
}

// New returns an empty broker.
func New() *Broker { return &Broker{subs: make(map[int]func([]syncpoint.Entry))} }

// Publish calls every subscriber with entries.
func (b *Broker) Publish(ctx context.Context, entries []syncpoint.Entry) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return syncpoint.ErrClosed
	}
	for _, fn := range b.subs {
		fn(entries)
	}
	return nil
}

// Subscribe registers fn until the returned function is called.
func (b *Broker) Subscribe(fn func([]syncpoint.Entry)) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, syncpoint.ErrClosed
	}
	id := b.next
	b.next++
	b.subs[id] = fn
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}, nil
}

// Close stops delivery; later publishes return ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	clear(b.subs)
	b.mu.Unlock()
	return nil
}
