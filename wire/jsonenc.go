package wire

import (
	"strconv"
	"time"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
)

// EncodeJSON appends the JSON form of f to dst: an object with one key, the
// message's snake_case name. Fields at their zero value are left out. It is
// written by hand because pushes are the bulk of all traffic: no reflection,
// data copied through as it is (after a check that it is JSON).
func EncodeJSON(dst []byte, f *Frame) ([]byte, error) {
	name := f.Type()
	switch name {
	case "":
		return dst, syncpoint.Errorf(syncpoint.CodeInvalid, "encode frame: no message is set")
	case "multiple":
		return dst, syncpoint.Errorf(syncpoint.CodeInvalid, "encode frame: more than one message is set")
	}
	w := jsonWriter{b: dst}
	w.b = append(w.b, `{"`...)
	w.b = append(w.b, name...)
	w.b = append(w.b, `":`...)
	switch {
	case f.Hello != nil:
		w.hello(f.Hello)
	case f.Welcome != nil:
		w.welcome(f.Welcome)
	case f.Push != nil:
		w.push(f.Push)
	case f.Ack != nil:
		w.b = append(w.b, '{')
		first := true
		w.positions(&first, "positions", f.Ack.Positions)
		w.b = append(w.b, '}')
	case f.Write != nil:
		w.write(f.Write)
	case f.WriteResult != nil:
		w.writeResult(f.WriteResult)
	case f.Ping != nil:
		w.nonce(f.Ping.Nonce)
	case f.Pong != nil:
		w.nonce(f.Pong.Nonce)
	case f.Error != nil:
		w.error(f.Error)
	}
	if w.err != nil {
		return dst, w.err
	}
	return append(w.b, '}'), nil
}

// jsonWriter appends JSON; the first error sticks and is reported once.
type jsonWriter struct {
	b   []byte
	err error
}

