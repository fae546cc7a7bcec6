package syncpoint

import (
	"slices"
	"time"
)

// Claims is what a verified device token says about its holder.
type Claims struct {
	User      string    // "sub"
	Groups    []string  // "groups": the group channels the device may read
	ExpiresAt time.Time // "exp"
	// ValidUntil is the instant from which the verifier refuses the token:
	// ExpiresAt plus its leeway for clock skew. A session on the token is
	// closed then, so one rule holds at the hello and for the whole
	// session. Verify sets it; Mint ignores it.
	ValidUntil time.Time
	// TokenID names a revocable token (an opaque access token's id):
	// revoking it ends every session and stream opened with it, at once.
	// It is empty for JWTs, whose "jti" is not used: a JWT cannot be
	// revoked, as nothing would refuse it at the next hello.
	TokenID string
}

// Identity is who a device connection is: the device id it claimed (bound
// to its user on first use), and the user and groups its token grants.
type Identity struct {
	DeviceID   string
	UserID     string
	Groups     []string
	Platform   string
	AppVersion string
}

// Channels returns the channels of biz b that the identity reads: its user's
// channel of a user biz, its own channel of a device biz, the global channel
// of a global biz, and one channel per granted group of a group biz.
func (id Identity) Channels(b Biz) []Channel {
	switch b.Target {
	case TargetUser:
		return []Channel{{Biz: b.Name, Target: UserTarget(id.UserID)}}
	case TargetDevice:
		return []Channel{{Biz: b.Name, Target: DeviceTarget(id.DeviceID)}}
	case TargetGlobal:
		return []Channel{{Biz: b.Name, Target: GlobalTarget()}}
	case TargetGroup:
		out := make([]Channel, 0, len(id.Groups))
		for _, g := range id.Groups {
			out = append(out, Channel{Biz: b.Name, Target: GroupTarget(g)})
		}
		return out
	}
	return nil
}

// CanRead reports whether the identity may read ch, whose biz is b.
func (id Identity) CanRead(b Biz, ch Channel) bool {
	if ch.Biz != b.Name || ch.Target.Kind != b.Target {
		return false
	}
	switch ch.Target.Kind {
	case TargetUser:
		return ch.Target.ID == id.UserID
	case TargetDevice:
		return ch.Target.ID == id.DeviceID
	case TargetGlobal:
		return true
	case TargetGroup:
		return slices.Contains(id.Groups, ch.Target.ID)
	}
	return false
}

// CanWrite reports whether the identity may upload records to ch: the biz
// must be writable and the channel readable by the identity.
func (id Identity) CanWrite(b Biz, ch Channel) bool {
	return b.Writable && id.CanRead(b, ch)
}

// DefaultChannel resolves the channel a device means when it names only a
// biz: its user's, its device's or the global channel; a group biz needs an
// explicit target, so it returns false.
func (id Identity) DefaultChannel(b Biz) (Channel, bool) {
	if b.Target == TargetGroup {
		return Channel{}, false
	}
	return id.Channels(b)[0], true
}
