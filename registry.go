package syncpoint

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Registry is the set of bizzes a node serves: those of the config file plus
// those created at run time, kept in the Store so they survive a restart.
// Every publish and every handshake asks it, so reads take only a read
// lock around a map lookup.
type Registry struct {
	store Store

	mu        sync.RWMutex
	bizzes    map[string]Biz
	onDelete  map[int]func(name string)
	onChange  map[int]func(name string)
	nextWatch int
}

// NewRegistry returns a registry over store.
func NewRegistry(store Store) *Registry {
	return &Registry{store: store, bizzes: make(map[string]Biz), onDelete: make(map[int]func(string)), onChange: make(map[int]func(string))}
}

// OnDelete has fn called with a biz's name each time Delete removes one,
// after the registry no longer serves it, on the goroutine of Delete; fn
// must not block. The returned function stops the calls.
func (r *Registry) OnDelete(fn func(name string)) (stop func()) { return r.watch(r.onDelete, fn) }

// OnChange has fn called with a biz's name each time Put or Delete changes
// it on this node, after the registry serves the change, so a cluster can
// tell the other nodes to Refresh. Refresh does not call it.
func (r *Registry) OnChange(fn func(name string)) (stop func()) { return r.watch(r.onChange, fn) }

func (r *Registry) watch(m map[int]func(string), fn func(string)) func() {
	r.mu.Lock()
	id := r.nextWatch
	r.nextWatch++
	m[id] = fn
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(m, id)
		r.mu.Unlock()
	}
}

// watchers returns the functions of m, copied under the lock so that they
// can be called outside it: a watcher may read the registry.
func (r *Registry) watchers(m map[int]func(string)) []func(string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]func(string), 0, len(m))
	for _, fn := range m {
		out = append(out, fn)
	}
	return out
}

// Refresh reads the stored bizzes again, for a node of a cluster told that
// another node changed one: changed and new bizzes are served from now on,
// and one no longer stored is dropped, with the OnDelete watchers told, as
// a local Delete would.
func (r *Registry) Refresh(ctx context.Context) error {
	stored, err := r.store.Bizzes(ctx)
	if err != nil {
		return fmt.Errorf("refresh bizzes: %w", err)
	}
	fresh := make(map[string]Biz, len(stored))
	for _, b := range stored {
		fresh[b.Name] = b
	}
	var gone []string
	r.mu.Lock()
	for name := range r.bizzes {
		if _, ok := fresh[name]; !ok {
			gone = append(gone, name)
		}
	}
	r.bizzes = fresh
	r.mu.Unlock()
	for _, name := range gone {
		for _, fn := range r.watchers(r.onDelete) {
			fn(name)
		}
	}
	return nil
}

// Load reads the stored bizzes, then saves each of fromConfig over them: the
// config file wins over a run-time change to the same name on every start.
func (r *Registry) Load(ctx context.Context, fromConfig []Biz) error {
	stored, err := r.store.Bizzes(ctx)
	if err != nil {
		return fmt.Errorf("load bizzes: %w", err)
	}
	for _, b := range fromConfig {
		if err := b.Validate(); err != nil {
			return err
		}
		if err := r.store.SaveBiz(ctx, b); err != nil {
			return fmt.Errorf("save biz %s: %w", b.Name, err)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range stored {
		r.bizzes[b.Name] = b
	}
	for _, b := range fromConfig {
		r.bizzes[b.Name] = b
	}
	return nil
}

// Get returns the biz called name.
func (r *Registry) Get(name string) (Biz, bool) {
	r.mu.RLock()
	b, ok := r.bizzes[name]
	r.mu.RUnlock()
	return b, ok
}

// Lookup returns the biz called name, or an *Error with CodeNotFound.
func (r *Registry) Lookup(name string) (Biz, error) {
	if b, ok := r.Get(name); ok {
		return b, nil
	}
	return Biz{}, Errorf(CodeNotFound, "unknown biz %q", name)
}

// List returns every biz, sorted by name.
func (r *Registry) List() []Biz {
	r.mu.RLock()
	out := make([]Biz, 0, len(r.bizzes))
	for _, b := range r.bizzes {
		out = append(out, b)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b Biz) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Put validates b, stores it and serves it from now on.
func (r *Registry) Put(ctx context.Context, b Biz) error {
	if err := b.Validate(); err != nil {
		return err
	}
	if err := r.store.SaveBiz(ctx, b); err != nil {
		return fmt.Errorf("save biz %s: %w", b.Name, err)
	}
	r.mu.Lock()
	r.bizzes[b.Name] = b
	r.mu.Unlock()
	for _, fn := range r.watchers(r.onChange) {
		fn(b.Name)
	}
	return nil
}

// Delete stops serving the biz and removes it, with its channels, from the
// store, so a biz later created under the name starts in new epochs.
// Errors: an *Error with CodeNotFound.
// The OnDelete watchers are told once it is no longer served.
func (r *Registry) Delete(ctx context.Context, name string) error {
	if _, ok := r.Get(name); !ok {
		return Errorf(CodeNotFound, "unknown biz %q", name)
	}
	if err := r.store.DeleteBiz(ctx, name); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete biz %s: %w", name, err)
	}
	r.mu.Lock()
	delete(r.bizzes, name)
	r.mu.Unlock()
	for _, fn := range r.watchers(r.onDelete) {
		fn(name)
	}
	for _, fn := range r.watchers(r.onChange) {
		fn(name)
	}
	return nil
}

func isNotFound(err error) bool { return Code(err) == CodeNotFound }
