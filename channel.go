package syncpoint

import "strings"

// Channel is the log of one biz for one target, written "biz/target", for
// example "chat/user:u1" or "config/global".
type Channel struct {
	Biz    string
	Target Target
}

// String returns "biz/target".
func (c Channel) String() string { return c.Biz + "/" + c.Target.String() }

// Validate returns an *Error with CodeInvalid when c is malformed.
func (c Channel) Validate() error {
	if err := ValidateBizName(c.Biz); err != nil {
		return err
	}
	return c.Target.Validate()
}

// ParseChannel parses "biz/target".
func ParseChannel(s string) (Channel, error) {
	biz, target, ok := strings.Cut(s, "/")
	if !ok {
		return Channel{}, Errorf(CodeInvalid, "channel %q: want biz/target", s)
	}
	if err := ValidateBizName(biz); err != nil {
		return Channel{}, err
	}
	t, err := ParseTarget(target)
	if err != nil {
		return Channel{}, err
	}
	return Channel{Biz: biz, Target: t}, nil
}

// MarshalText implements encoding.TextMarshaler.
func (c Channel) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (c *Channel) UnmarshalText(b []byte) error {
	v, err := ParseChannel(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
