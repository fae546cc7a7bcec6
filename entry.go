package syncpoint

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/semver"

	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// Op is what an entry does.
type Op string

// The entry ops.
const (
	OpMsg    Op = "msg"    // a message; no key needed
	OpPut    Op = "put"    // a record by key: Data is the whole record
	OpDelete Op = "delete" // a record by key is gone
)

// Valid reports whether o is one of the three ops.
func (o Op) Valid() bool { return o == OpMsg || o == OpPut || o == OpDelete }

// Limits on entry fields.
const (
	MaxKeyLen            = 256
	MaxIdempotencyKeyLen = 256
	MaxPlatforms         = 16
	MaxPlatformLen       = 32
	DefaultMaxEntryBytes = 1 << 20
)

// OriginAPI marks an entry written through the business API; entries
// uploaded by a device have the origin "device:<id>".
const OriginAPI = "api"

// Conditions limit which devices receive an entry. Empty fields match all.
type Conditions struct {
	Platforms     []string `json:"platforms,omitempty"`
	MinAppVersion string   `json:"min_app_version,omitempty"`
	MaxAppVersion string   `json:"max_app_version,omitempty"`
}

// IsZero reports whether c matches every device.
func (c Conditions) IsZero() bool {
	return len(c.Platforms) == 0 && c.MinAppVersion == "" && c.MaxAppVersion == ""
}

// Validate returns an *Error with CodeInvalid when a field is malformed.
func (c Conditions) Validate() error {
	if len(c.Platforms) > MaxPlatforms {
		return Errorf(CodeInvalid, "platforms: %d given; the limit is %d", len(c.Platforms), MaxPlatforms)
	}
	for _, p := range c.Platforms {
		if p == "" || len(p) > MaxPlatformLen || strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r > '~' }) {
			return Errorf(CodeInvalid, "platforms: %q is not a platform name (1-%d printable ASCII characters)", p, MaxPlatformLen)
		}
	}
	for _, v := range []struct{ name, v string }{{"min_app_version", c.MinAppVersion}, {"max_app_version", c.MaxAppVersion}} {
		if v.v != "" && !semver.IsValid(canonVersion(v.v)) {
			return Errorf(CodeInvalid, "%s: %q is not a semantic version", v.name, v.v)
		}
	}
	if c.MinAppVersion != "" && c.MaxAppVersion != "" && CompareVersions(c.MinAppVersion, c.MaxAppVersion) > 0 {
		return Errorf(CodeInvalid, "min_app_version %s is above max_app_version %s", c.MinAppVersion, c.MaxAppVersion)
	}
	return nil
}

// Match reports whether a device with this platform and app version may
// receive the entry. Platforms compare case-insensitively; versions are
// semantic versions and the range is inclusive. A device whose version does
// not parse matches only entries without a version range.
func (c Conditions) Match(platform, appVersion string) bool {
	if len(c.Platforms) > 0 && !slices.ContainsFunc(c.Platforms, func(p string) bool { return strings.EqualFold(p, platform) }) {
		return false
	}
	if c.MinAppVersion == "" && c.MaxAppVersion == "" {
		return true
	}
	v := canonVersion(appVersion)
	if !semver.IsValid(v) {
		return false
	}
	if c.MinAppVersion != "" && semver.Compare(v, canonVersion(c.MinAppVersion)) < 0 {
		return false
	}
	if c.MaxAppVersion != "" && semver.Compare(v, canonVersion(c.MaxAppVersion)) > 0 {
		return false
	}
	return true
}

// CompareVersions compares two semantic versions ("1.2.3", "v1.2"): -1, 0
// or +1. An invalid version sorts below every valid one.
func CompareVersions(a, b string) int { return semver.Compare(canonVersion(a), canonVersion(b)) }

func canonVersion(v string) string {
	if v == "" || v[0] == 'v' {
		return v
	}
	return "v" + v
}

// Entry is one oplog record.
type Entry struct {
	Channel        Channel         `json:"channel"`
	Epoch          string          `json:"epoch,omitempty"` // the channel's epoch when appended; set by the store on read and by the publisher on fan-out
	Seq            uint64          `json:"seq"`
	Op             Op              `json:"op"`
	Key            string          `json:"key,omitempty"`
	Data           json.RawMessage `json:"data,omitempty"` // JSON text
	CreatedAt      time.Time       `json:"created_at"`
	ExpiresAt      time.Time       `json:"expires_at"` // zero: never
	Conditions     Conditions      `json:"conditions,omitzero"`
	Origin         string          `json:"origin"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
}

// ContentHash is what an idempotency key is checked against: a retry with
// the same key must carry the same content. It covers op, key, data (byte
// for byte, as sent), conditions and origin. It leaves out what a retry
// computes afresh (CreatedAt, ExpiresAt), what the store assigns (Seq,
// Epoch), the channel (keys are per channel) and the key itself.
func (e *Entry) ContentHash() [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	length := func(l int) { h.Write(n[:binary.PutUvarint(n[:], uint64(l))]) }
	str := func(s string) {
		length(len(s))
		io.WriteString(h, s)
	}
	str(string(e.Op))
	str(e.Key)
	length(len(e.Data))
	h.Write(e.Data)
	length(len(e.Conditions.Platforms))
	for _, p := range e.Conditions.Platforms {
		str(p)
	}
	str(e.Conditions.MinAppVersion)
	str(e.Conditions.MaxAppVersion)
	str(e.Origin)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// Expired reports whether e has expired at now.
func (e *Entry) Expired(now time.Time) bool {
	return !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt)
}

// Size is the number of bytes the entry's payload counts against a biz's
// MaxEntryBytes.
func (e *Entry) Size() int { return len(e.Data) + len(e.Key) }

// Validate checks the fields a publisher sets. maxBytes bounds Size (0 means
// DefaultMaxEntryBytes); an oversized entry is CodeTooLarge, anything else
// malformed is CodeInvalid.
func (e *Entry) Validate(maxBytes int) error {
	if err := e.Channel.Validate(); err != nil {
		return err
	}
	if !e.Op.Valid() {
		return Errorf(CodeInvalid, "op %q: want msg, put or delete", e.Op)
	}
	if (e.Op == OpPut || e.Op == OpDelete) && e.Key == "" {
		return Errorf(CodeInvalid, "op %s needs a key", e.Op)
	}
	if len(e.Key) > MaxKeyLen || !utf8.ValidString(e.Key) || strings.ContainsFunc(e.Key, isControl) {
		return Errorf(CodeInvalid, "key: want at most %d bytes of UTF-8 without control characters", MaxKeyLen)
	}
	if len(e.IdempotencyKey) > MaxIdempotencyKeyLen || strings.ContainsFunc(e.IdempotencyKey, isControl) {
		return Errorf(CodeInvalid, "idempotency_key: want at most %d bytes without control characters", MaxIdempotencyKeyLen)
	}
	// The rule the wire encoders hold data to (I-JSON: no lone surrogates,
	// no numbers past float64), so that an entry taken is one that can be
	// delivered.
	if len(e.Data) > 0 && !jsontext.Valid(e.Data) {
		return Errorf(CodeInvalid, "data is not valid JSON in UTF-8 (I-JSON: no lone surrogates, no numbers out of range)")
	}
	if maxBytes <= 0 {
		maxBytes = DefaultMaxEntryBytes
	}
	if e.Size() > maxBytes {
		return Errorf(CodeTooLarge, "entry is %d bytes; biz %s allows %d", e.Size(), e.Channel.Biz, maxBytes)
	}
	return e.Conditions.Validate()
}

func isControl(r rune) bool { return r < ' ' || r == 0x7f }
