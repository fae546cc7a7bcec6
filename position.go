package syncpoint

import "time"

// Position is a device's sync point in one channel: the channel's epoch and
// the highest seq the device has applied. The zero Position means "nothing
// yet" and matches any epoch.
type Position struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// ChannelInfo describes a channel's retained range.
//
// Entries with seq below FirstSeq are gone (expired or trimmed); a reader
// whose position is below FirstSeq-1 has a gap. Seqs at or above FirstSeq
// may still be absent because compaction replaced them or they expired on
// their own; those are skipped without a gap. An empty channel has
// FirstSeq = LastSeq+1.
type ChannelInfo struct {
	Channel  Channel `json:"channel"`
	Epoch    string  `json:"epoch"`
	FirstSeq uint64  `json:"first_seq"`
	LastSeq  uint64  `json:"last_seq"`
}

// Status is what the server tells a device about its position in a channel.
type Status string

// The channel statuses of a welcome.
const (
	StatusOK    Status = "ok"    // the position continues the channel's history
	StatusReset Status = "reset" // the epoch changed, or the position is ahead of the log: resync
	StatusGap   Status = "gap"   // entries after the position expired or were trimmed
)

// Check compares a device's position with the channel and returns the status
// and the seq delivery resumes after. A position with seq 0 matches any
// epoch. A position ahead of LastSeq in the same epoch means the store lost
// history (restored from a backup) and is a reset too.
func (info ChannelInfo) Check(p Position) (Status, uint64) {
	if p.Seq == 0 {
		if info.FirstSeq > 1 {
			return StatusGap, info.FirstSeq - 1
		}
		return StatusOK, 0
	}
	if p.Epoch != info.Epoch || p.Seq > info.LastSeq {
		return StatusReset, 0
	}
	if p.Seq+1 < info.FirstSeq {
		return StatusGap, info.FirstSeq - 1
	}
	return StatusOK, p.Seq
}

// SyncPoint is a device's stored position in one channel.
type SyncPoint struct {
	DeviceID  string    `json:"device_id"`
	Channel   Channel   `json:"channel"`
	Position  Position  `json:"position"`
	UpdatedAt time.Time `json:"updated_at"`
}

// UserPosition is how far a user as a whole has got in a channel of a
// multi_device: false biz, whichever of their devices acked it; the next
// device of the user continues from it. It is kept apart from device sync
// points, so no device id can stand for a user.
type UserPosition struct {
	UserID    string    `json:"user_id"`
	Channel   Channel   `json:"channel"`
	Position  Position  `json:"position"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Cursor is where a reader inside the server, such as the deliverer of
// upload notices, stands in a channel. Cursors are kept apart from device
// sync points, so no device id can stand for a reader.
type Cursor struct {
	Reader    string    `json:"reader"`
	Channel   Channel   `json:"channel"`
	Position  Position  `json:"position"`
	UpdatedAt time.Time `json:"updated_at"`
}
