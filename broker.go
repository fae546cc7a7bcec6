package syncpoint

import (
	"context"
	"time"
)

// Broker carries freshly appended entries, and the control events of a
// cluster, from the node that made them to the hub of every node, so that
// any node can serve any device. Entries of non-persistent bizzes travel
// only this way and have Seq 0.
//
// The store stays the truth: a broker may be at-most-once (core NATS), so a
// node that loses broker messages must find out from the store (channel
// heads) and read what it missed. A broker tells its listeners that it may
// have lost messages with an EventLost of its own.
type Broker interface {
	// Publish hands entries to every subscriber, on every node, in the
	// order given. It returns once the entries are handed off.
	Publish(ctx context.Context, entries []Entry) error
	// Subscribe calls fn with every published batch, in publish order per
	// channel, until the returned function is called. fn must not block.
	Subscribe(fn func([]Entry)) (unsubscribe func(), err error)
	// Announce hands a control event to the listeners of every node,
	// this one included.
	Announce(ctx context.Context, ev Event) error
	// Listen calls fn with every announced event, and with the broker's
	// own EventLost, until the returned function is called. fn must not
	// block.
	Listen(fn func(Event)) (stop func(), err error)
	// Close stops delivery.
	Close() error
}

// EventKind names a control event.
type EventKind string

// The control events between nodes.
const (
	// EventReset: Channel's history was reset; sessions reading it resync.
	EventReset EventKind = "reset"
	// EventConnect: a session of DeviceID (UserID) opened on Node at At.
	// Older sessions of the device elsewhere close, and the user's
	// multi_device: false channels move to the newest session.
	EventConnect EventKind = "connect"
	// EventDisconnect: Session ended; another session of UserID may take
	// over its multi_device: false channels.
	EventDisconnect EventKind = "disconnect"
	// EventBiz: Biz was created, changed or deleted; reload it from the
	// store.
	EventBiz EventKind = "biz"
	// EventRevoke: the opaque token TokenID was revoked; its sessions and
	// streams close with 4001 and caches forget it.
	EventRevoke EventKind = "revoke"
	// EventHead: Channel's last seq is at least Seq (Epoch). A node whose
	// readers are behind reads the rest from the store.
	EventHead EventKind = "head"
	// EventLost is made by a broker for its own node's listeners, never
	// sent: messages may have been lost (a reconnect, a dropped
	// subscription), so every channel with readers is checked against the
	// store.
	EventLost EventKind = "lost"
)

// Event is one control message between nodes. Which fields are set depends
// on Kind.
type Event struct {
	Kind     EventKind `json:"kind"`
	Node     string    `json:"node,omitempty"` // the node that announced it
	Channel  Channel   `json:"channel,omitzero"`
	Epoch    string    `json:"epoch,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	DeviceID string    `json:"device_id,omitempty"`
	UserID   string    `json:"user_id,omitempty"`
	Session  string    `json:"session,omitempty"`
	Biz      string    `json:"biz,omitempty"`
	TokenID  string    `json:"token_id,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

// Presence is one open device session, as the cluster sees it.
type Presence struct {
	Session     string    `json:"session"`
	Node        string    `json:"node"`
	DeviceID    string    `json:"device_id"`
	UserID      string    `json:"user_id"`
	Transport   string    `json:"transport,omitempty"`
	ConnectedAt time.Time `json:"connected_at"`
	// Singles are the multi_device: false channels the session reads:
	// the newest session of the user that reads one receives it.
	Singles []Channel `json:"singles,omitempty"`
}

// Directory says which device sessions are open, on which node. A session
// is listed from Join to Leave; a node that dies without leaving stops being
// listed once it misses its beats for the directory's grace period.
type Directory interface {
	// Join lists p.
	Join(ctx context.Context, p Presence) error
	// Leave unlists the session.
	Leave(ctx context.Context, session string) error
	// Device lists the open sessions of a device, oldest first.
	Device(ctx context.Context, deviceID string) ([]Presence, error)
	// User lists the open sessions of a user, oldest first.
	User(ctx context.Context, userID string) ([]Presence, error)
	// Beat tells the directory that node is alive and holds exactly the
	// given sessions; it is called every few seconds, and after a store
	// outage it restores what the node holds.
	Beat(ctx context.Context, node string, sessions []Presence) error
}

// Leases runs jobs that must run on one node of the cluster at a time,
// such as the expiry sweep and the delivery of upload notices.
type Leases interface {
	// Run calls fn while this node holds the lease called name, and again
	// each time it wins the lease back, until ctx ends. fn's context ends
	// when the lease is lost, so fn must stop then: another node may take
	// over. Run returns when ctx ends.
	Run(ctx context.Context, name string, fn func(ctx context.Context)) error
}

// DefaultPresenceGrace is how long a directory keeps listing the sessions
// of a node that stopped beating.
const DefaultPresenceGrace = 15 * time.Second
