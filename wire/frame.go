package wire

import (
	"encoding/json"
	"time"
)

// ProtocolVersion is the highest protocol version this build speaks. A
// client lists the versions it speaks in Hello.Versions; the server answers
// with the one it chose in Welcome.Version.
const ProtocolVersion = 1

// minProtocolVersion is the lowest version this build still speaks.
const minProtocolVersion = 1

// Negotiate picks the highest version that both this build and a client
// speaking versions support. ok is false when there is none; the server then
// closes with CloseUnsupportedVersion.
func Negotiate(versions []uint32) (v uint32, ok bool) {
	for _, c := range versions {
		if c >= minProtocolVersion && c <= ProtocolVersion && c > v {
			v = c
		}
	}
	return v, v != 0
}

// Frame is one protocol message. Exactly one field is set.
type Frame struct {
	Hello       *Hello
	Welcome     *Welcome
	Push        *Push
	Ack         *Ack
	Write       *Write
	WriteResult *WriteResult
	Ping        *Ping
	Pong        *Pong
	Error       *Error
}

// Type returns the snake_case name of the message f carries ("push",
// "write_result"), "" when none is set (or f is nil), or "multiple" when
// more than one is.
func (f *Frame) Type() string {
	if f == nil {
		return ""
	}
	name, n := "", 0
	set := func(ok bool, s string) {
		if ok {
			name, n = s, n+1
		}
	}
	set(f.Hello != nil, "hello")
	set(f.Welcome != nil, "welcome")
	set(f.Push != nil, "push")
	set(f.Ack != nil, "ack")
	set(f.Write != nil, "write")
	set(f.WriteResult != nil, "write_result")
	set(f.Ping != nil, "ping")
	set(f.Pong != nil, "pong")
	set(f.Error != nil, "error")
	if n > 1 {
		return "multiple"
	}
	return name
}

// Hello is the client's first frame: who it is and what it wants.
type Hello struct {
	Versions   []uint32 // protocol versions the client speaks
	Token      string   // device JWT
	DeviceID   string
	Platform   string
	AppVersion string
	// Bizzes are the bizzes to subscribe to. The server expands each into
	// channels from the biz's target kind and the token: user:<sub>,
	// device:<device_id>, global, or group:<g> for every group granted.
	Bizzes []string
	// Positions are the client's sync points for channels it holds; a
	// channel without one starts at seq 0, that is everything retained.
	Positions []Position
}

// Position is a sync point in one channel, named "biz/target".
type Position struct {
	Channel string
	Epoch   string
	Seq     uint64
}

// Welcome is the server's answer to Hello; pushes follow it.
type Welcome struct {
	Version           uint32
	SessionID         string
	HeartbeatInterval time.Duration // milliseconds on the wire
	MaxBatch          int           // most entries in one push
	Channels          []ChannelStatus
}

// The values of ChannelStatus.Status; they are syncpoint.Status values.
const (
	StatusOK    = "ok"
	StatusReset = "reset"
	StatusGap   = "gap"
)

// ChannelStatus is where a subscribed channel stands against the client's
// position at welcome.
type ChannelStatus struct {
	Channel  string
	Status   string // StatusOK, StatusReset or StatusGap
	Epoch    string // the channel's current epoch
	FirstSeq uint64
	LastSeq  uint64
	// From is the seq delivery resumes after: the client's seq for ok,
	// FirstSeq-1 for gap, 0 for reset.
	From uint64
}

// Entry is one oplog record as a device receives it.
type Entry struct {
	Channel   string
	Seq       uint64
	Op        string          // msg, put or delete
	Key       string          // empty for most msg entries
	Data      json.RawMessage // JSON text, nil when absent; bytes in protobuf
	CreatedAt time.Time       // unix milliseconds on the wire
	ExpiresAt time.Time       // zero: never
	Origin    string          // "api" or "device:<id>"

	// Cache, when set, keeps the entry's encodings for the other sessions
	// that send it; it is not part of the entry.
	Cache *EntryCache
}

// Push carries entries, in seq order per channel, possibly across channels.
type Push struct {
	Entries []Entry
	// Positions hold, per channel in this push, the position the client
	// reaches once it applies the push. A position can be ahead of the
	// channel's last entry here when entries were skipped (conditions,
	// expiry, compaction), and can come with no entries at all.
	Positions []Position
}

// Ack acknowledges, cumulatively per channel, every entry up to each
// position. Epoch may be empty.
type Ack struct {
	Positions []Position
}

// Write uploads record changes; a WriteResult with the same WriteID answers
// it.
type Write struct {
	WriteID string
	Changes []ChangeSet
}

// ChangeSet is the changes to one biz and target.
type ChangeSet struct {
	Biz     string
	Target  string   // "": the biz's default channel for this device (own user or own device)
	Created []Record // ID and Data
	Updated []Record // ID, BaseSeq and Data
	Deleted []Record // ID and BaseSeq
}

// Record is one record change.
type Record struct {
	ID      string
	BaseSeq uint64
	Data    json.RawMessage // JSON text
	// Fields optionally names the top-level fields an update changed; a
	// merge biz uses it when the base version is no longer stored.
	Fields []string
}

// WriteResult answers a Write.
type WriteResult struct {
	WriteID string
	Saved   []Saved
	Errors  []RecordError
	// Error is set when the whole write failed; its close code's Action
	// tells whether the write may be retried.
	Error *Error
}

// Saved is a record change that was applied as the entry Seq of Channel.
type Saved struct {
	Channel   string
	ID        string
	Seq       uint64
	Overwrote bool // it replaced a newer version (server_order conflict)
}

// RecordError is a record change that was refused.
type RecordError struct {
	Channel string
	ID      string
	Field   string // the offending field, when one is to blame
	Code    string // a syncpoint.ErrorCode, e.g. "conflict"
	Message string
	Current *Entry // the server's record, on a conflict
}

// Ping asks the peer for a Pong with the same Nonce.
type Ping struct {
	Nonce uint64
}

// Pong answers a Ping.
type Pong struct {
	Nonce uint64
}
