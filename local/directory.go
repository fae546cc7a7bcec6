package local

import (
	"context"
	"slices"
	"sync"

	"github.com/syncpoint/syncpoint"
)

var (
	_ syncpoint.Directory = (*Directory)(nil)
	_ syncpoint.Leases    = Leases{}
)

// Directory lists the sessions of the one node in memory: with one node,
// a node's death is the directory's too, so there is nothing to expire.
type Directory struct {
	mu       sync.Mutex
	sessions map[string]syncpoint.Presence
	seq      map[string]uint64 // join order, for a stable oldest-first
	next     uint64
}

// NewDirectory returns an empty directory.
func NewDirectory() *Directory {
	return &Directory{sessions: make(map[string]syncpoint.Presence), seq: make(map[string]uint64)}
}

// Join lists p.
func (d *Directory) Join(ctx context.Context, p syncpoint.Presence) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.sessions[p.Session]; !ok {
		d.next++
		d.seq[p.Session] = d.next
	}
	d.sessions[p.Session] = p
	return nil
}

// Leave unlists the session.
func (d *Directory) Leave(ctx context.Context, session string) error {
	d.mu.Lock()
	delete(d.sessions, session)
	delete(d.seq, session)
	d.mu.Unlock()
	return nil
}

// Device lists the device's sessions, oldest first.
func (d *Directory) Device(ctx context.Context, deviceID string) ([]syncpoint.Presence, error) {
	return d.list(func(p *syncpoint.Presence) bool { return p.DeviceID == deviceID }), nil
}

// User lists the user's sessions, oldest first.
func (d *Directory) User(ctx context.Context, userID string) ([]syncpoint.Presence, error) {
	return d.list(func(p *syncpoint.Presence) bool { return p.UserID == userID }), nil
}

func (d *Directory) list(keep func(*syncpoint.Presence) bool) []syncpoint.Presence {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []syncpoint.Presence
	for _, p := range d.sessions {
		if keep(&p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b syncpoint.Presence) int {
		if c := a.ConnectedAt.Compare(b.ConnectedAt); c != 0 {
			return c
		}
		return int(d.seq[a.Session]) - int(d.seq[b.Session])
	})
	return out
}

// Beat replaces the node's sessions with the given ones.
func (d *Directory) Beat(ctx context.Context, node string, sessions []syncpoint.Presence) error {
	d.mu.Lock()
	for id, p := range d.sessions {
		if p.Node == node {
			delete(d.sessions, id)
		}
	}
	d.mu.Unlock()
	for _, p := range sessions {
		d.Join(ctx, p)
	}
	return nil
}

// Leases runs every job on this node: it is the only one.
type Leases struct{}

// Run calls fn once and returns when ctx ends.
func (Leases) Run(ctx context.Context, name string, fn func(ctx context.Context)) error {
	fn(ctx)
	<-ctx.Done()
	return nil
}
