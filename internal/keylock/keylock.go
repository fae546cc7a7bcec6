// Package keylock is a mutex per key, for work that must not run twice at
// once for the same thing (one write_id of a device, one device's acks)
// while other keys go on in parallel.
package keylock

import (
	"context"
	"sync"
)

// Set is a mutex per key, kept only while someone holds or waits for it.
// The zero value is ready for use.
type Set struct {
	mu sync.Mutex
	m  map[string]*lock
}

type lock struct {
	sem  chan struct{}
	refs int
}

// Lock waits for the key's mutex, or for ctx to end (its error).
func (k *Set) Lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*lock)
	}
	l := k.m[key]
	if l == nil {
		l = &lock{sem: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	release := func() {
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case l.sem <- struct{}{}:
		return func() { <-l.sem; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
