package wire

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/syncpoint/syncpoint"
	"github.com/syncpoint/syncpoint/internal/jsontext"
	"github.com/syncpoint/syncpoint/wire/wirepb"
)

// EncodeProto appends the protobuf form of f (a wirepb.Frame) to dst.
// Entry and record data must be JSON; they travel as bytes.
func EncodeProto(dst []byte, f *Frame) ([]byte, error) {
	if f.Push != nil && f.Type() == "push" {
		return appendPushProto(dst, f.Push)
	}
	pb, err := toPB(f)
	if err != nil {
		return dst, err
	}
	out, err := proto.MarshalOptions{}.MarshalAppend(dst, pb)
	if err != nil {
		// Only invalid UTF-8 in a string gets here; the library's words are
		// not for the peer or the app.
		return dst, syncpoint.Errorf(syncpoint.CodeInvalid, "encode frame: a string is not valid UTF-8")
	}
	return out, nil
}

// DecodeProto parses a protobuf frame. Errors are *syncpoint.Error with
// CodeMalformed: bytes that are not a wirepb.Frame, a frame without a known
// message, data that is not JSON, or a value out of range; more than
// MaxFrameItems list elements is CodeTooLarge.
func DecodeProto(b []byte) (*Frame, error) {
	if f, ok := decodePushFast(b); ok {
		return f, nil
	}
	if f, ok := decodeAckFast(b); ok {
		return f, nil
	}
	return decodeProtoGeneric(b)
}

// decodeProtoGeneric decodes through the generated types; it is the
// reference that decodePushFast must agree with.
func decodeProtoGeneric(b []byte) (*Frame, error) {
	budget := MaxFrameItems
	if !countItems(b, (*wirepb.Frame)(nil).ProtoReflect().Descriptor(), &budget) {
		return nil, tooManyItems()
	}
	var pb wirepb.Frame
	if err := proto.Unmarshal(b, &pb); err != nil {
		// The library's message names its internals; say what is wrong instead.
		if strings.Contains(err.Error(), "UTF-8") {
			return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame: a string is not valid UTF-8")
		}
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame: frame is not valid protobuf")
	}
	f, err := fromPB(&pb)
	if err != nil {
		return nil, syncpoint.Errorf(syncpoint.CodeMalformed, "malformed frame: %s", err.Error())
	}
	return f, nil
}

// countItems spends budget on each list element of message b, so a hostile
// frame is refused before proto.Unmarshal allocates; bad bytes are left for
// Unmarshal to report.
func countItems(b []byte, md protoreflect.MessageDescriptor, budget *int) bool {
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return true
		}
		b = b[n:]
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return true
		}
		v := b[:m]
		b = b[m:]
		fd := fields.ByNumber(num)
		if fd == nil {
			continue
		}
		if fd.IsList() {
			if typ == protowire.BytesType && fd.Kind() != protoreflect.MessageKind && fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BytesKind {
				*budget -= m // packed scalars: at most one per byte
			} else {
				*budget--
			}
			if *budget < 0 {
				return false
			}
		}
		if fd.Kind() == protoreflect.MessageKind && typ == protowire.BytesType {
			inner, _ := protowire.ConsumeBytes(v)
			if !countItems(inner, fd.Message(), budget) {
				return false
			}
		}
	}
	return true
}

func encodeErr(format string, args ...any) error {
	return syncpoint.Errorf(syncpoint.CodeInvalid, "encode frame: "+format, args...)
}

