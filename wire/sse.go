package wire

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"time"

	"github.com/syncpoint/syncpoint"
)

// Server-Sent Events (GET /v1/events) carry the same JSON as the socket:
// an entry event's data is an entry as a push holds it, a reset or gap
// event's data a ChannelStatus as a welcome holds it, and a close event's
// data an Error. These functions write and read those pieces and the
// text/event-stream framing around them.

// SSE event types.
const (
	EventEntry = "entry" // data: an Entry
	EventReset = "reset" // data: a ChannelStatus with status reset
	EventGap   = "gap"   // data: a ChannelStatus with status gap
	EventClose = "close" // data: the fatal Error that ends the stream
)

// AppendEntryJSON appends e as JSON, exactly as it appears in a push.
// Errors: CodeInvalid when e's data is not JSON.
func AppendEntryJSON(dst []byte, e *Entry) ([]byte, error) {
	w := jsonWriter{b: dst}
	w.entry(e)
	if w.err != nil {
		return dst, w.err
	}
	return w.b, nil
}

// AppendChannelStatusJSON appends c as JSON, exactly as a welcome holds it.
func AppendChannelStatusJSON(dst []byte, c *ChannelStatus) []byte {
	w := jsonWriter{b: dst}
	w.channelStatus(c)
	return w.b
}

// AppendErrorJSON appends e as JSON, exactly as an error frame holds it.
func AppendErrorJSON(dst []byte, e *Error) []byte {
	w := jsonWriter{b: dst}
	w.error(e)
	return w.b
}

// DecodeEntryJSON parses one entry as AppendEntryJSON writes it, with the
// rules of DecodeJSON. The entry's Data aliases b.
func DecodeEntryJSON(b []byte) (Entry, error) {
	r := newJSONReader(b)
	var e Entry
	if !r.object() {
		if r.err == nil {
			r.fail("want an object")
		}
		return Entry{}, r.err
	}
	r.entry(&e)
	if r.err == nil {
		if r.Space(); r.Pos != len(r.Data) {
			r.fail("data after the entry")
		}
	}
	if r.err != nil {
		return Entry{}, r.err
	}
	return e, nil
}

// AppendEvent appends one event of the given type to an event stream:
// its id line when id is set, the event line, one data line per line of
// data (so data may hold line breaks), and the blank line that ends it.
func AppendEvent(dst []byte, id, typ string, data []byte) []byte {
	if id != "" {
		dst = append(dst, "id: "...)
		dst = append(dst, id...)
		dst = append(dst, '\n')
	}
	dst = append(dst, "event: "...)
	dst = append(dst, typ...)
	dst = append(dst, '\n')
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}

// Event is one event read from an event stream, or a comment line.
type Event struct {
	// ID is the stream's last event id as of this event: its own id, or
	// the one before it when it set none (as EventSource keeps it).
	ID   string
	Type string // "message" when the event named none
	Data []byte // the data lines joined by "\n"; the comment's text for a comment
	// Comment marks a comment line (a heartbeat), not an event.
	Comment bool
}

// EventReader reads an event stream by the rules of the HTML standard's
// EventSource: lines end in CRLF, LF or CR; fields are id, event, data and
// retry; a blank line ends an event; an event without data is not one.
// It bounds what it holds for one event.
type EventReader struct {
	r      *bufio.Reader
	max    int
	lastID string
	retry  time.Duration
	line   []byte
	data   []byte
	typ    []byte
	skipLF bool // the last line ended in CR; an LF next is part of it
	began  bool
}

// NewEventReader reads from r and holds at most maxEvent bytes of one
// event (0 means DefaultMaxFrameBytes).
func NewEventReader(r io.Reader, maxEvent int) *EventReader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxFrameBytes
	}
	return &EventReader{r: bufio.NewReaderSize(r, 32<<10), max: maxEvent}
}

// Retry is the reconnection delay the stream asked for, 0 if none.
func (r *EventReader) Retry() time.Duration { return r.retry }

// LastID is the stream's last event id so far.
func (r *EventReader) LastID() string { return r.lastID }

// Next returns the next event or comment. Errors: those of the underlying
// reader (io.EOF when the stream ended between events,
// io.ErrUnexpectedEOF inside one), and CodeTooLarge for an event over the
// bound.
func (r *EventReader) Next() (Event, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && (len(r.data) > 0 || len(r.typ) > 0 || len(line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if len(r.data) == 0 {
				r.typ = r.typ[:0]
				continue
			}
			ev := Event{ID: r.lastID, Type: "message", Data: bytes.Clone(r.data[:len(r.data)-1])}
			if len(r.typ) > 0 {
				ev.Type = string(r.typ)
			}
			r.data, r.typ = r.data[:0], r.typ[:0]
			return ev, nil
		}
		if line[0] == ':' {
			return Event{ID: r.lastID, Comment: true, Data: bytes.Clone(bytes.TrimPrefix(line[1:], []byte(" ")))}, nil
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "event":
			r.typ = append(r.typ[:0], value...)
		case "data":
			if len(r.data)+len(value)+1 > r.max {
				return Event{}, syncpoint.Errorf(syncpoint.CodeTooLarge, "an event is over the %d byte limit", r.max)
			}
			r.data = append(append(r.data, value...), '\n')
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				r.lastID = string(value)
			}
		case "retry":
			if ms, err := strconv.ParseUint(string(value), 10, 63); err == nil {
				r.retry = time.Duration(min(ms, uint64(maxMillis))) * time.Millisecond
			}
		}
	}
}

// readLine returns the next line without its end; it is valid until the
// next call.
func (r *EventReader) readLine() ([]byte, error) {
	r.line = r.line[:0]
	for {
		c, err := r.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(r.line) > 0 {
				return r.line, io.ErrUnexpectedEOF
			}
			return r.line, err
		}
		if !r.began {
			r.began = true
			if c == 0xEF {
				// A UTF-8 byte order mark may open the stream.
				if b, err := r.r.Peek(2); err == nil && b[0] == 0xBB && b[1] == 0xBF {
					r.r.Discard(2)
					continue
				}
			}
		}
		if r.skipLF {
			r.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return r.line, nil
		case '\r':
			r.skipLF = true
			return r.line, nil
		}
		if len(r.line) >= r.max {
			return nil, syncpoint.Errorf(syncpoint.CodeTooLarge, "a line is over the %d byte limit", r.max)
		}
		r.line = append(r.line, c)
	}
}
