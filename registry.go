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
// Reads are lock-free in effect (a read lock around a map lookup), because
// every publish and every delivery asks it.
type Registry struct {
	store Store

	mu     sync.RWMutex
	bizzes map[string]Biz
	subs   []func(Biz, bool)
}

// NewRegistry returns a registry over store.
func NewRegistry(store Store) *Registry {
	return &Registry{store: store, bizzes: make(map[string]Biz)}
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
	r.apply(b, false)
	return nil
}

// Delete stops serving the biz and removes it from the store. Its channels
// stay in the store until they expire. Errors: an *Error with CodeNotFound.
func (r *Registry) Delete(ctx context.Context, name string) error {
	b, ok := r.Get(name)
	if !ok {
		return Errorf(CodeNotFound, "unknown biz %q", name)
	}
	if err := r.store.DeleteBiz(ctx, name); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete biz %s: %w", name, err)
	}
	r.apply(b, true)
	return nil
}

// Apply serves a change made elsewhere (another node) without storing it.
func (r *Registry) Apply(b Biz, deleted bool) { r.apply(b, deleted) }

// OnChange registers fn to be called after every Put, Delete or Apply, for
// example to tell other nodes.
func (r *Registry) OnChange(fn func(b Biz, deleted bool)) {
	r.mu.Lock()
	r.subs = append(r.subs, fn)
	r.mu.Unlock()
}

func (r *Registry) apply(b Biz, deleted bool) {
	r.mu.Lock()
	if deleted {
		delete(r.bizzes, b.Name)
	} else {
		r.bizzes[b.Name] = b
	}
	subs := slices.Clone(r.subs)
	r.mu.Unlock()
	for _, fn := range subs {
		fn(b, deleted)
	}
}

func isNotFound(err error) bool { return Code(err) == CodeNotFound }