func toPB(f *Frame) (*wirepb.Frame, error) {
	switch f.Type() {
	case "":
		return nil, encodeErr("no message is set")
	case "multiple":
		return nil, encodeErr("more than one message is set")
	}
	pb := new(wirepb.Frame)
	switch {
	case f.Hello != nil:
		h := f.Hello
		pb.Msg = &wirepb.Frame_Hello{Hello: &wirepb.Hello{
			Versions:   h.Versions,
			Token:      h.Token,
			DeviceId:   h.DeviceID,
			Platform:   h.Platform,
			AppVersion: h.AppVersion,
			Bizzes:     h.Bizzes,
			Positions:  toPBPositions(h.Positions),
		}}
	case f.Welcome != nil:
		w := f.Welcome
		ms, err := durationMillis(w.HeartbeatInterval)
		if err != nil {
			return nil, encodeErr("welcome: %v", err)
		}
		if w.MaxBatch < 0 || uint64(w.MaxBatch) > maxUint32 {
			return nil, encodeErr("welcome: max_batch %d is out of range", w.MaxBatch)
		}
		slab := make([]wirepb.ChannelStatus, len(w.Channels))
		chans := make([]*wirepb.ChannelStatus, len(w.Channels))
		for i, c := range w.Channels {
			s := &slab[i]
			s.Channel, s.Status, s.Epoch = c.Channel, c.Status, c.Epoch
			s.FirstSeq, s.LastSeq, s.From = c.FirstSeq, c.LastSeq, c.From
			chans[i] = s
		}
		pb.Msg = &wirepb.Frame_Welcome{Welcome: &wirepb.Welcome{
			Version:             w.Version,
			SessionId:           w.SessionID,
			HeartbeatIntervalMs: ms,
			MaxBatch:            uint32(w.MaxBatch),
			Channels:            chans,
		}}
	case f.Push != nil:
		entries, err := toPBEntries(f.Push.Entries)
		if err != nil {
			return nil, err
		}
		pb.Msg = &wirepb.Frame_Push{Push: &wirepb.Push{Entries: entries, Positions: toPBPositions(f.Push.Positions)}}
	case f.Ack != nil:
		pb.Msg = &wirepb.Frame_Ack{Ack: &wirepb.Ack{Positions: toPBPositions(f.Ack.Positions)}}
	case f.Write != nil:
		w := f.Write
		changes := make([]*wirepb.ChangeSet, len(w.Changes))
		for i := range w.Changes {
			c := &w.Changes[i]
			cs := &wirepb.ChangeSet{Biz: c.Biz, Target: c.Target}
			var err error
			if cs.Created, err = toPBRecords(c.Created); err != nil {
				return nil, err
			}
			if cs.Updated, err = toPBRecords(c.Updated); err != nil {
				return nil, err
			}
			if cs.Deleted, err = toPBRecords(c.Deleted); err != nil {
				return nil, err
			}
			changes[i] = cs
		}
		pb.Msg = &wirepb.Frame_Write{Write: &wirepb.Write{WriteId: w.WriteID, Changes: changes}}
	case f.WriteResult != nil:
		w := f.WriteResult
		out := &wirepb.WriteResult{WriteId: w.WriteID, Error: toPBError(w.Error)}
		if len(w.Saved) > 0 {
			slab := make([]wirepb.Saved, len(w.Saved))
			out.Saved = make([]*wirepb.Saved, len(w.Saved))
			for i, s := range w.Saved {
				p := &slab[i]
				p.Channel, p.Id, p.Seq, p.Overwrote = s.Channel, s.ID, s.Seq, s.Overwrote
				out.Saved[i] = p
			}
		}
		if len(w.Errors) > 0 {
			out.Errors = make([]*wirepb.RecordError, len(w.Errors))
			for i, e := range w.Errors {
				p := &wirepb.RecordError{Channel: e.Channel, Id: e.ID, Field: e.Field, Code: e.Code, Message: e.Message}
				if e.Current != nil {
					p.Current = new(wirepb.Entry)
					if err := toPBEntry(p.Current, e.Current); err != nil {
						return nil, err
					}
				}
				out.Errors[i] = p
			}
		}
		pb.Msg = &wirepb.Frame_WriteResult{WriteResult: out}
	case f.Ping != nil:
		pb.Msg = &wirepb.Frame_Ping{Ping: &wirepb.Ping{Nonce: f.Ping.Nonce}}
	case f.Pong != nil:
		pb.Msg = &wirepb.Frame_Pong{Pong: &wirepb.Pong{Nonce: f.Pong.Nonce}}
	case f.Error != nil:
		pb.Msg = &wirepb.Frame_Error{Error: toPBError(f.Error)}
	}
	return pb, nil
}

