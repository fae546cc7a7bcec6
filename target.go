package syncpoint

import (
	"fmt"
	"strings"
)

// TargetKind says who a channel is for.
type TargetKind string

// The target kinds.
const (
	TargetUser   TargetKind = "user"
	TargetDevice TargetKind = "device"
	TargetGroup  TargetKind = "group"
	TargetGlobal TargetKind = "global"
)

// MaxIDLen is the longest user, device or group id.
const MaxIDLen = 128

// Valid reports whether k is one of the four target kinds.
func (k TargetKind) Valid() bool {
	switch k {
	case TargetUser, TargetDevice, TargetGroup, TargetGlobal:
		return true
	}
	return false
}

// Target is who a log is for: a user, a device or a group (each with an id),
// or everyone.
type Target struct {
	Kind TargetKind
	ID   string // empty for TargetGlobal
}

// UserTarget, DeviceTarget, GroupTarget and GlobalTarget build targets.
func UserTarget(id string) Target   { return Target{Kind: TargetUser, ID: id} }
func DeviceTarget(id string) Target { return Target{Kind: TargetDevice, ID: id} }
func GroupTarget(id string) Target  { return Target{Kind: TargetGroup, ID: id} }
func GlobalTarget() Target          { return Target{Kind: TargetGlobal} }

// String returns the target's canonical form: "user:u1" or "global".
func (t Target) String() string {
	if t.Kind == TargetGlobal {
		return string(TargetGlobal)
	}
	return string(t.Kind) + ":" + t.ID
}

// Validate returns an *Error with CodeInvalid when t is malformed.
func (t Target) Validate() error {
	if !t.Kind.Valid() {
		return Errorf(CodeInvalid, "unknown target kind %q (want user, device, group or global)", t.Kind)
	}
	if t.Kind == TargetGlobal {
		if t.ID != "" {
			return Errorf(CodeInvalid, "global target takes no id")
		}
		return nil
	}
	return ValidateID(string(t.Kind)+" id", t.ID)
}

// ParseTarget parses "user:u1", "device:d1", "group:g1" or "global".
func ParseTarget(s string) (Target, error) {
	if s == string(TargetGlobal) {
		return GlobalTarget(), nil
	}
	kind, id, ok := strings.Cut(s, ":")
	if !ok {
		return Target{}, Errorf(CodeInvalid, "target %q: want kind:id or global", s)
	}
	t := Target{Kind: TargetKind(kind), ID: id}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	return t, nil
}

// MarshalText implements encoding.TextMarshaler.
func (t Target) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (t *Target) UnmarshalText(b []byte) error {
	v, err := ParseTarget(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ValidateID checks a user, device or group id: 1 to MaxIDLen bytes drawn
// from letters, digits and ._~@+=:- so that it is safe in a channel name, a
// URL path and a NATS subject once escaped.
func ValidateID(what, id string) error {
	if id == "" {
		return Errorf(CodeInvalid, "%s is empty", what)
	}
	if len(id) > MaxIDLen {
		return Errorf(CodeInvalid, "%s is %d bytes long; the limit is %d", what, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !idByte(id[i]) {
			return Errorf(CodeInvalid, "%s %q has a character outside [A-Za-z0-9._~@+=:-] at byte %d", what, id, i)
		}
	}
	return nil
}

func idByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._~@+=:-", c) >= 0
}

var _ fmt.Stringer = Target{}
