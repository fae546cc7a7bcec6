package syncpoint

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// ConflictPolicy says how a writable biz settles an upload whose base_seq is
// stale.
type ConflictPolicy string

// The conflict policies.
const (
	ConflictReject      ConflictPolicy = "reject"       // the device resolves it
	ConflictServerOrder ConflictPolicy = "server_order" // the last write to arrive wins
	ConflictMerge       ConflictPolicy = "merge"        // field-level; conflicts only on a field both changed
)

// Biz defaults.
const (
	DefaultRetention = 720 * time.Hour
	MaxBizNameLen    = 64
)

// Biz is a business type and its settings. Decode it with json or yaml
// (through UnmarshalJSON/the Duration text form) after starting from
// NewBiz, so that unset fields keep their defaults.
type Biz struct {
	Name          string         `json:"name" yaml:"name"`
	Target        TargetKind     `json:"target" yaml:"target"`
	Retention     Duration       `json:"retention" yaml:"retention"`             // validity period of entries
	Persistent    bool           `json:"persistent" yaml:"persistent"`           // false: only online devices, never stored
	MultiDevice   bool           `json:"multi_device" yaml:"multi_device"`       // user bizzes: all devices, or the most recently online
	MaxBacklog    int            `json:"max_backlog" yaml:"max_backlog"`         // keep the newest N per channel; 0: unlimited
	Compact       bool           `json:"compact" yaml:"compact"`                 // newest put/delete per key replaces older entries
	Writable      bool           `json:"writable" yaml:"writable"`               // devices may upload records
	Conflict      ConflictPolicy `json:"conflict" yaml:"conflict"`               // for writable bizzes
	MaxEntryBytes int            `json:"max_entry_bytes" yaml:"max_entry_bytes"` // 0: DefaultMaxEntryBytes
	Webhook       *Webhook       `json:"webhook,omitempty" yaml:"webhook"`       // writable bizzes: validation and upload notices
}

// Webhook is how a writable biz's business backend takes part in uploads.
// Requests carry an HMAC-SHA256 signature of the body keyed by Secret.
type Webhook struct {
	// ValidateURL, when set, is asked to accept or reject each upload before
	// it is applied.
	ValidateURL string `json:"validate_url,omitempty" yaml:"validate_url"`
	// NotifyURL, when set, is told of every applied upload, at least once.
	NotifyURL string   `json:"notify_url,omitempty" yaml:"notify_url"`
	Secret    string   `json:"secret,omitempty" yaml:"secret"`
	Timeout   Duration `json:"timeout,omitempty" yaml:"timeout"` // 0: DefaultWebhookTimeout
}

// DefaultWebhookTimeout bounds one webhook request.
const DefaultWebhookTimeout = 5 * time.Second

// NewBiz returns a biz with every default filled in.
func NewBiz(name string, target TargetKind) Biz {
	return Biz{
		Name:          name,
		Target:        target,
		Retention:     Duration(DefaultRetention),
		Persistent:    true,
		MultiDevice:   true,
		Conflict:      ConflictReject,
		MaxEntryBytes: DefaultMaxEntryBytes,
	}
}

// UnmarshalJSON decodes b over the defaults, so absent fields keep them.
func (b *Biz) UnmarshalJSON(data []byte) error {
	type plain Biz
	v := plain(NewBiz("", ""))
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	*b = Biz(v)
	return nil
}

// ValidateBizName checks a biz name: 1-64 characters, a lowercase letter
// then lowercase letters, digits, '_' or '-'.
func ValidateBizName(name string) error {
	if name == "" {
		return Errorf(CodeInvalid, "biz name is empty")
	}
	if len(name) > MaxBizNameLen || !bizName(name) {
		return Errorf(CodeInvalid, "biz name %q: want 1-%d characters, a lowercase letter then [a-z0-9_-]", name, MaxBizNameLen)
	}
	return nil
}