// toPBPositions and the other converters allocate one slab per list rather
// than one message per element: a push has hundreds.
func toPBPositions(ps []Position) []*wirepb.Position {
	if len(ps) == 0 {
		return nil
	}
	slab := make([]wirepb.Position, len(ps))
	out := make([]*wirepb.Position, len(ps))
	for i := range ps {
		p := &slab[i]
		p.Channel, p.Epoch, p.Seq = ps[i].Channel, ps[i].Epoch, ps[i].Seq
		out[i] = p
	}
	return out
}

func toPBEntries(es []Entry) ([]*wirepb.Entry, error) {
	if len(es) == 0 {
		return nil, nil
	}
	slab := make([]wirepb.Entry, len(es))
	out := make([]*wirepb.Entry, len(es))
	for i := range es {
		if err := toPBEntry(&slab[i], &es[i]); err != nil {
			return nil, err
		}
		out[i] = &slab[i]
	}
	return out, nil
}

func toPBEntry(p *wirepb.Entry, e *Entry) error {
	if len(e.Data) > 0 && !jsontext.Valid(e.Data) {
		return encodeErr("entry %s seq %d: data is not valid JSON", e.Channel, e.Seq)
	}
	p.Channel, p.Seq, p.Op, p.Key, p.Origin = e.Channel, e.Seq, e.Op, e.Key, e.Origin
	p.Data = e.Data
	p.CreatedAt, p.ExpiresAt = unixMilli(e.CreatedAt), unixMilli(e.ExpiresAt)
	return nil
}

func toPBRecords(rs []Record) ([]*wirepb.Record, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	slab := make([]wirepb.Record, len(rs))
	out := make([]*wirepb.Record, len(rs))
	for i := range rs {
		r := &rs[i]
		if len(r.Data) > 0 && !jsontext.Valid(r.Data) {
			return nil, encodeErr("record %q: data is not valid JSON", r.ID)
		}
		p := &slab[i]
		p.Id, p.BaseSeq, p.Data, p.Fields = r.ID, r.BaseSeq, r.Data, r.Fields
		out[i] = p
	}
	return out, nil
}

func toPBError(e *Error) *wirepb.Error {
	if e == nil {
		return nil
	}
	return &wirepb.Error{Code: uint32(e.Code), Reason: e.Reason, Message: e.Message, Fatal: e.Fatal}
}

// decodeError is a problem found while converting; DecodeProto wraps it.
type decodeError string

func (e decodeError) Error() string { return string(e) }