// key writes the separator and "k": before a member. first tracks whether a
// member was written to the enclosing object yet.
func (w *jsonWriter) key(first *bool, k string) {
	if *first {
		*first = false
	} else {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) str(first *bool, k, v string) {
	if v != "" {
		w.key(first, k)
		w.b = jsontext.AppendString(w.b, v)
	}
}

func (w *jsonWriter) uint(first *bool, k string, v uint64) {
	if v != 0 {
		w.key(first, k)
		w.b = strconv.AppendUint(w.b, v, 10)
	}
}

func (w *jsonWriter) boolean(first *bool, k string, v bool) {
	if v {
		w.key(first, k)
		w.b = append(w.b, "true"...)
	}
}

func (w *jsonWriter) time(first *bool, k string, t time.Time) {
	if ms := unixMilli(t); ms != 0 {
		w.key(first, k)
		w.b = strconv.AppendInt(w.b, ms, 10)
	}
}

// data copies raw JSON through, after checking it is JSON so that a bad
// record fails here and not at the peer. It reports false when it is not.
func (w *jsonWriter) data(first *bool, v []byte) bool {
	if len(v) == 0 {
		return true
	}
	if !jsontext.Valid(v) {
		return false
	}
	w.key(first, "data")
	w.b = append(w.b, v...)
	return true
}

func (w *jsonWriter) fail(format string, args ...any) {
	if w.err == nil {
		w.err = syncpoint.Errorf(syncpoint.CodeInvalid, "encode frame: "+format, args...)
	}
}

func (w *jsonWriter) strings(first *bool, k string, v []string) {
	if len(v) == 0 {
		return
	}
	w.key(first, k)
	w.b = append(w.b, '[')
	for i, s := range v {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.b = jsontext.AppendString(w.b, s)
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) positions(first *bool, k string, ps []Position) {
	if len(ps) == 0 {
		return
	}
	w.key(first, k)
	w.b = append(w.b, '[')
	for i := range ps {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		p := &ps[i]
		w.b = append(w.b, '{')
		f := true
		w.str(&f, "channel", p.Channel)
		w.str(&f, "epoch", p.Epoch)
		w.uint(&f, "seq", p.Seq)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) hello(h *Hello) {
	w.b = append(w.b, '{')
	first := true
	if len(h.Versions) > 0 {
		w.key(&first, "versions")
		w.b = append(w.b, '[')
		for i, v := range h.Versions {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.b = strconv.AppendUint(w.b, uint64(v), 10)
		}
		w.b = append(w.b, ']')
	}
	w.str(&first, "token", h.Token)
	w.str(&first, "device_id", h.DeviceID)
	w.str(&first, "platform", h.Platform)
	w.str(&first, "app_version", h.AppVersion)
	w.strings(&first, "bizzes", h.Bizzes)
	w.positions(&first, "positions", h.Positions)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) welcome(m *Welcome) {
	ms, err := durationMillis(m.HeartbeatInterval)
	if err != nil {
		w.fail("welcome: %v", err)
	}
	if m.MaxBatch < 0 || uint64(m.MaxBatch) > maxUint32 {
		w.fail("welcome: max_batch %d is out of range", m.MaxBatch)
	}
	w.b = append(w.b, '{')
	first := true
	w.uint(&first, "version", uint64(m.Version))
	w.str(&first, "session_id", m.SessionID)
	w.uint(&first, "heartbeat_interval_ms", ms)
	w.uint(&first, "max_batch", uint64(m.MaxBatch))
	if len(m.Channels) > 0 {
		w.key(&first, "channels")
		w.b = append(w.b, '[')
		for i := range m.Channels {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.channelStatus(&m.Channels[i])
		}
		w.b = append(w.b, ']')
	}
	w.b = append(w.b, '}')
}

func (w *jsonWriter) channelStatus(c *ChannelStatus) {
	w.b = append(w.b, '{')
	f := true
	w.str(&f, "channel", c.Channel)
	w.str(&f, "status", c.Status)
	w.str(&f, "epoch", c.Epoch)
	w.uint(&f, "first_seq", c.FirstSeq)
	w.uint(&f, "last_seq", c.LastSeq)
	w.uint(&f, "from", c.From)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) entry(e *Entry) {
	if e.Cache != nil {
		if b := e.Cache.load(&e.Cache.json); b != nil {
			w.b = append(w.b, b...)
			return
		}
		defer func(start int) {
			if w.err == nil {
				e.Cache.store(&e.Cache.json, w.b[start:])
			}
		}(len(w.b))
	}
	w.b = append(w.b, '{')
	f := true
	w.str(&f, "channel", e.Channel)
	w.uint(&f, "seq", e.Seq)
	w.str(&f, "op", e.Op)
	w.str(&f, "key", e.Key)
	if !w.data(&f, e.Data) {
		w.fail("entry %s seq %d: data is not valid JSON", e.Channel, e.Seq)
	}
	w.time(&f, "created_at", e.CreatedAt)
	w.time(&f, "expires_at", e.ExpiresAt)
	w.str(&f, "origin", e.Origin)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) push(p *Push) {
	w.b = append(w.b, '{')
	first := true
	if len(p.Entries) > 0 {
		w.key(&first, "entries")
		w.b = append(w.b, '[')
		for i := range p.Entries {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.entry(&p.Entries[i])
		}
		w.b = append(w.b, ']')
	}
	w.positions(&first, "positions", p.Positions)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) records(first *bool, k string, rs []Record) {
	if len(rs) == 0 {
		return
	}
	w.key(first, k)
	w.b = append(w.b, '[')
	for i := range rs {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		r := &rs[i]
		w.b = append(w.b, '{')
		f := true
		w.str(&f, "id", r.ID)
		w.uint(&f, "base_seq", r.BaseSeq)
		if !w.data(&f, r.Data) {
			w.fail("record %q: data is not valid JSON", r.ID)
		}
		w.strings(&f, "fields", r.Fields)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) write(m *Write) {
	w.b = append(w.b, '{')
	first := true
	w.str(&first, "write_id", m.WriteID)
	if len(m.Changes) > 0 {
		w.key(&first, "changes")
		w.b = append(w.b, '[')
		for i := range m.Changes {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			c := &m.Changes[i]
			w.b = append(w.b, '{')
			f := true
			w.str(&f, "biz", c.Biz)
			w.str(&f, "target", c.Target)
			w.records(&f, "created", c.Created)
			w.records(&f, "updated", c.Updated)
			w.records(&f, "deleted", c.Deleted)
			w.b = append(w.b, '}')
		}
		w.b = append(w.b, ']')
	}
	w.b = append(w.b, '}')
}

func (w *jsonWriter) writeResult(m *WriteResult) {
	w.b = append(w.b, '{')
	first := true
	w.str(&first, "write_id", m.WriteID)
	if len(m.Saved) > 0 {
		w.key(&first, "saved")
		w.b = append(w.b, '[')
		for i := range m.Saved {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			s := &m.Saved[i]
			w.b = append(w.b, '{')
			f := true
			w.str(&f, "channel", s.Channel)
			w.str(&f, "id", s.ID)
			w.uint(&f, "seq", s.Seq)
			w.boolean(&f, "overwrote", s.Overwrote)
			w.b = append(w.b, '}')
		}
		w.b = append(w.b, ']')
	}
	if len(m.Errors) > 0 {
		w.key(&first, "errors")
		w.b = append(w.b, '[')
		for i := range m.Errors {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			e := &m.Errors[i]
			w.b = append(w.b, '{')
			f := true
			w.str(&f, "channel", e.Channel)
			w.str(&f, "id", e.ID)
			w.str(&f, "field", e.Field)
			w.str(&f, "code", e.Code)
			w.str(&f, "message", e.Message)
			if e.Current != nil {
				w.key(&f, "current")
				w.entry(e.Current)
			}
			w.b = append(w.b, '}')
		}
		w.b = append(w.b, ']')
	}
	if m.Error != nil {
		w.key(&first, "error")
		w.error(m.Error)
	}
	w.b = append(w.b, '}')
}

func (w *jsonWriter) nonce(n uint64) {
	w.b = append(w.b, '{')
	first := true
	w.uint(&first, "nonce", n)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) error(e *Error) {
	w.b = append(w.b, '{')
	first := true
	w.uint(&first, "code", uint64(e.Code))
	w.str(&first, "reason", e.Reason)
	w.str(&first, "message", e.Message)
	w.boolean(&first, "fatal", e.Fatal)
	w.b = append(w.b, '}')
}

const maxUint32 = 1<<32 - 1

// maxMillis is the largest millisecond count a time.Duration holds.
const maxMillis = uint64(1<<63-1) / uint64(time.Millisecond)

func durationMillis(d time.Duration) (uint64, error) {
	if d < 0 {
		return 0, syncpoint.Errorf(syncpoint.CodeInvalid, "heartbeat interval %v is negative", d)
	}
	return uint64(d / time.Millisecond), nil
}

func millisDuration(ms uint64) (time.Duration, bool) {
	if ms > maxMillis {
		return 0, false
	}
	return time.Duration(ms) * time.Millisecond, true
}

// unixMilli is t in unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromUnixMilli is the inverse of unixMilli; times come back in UTC.
func fromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}
