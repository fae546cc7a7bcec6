// Package local holds the single-node adapters of the cluster interfaces:
// the in-process Broker, Directory and Leases, for the deployment on the
// embedded store, where one node is the whole cluster.
package local

import (
	"context"
	"sync"

	"github.com/syncpoint/syncpoint"
)

var _ syncpoint.Broker = (*Broker)(nil)

// Broker hands each published batch and event straight to the subscribers,
// on the publisher's goroutine. Subscribers must not block (the hub only
// enqueues), so a publish never waits on a device. Nothing is ever lost, so
// it never makes an EventLost.
type Broker struct {
	mu        sync.RWMutex
	subs      map[int]func([]syncpoint.Entry)
	listeners map[int]func(syncpoint.Event)
	next      int
	closed    bool
}

// New returns an empty broker.
func New() *Broker {
	return &Broker{subs: make(map[int]func([]syncpoint.Entry)), listeners: make(map[int]func(syncpoint.Event))}
}

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
	return register(b, b.subs, fn)
}

// Announce calls every listener with ev.
func (b *Broker) Announce(ctx context.Context, ev syncpoint.Event) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return syncpoint.ErrClosed
	}
	for _, fn := range b.listeners {
		fn(ev)
	}
	return nil
}

// Listen registers fn until the returned function is called.
func (b *Broker) Listen(fn func(syncpoint.Event)) (func(), error) {
	return register(b, b.listeners, fn)
}

func register[F any](b *Broker, m map[int]F, fn F) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, syncpoint.ErrClosed
	}
	id := b.next
	b.next++
	m[id] = fn
	return func() {
		b.mu.Lock()
		delete(m, id)
		b.mu.Unlock()
	}, nil
}

// Close stops delivery; later publishes return ErrClosed.
func (b *Broker) Close() error {
	b.mu.Lock()
	b.closed = true
	clear(b.subs)
	clear(b.listeners)
	b.mu.Unlock()
	return nil
}