// bizName reports whether name is a lowercase letter then [a-z0-9_-]; a
// loop rather than a regexp because every publish checks it.
func bizName(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
		case i > 0 && ('0' <= c && c <= '9' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// ReservedBizPrefix starts the names of bizzes the server keeps for itself
// (such as the log of upload notices); no configured biz may use it.
const ReservedBizPrefix = "syncpoint-"

// ValidateConfiguredBizName is ValidateBizName plus the reserved prefix, for
// bizzes that operators define.
func ValidateConfiguredBizName(name string) error {
	if err := ValidateBizName(name); err != nil {
		return err
	}
	if strings.HasPrefix(name, ReservedBizPrefix) {
		return Errorf(CodeInvalid, "biz name %q: names starting with %q are reserved for the server", name, ReservedBizPrefix)
	}
	return nil
}

// Validate returns an *Error with CodeInvalid naming the first bad field,
// in its message and in its Field.
func (b *Biz) Validate() error {
	if err := ValidateConfiguredBizName(b.Name); err != nil {
		return WithField(err, "name")
	}
	if !b.Target.Valid() {
		return FieldErrorf(CodeInvalid, "target", "biz %s: target %q: want user, device, group or global", b.Name, b.Target)
	}
	if b.Retention <= 0 {
		return FieldErrorf(CodeInvalid, "retention", "biz %s: retention must be positive", b.Name)
	}
	if b.MaxBacklog < 0 {
		return FieldErrorf(CodeInvalid, "max_backlog", "biz %s: max_backlog must not be negative", b.Name)
	}
	if b.MaxEntryBytes < 0 || b.MaxEntryBytes > 16<<20 {
		return FieldErrorf(CodeInvalid, "max_entry_bytes", "biz %s: max_entry_bytes must be between 0 and 16 MiB", b.Name)
	}
	switch b.Conflict {
	case ConflictReject, ConflictServerOrder, ConflictMerge:
	default:
		return FieldErrorf(CodeInvalid, "conflict", "biz %s: conflict %q: want reject, server_order or merge", b.Name, b.Conflict)
	}
	if !b.MultiDevice && b.Target != TargetUser {
		return FieldErrorf(CodeInvalid, "multi_device", "biz %s: multi_device: false applies only to user bizzes", b.Name)
	}
	if b.Writable && !b.Persistent {
		return FieldErrorf(CodeInvalid, "persistent", "biz %s: a writable biz must be persistent", b.Name)
	}
	if w := b.Webhook; w != nil {
		if !b.Writable {
			return FieldErrorf(CodeInvalid, "webhook", "biz %s: webhook applies only to writable bizzes", b.Name)
		}
		for _, u := range []struct{ name, v string }{{"validate_url", w.ValidateURL}, {"notify_url", w.NotifyURL}} {
			if u.v == "" {
				continue
			}
			if parsed, err := url.Parse(u.v); err != nil || (parsed.Scheme != "http" && parsed.Scheme != "https") || parsed.Host == "" {
				return FieldErrorf(CodeInvalid, "webhook."+u.name, "biz %s: webhook %s %q: want an http or https URL", b.Name, u.name, u.v)
			}
		}
		if w.Timeout < 0 {
			return FieldErrorf(CodeInvalid, "webhook.timeout", "biz %s: webhook timeout must not be negative", b.Name)
		}
	}
	return nil
}

// EntryLimit is the biz's MaxEntryBytes, or the default when unset.
func (b *Biz) EntryLimit() int {
	if b.MaxEntryBytes <= 0 {
		return DefaultMaxEntryBytes
	}
	return b.MaxEntryBytes
}

// Policy returns what the store needs to know of the biz when appending.
func (b *Biz) Policy() Policy {
	return Policy{Retention: time.Duration(b.Retention), MaxBacklog: b.MaxBacklog, Compact: b.Compact}
}

// Duration is a time.Duration written as text ("720h", "90s") in JSON and
// YAML.
type Duration time.Duration

// String returns the duration's text form.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return Errorf(CodeInvalid, "duration %q: want a number with a unit, like 720h or 90s", b)
	}
	*d = Duration(v)
	return nil
}