func fromPB(pb *wirepb.Frame) (*Frame, error) {
	f := new(Frame)
	switch m := pb.Msg.(type) {
	case *wirepb.Frame_Hello:
		h := m.Hello
		f.Hello = &Hello{
			Versions:   h.Versions,
			Token:      h.Token,
			DeviceID:   h.DeviceId,
			Platform:   h.Platform,
			AppVersion: h.AppVersion,
			Bizzes:     h.Bizzes,
			Positions:  fromPBPositions(h.Positions),
		}
		if len(f.Hello.Versions) == 0 {
			f.Hello.Versions = nil
		}
		if len(f.Hello.Bizzes) == 0 {
			f.Hello.Bizzes = nil
		}
	case *wirepb.Frame_Welcome:
		w := m.Welcome
		d, ok := millisDuration(w.HeartbeatIntervalMs)
		if !ok {
			return nil, decodeError("welcome: heartbeat_interval_ms is out of range")
		}
		out := &Welcome{Version: w.Version, SessionID: w.SessionId, HeartbeatInterval: d, MaxBatch: int(w.MaxBatch)}
		if len(w.Channels) > 0 {
			out.Channels = make([]ChannelStatus, len(w.Channels))
			for i, c := range w.Channels {
				out.Channels[i] = ChannelStatus{
					Channel: c.Channel, Status: c.Status, Epoch: c.Epoch,
					FirstSeq: c.FirstSeq, LastSeq: c.LastSeq, From: c.From,
				}
			}
		}
		f.Welcome = out
	case *wirepb.Frame_Push:
		p := &Push{Positions: fromPBPositions(m.Push.Positions)}
		if len(m.Push.Entries) > 0 {
			p.Entries = make([]Entry, len(m.Push.Entries))
			for i, e := range m.Push.Entries {
				if err := fromPBEntry(&p.Entries[i], e); err != nil {
					return nil, err
				}
			}
		}
		f.Push = p
	case *wirepb.Frame_Ack:
		f.Ack = &Ack{Positions: fromPBPositions(m.Ack.Positions)}
	case *wirepb.Frame_Write:
		w := &Write{WriteID: m.Write.WriteId}
		if len(m.Write.Changes) > 0 {
			w.Changes = make([]ChangeSet, len(m.Write.Changes))
			for i, c := range m.Write.Changes {
				cs := ChangeSet{Biz: c.Biz, Target: c.Target}
				var err error
				if cs.Created, err = fromPBRecords(c.Created); err != nil {
					return nil, err
				}
				if cs.Updated, err = fromPBRecords(c.Updated); err != nil {
					return nil, err
				}
				if cs.Deleted, err = fromPBRecords(c.Deleted); err != nil {
					return nil, err
				}
				w.Changes[i] = cs
			}
		}
		f.Write = w
	case *wirepb.Frame_WriteResult:
		m2 := m.WriteResult
		w := &WriteResult{WriteID: m2.WriteId, Error: fromPBError(m2.Error)}
		if len(m2.Saved) > 0 {
			w.Saved = make([]Saved, len(m2.Saved))
			for i, s := range m2.Saved {
				w.Saved[i] = Saved{Channel: s.Channel, ID: s.Id, Seq: s.Seq, Overwrote: s.Overwrote}
			}
		}
		if len(m2.Errors) > 0 {
			w.Errors = make([]RecordError, len(m2.Errors))
			for i, e := range m2.Errors {
				re := RecordError{Channel: e.Channel, ID: e.Id, Field: e.Field, Code: e.Code, Message: e.Message}
				if e.Current != nil {
					re.Current = new(Entry)
					if err := fromPBEntry(re.Current, e.Current); err != nil {
						return nil, err
					}
				}
				w.Errors[i] = re
			}
		}
		f.WriteResult = w
	case *wirepb.Frame_Ping:
		f.Ping = &Ping{Nonce: m.Ping.GetNonce()}
	case *wirepb.Frame_Pong:
		f.Pong = &Pong{Nonce: m.Pong.GetNonce()}
	case *wirepb.Frame_Error:
		f.Error = fromPBError(m.Error)
		if f.Error == nil {
			f.Error = &Error{}
		}
	default:
		return nil, decodeError("the frame holds no message this version knows")
	}
	return f, nil
}

func fromPBPositions(ps []*wirepb.Position) []Position {
	if len(ps) == 0 {
		return nil
	}
	out := make([]Position, len(ps))
	for i, p := range ps {
		out[i] = Position{Channel: p.Channel, Epoch: p.Epoch, Seq: p.Seq}
	}
	return out
}

func fromPBEntry(e *Entry, p *wirepb.Entry) error {
	data, err := fromPBData(p.Data)
	if err != nil {
		return decodeError(fmt.Sprintf("entry %q: data is not valid JSON", clip(p.Channel)))
	}
	*e = Entry{
		Channel:   p.Channel,
		Seq:       p.Seq,
		Op:        p.Op,
		Key:       p.Key,
		Data:      data,
		CreatedAt: fromUnixMilli(p.CreatedAt),
		ExpiresAt: fromUnixMilli(p.ExpiresAt),
		Origin:    p.Origin,
	}
	return nil
}

// fromPBData checks that data is JSON and trims white space around it, so
// that it compares equal to what the JSON codec would have produced.
func fromPBData(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if !jsontext.Valid(b) {
		return nil, decodeError("not JSON")
	}
	b = jsontext.Trim(b)
	return b[:len(b):len(b)], nil
}

func fromPBRecords(rs []*wirepb.Record) ([]Record, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	out := make([]Record, len(rs))
	for i, r := range rs {
		data, err := fromPBData(r.Data)
		if err != nil {
			return nil, decodeError(fmt.Sprintf("record %q: data is not valid JSON", clip(r.Id)))
		}
		out[i] = Record{ID: r.Id, BaseSeq: r.BaseSeq, Data: data, Fields: r.Fields}
	}
	return out, nil
}

func fromPBError(e *wirepb.Error) *Error {
	if e == nil {
		return nil
	}
	return &Error{Code: CloseCode(e.Code), Reason: e.Reason, Message: e.Message, Fatal: e.Fatal}
}
