package wire

// DecodeJSON parses a JSON frame. It rejects anything but one object with
// exactly one known message key, members of the wrong type, and data that
// is not JSON, with a *syncpoint.Error of CodeMalformed that says where, and
// more than MaxFrameItems list elements with CodeTooLarge.
// Unknown members inside a message are skipped, so that newer peers can add
// fields; null reads as an absent member.
func DecodeJSON(b []byte) (*Frame, error) {
	r := newJSONReader(b)
	f := new(Frame)
	if r.peek() != '{' {
		r.fail("want a JSON object")
		return nil, r.err
	}
	r.Pos++
	var name string
	for first := true; r.member(&first); {
		if name != "" {
			r.fail("a frame holds one message; %s came first", clip(name))
			break
		}
		name = string(r.key)
		if r.peek() != '{' {
			r.fail("want an object")
			break
		}
		switch name {
		case "hello":
			f.Hello = r.hello()
		case "welcome":
			f.Welcome = r.welcome()
		case "push":
			f.Push = r.push()
		case "ack":
			f.Ack = &Ack{}
			r.object()
			for first := true; r.member(&first); {
				switch string(r.key) {
				case "positions":
					f.Ack.Positions = r.positions()
				default:
					r.skip()
				}
			}
		case "write":
			f.Write = r.write()
		case "write_result":
			f.WriteResult = r.writeResult()
		case "ping":
			f.Ping = &Ping{Nonce: r.nonce()}
		case "pong":
			f.Pong = &Pong{Nonce: r.nonce()}
		case "error":
			f.Error = r.error()
		default:
			r.key = nil
			r.fail("unknown message %q", clip(name))
		}
		r.key = nil
	}
	if r.err == nil && name == "" {
		r.fail("the frame holds no message")
	}
	if r.err == nil {
		if r.Space(); r.Pos != len(r.Data) {
			r.fail("data after the frame")
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	return f, nil
}

func (r *jsonReader) positions() []Position {
	var out []Position
	if !r.array() {
		return nil
	}
	for first := true; r.elem(&first); {
		var p Position
		if !r.element() {
			break
		}
		for first := true; r.member(&first); {
			switch string(r.key) {
			case "channel":
				p.Channel = r.str()
			case "epoch":
				p.Epoch = r.str()
			case "seq":
				p.Seq = r.uint64()
			default:
				r.skip()
			}
		}
		out = append(out, p)
	}
	return out
}

// element opens an object that is an array element; there null is an
// error, since an absent element has no meaning.
func (r *jsonReader) element() bool {
	if r.peek() != '{' {
		r.fail("want an object in the array")
		return false
	}
	r.Pos++
	return true
}

func (r *jsonReader) strings() []string {
	var out []string
	if !r.array() {
		return nil
	}
	for first := true; r.elem(&first); {
		if r.peek() != '"' {
			r.fail("want a string in the array")
			break
		}
		out = append(out, r.str())
	}
	return out
}

func (r *jsonReader) hello() *Hello {
	h := new(Hello)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "versions":
			h.Versions = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				if c := r.peek(); c < '0' || c > '9' {
					r.fail("want an unsigned integer in the array")
					break
				}
				h.Versions = append(h.Versions, r.uint32())
			}
		case "token":
			h.Token = r.str()
		case "device_id":
			h.DeviceID = r.str()
		case "platform":
			h.Platform = r.str()
		case "app_version":
			h.AppVersion = r.str()
		case "bizzes":
			h.Bizzes = r.strings()
		case "positions":
			h.Positions = r.positions()
		default:
			r.skip()
		}
	}
	return h
}

func (r *jsonReader) welcome() *Welcome {
	w := new(Welcome)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "version":
			w.Version = r.uint32()
		case "session_id":
			w.SessionID = r.str()
		case "heartbeat_interval_ms":
			d, ok := millisDuration(r.uint64())
			if !ok {
				r.fail("out of range")
			}
			w.HeartbeatInterval = d
		case "max_batch":
			w.MaxBatch = int(r.uint32())
		case "channels":
			w.Channels = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				var c ChannelStatus
				if !r.element() {
					break
				}
				for first := true; r.member(&first); {
					switch string(r.key) {
					case "channel":
						c.Channel = r.str()
					case "status":
						c.Status = r.str()
					case "epoch":
						c.Epoch = r.str()
					case "first_seq":
						c.FirstSeq = r.uint64()
					case "last_seq":
						c.LastSeq = r.uint64()
					case "from":
						c.From = r.uint64()
					default:
						r.skip()
					}
				}
				w.Channels = append(w.Channels, c)
			}
		default:
			r.skip()
		}
	}
	return w
}

// entry reads the members of an entry whose brace was consumed.
func (r *jsonReader) entry(e *Entry) {
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "channel":
			e.Channel = r.str()
		case "seq":
			e.Seq = r.uint64()
		case "op":
			e.Op = r.op()
		case "key":
			e.Key = r.str()
		case "data":
			e.Data = r.raw()
		case "created_at":
			e.CreatedAt = fromUnixMilli(r.int64())
		case "expires_at":
			e.ExpiresAt = fromUnixMilli(r.int64())
		case "origin":
			e.Origin = r.str()
		default:
			r.skip()
		}
	}
}

// op reads an op, sharing the constant strings of the known ones.
func (r *jsonReader) op() string {
	if r.peek() == '"' {
		start := r.Pos
		if raw, plain, err := r.RawString(); err == nil && plain {
			if op, ok := knownOp(raw); ok {
				return op
			}
		}
		r.Pos = start
	}
	return r.str()
}

func (r *jsonReader) push() *Push {
	p := new(Push)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "entries":
			p.Entries = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				if !r.element() {
					break
				}
				p.Entries = append(p.Entries, Entry{})
				r.entry(&p.Entries[len(p.Entries)-1])
			}
		case "positions":
			p.Positions = r.positions()
		default:
			r.skip()
		}
	}
	return p
}

func (r *jsonReader) records() []Record {
	var out []Record
	if !r.array() {
		return nil
	}
	for first := true; r.elem(&first); {
		var rec Record
		if !r.element() {
			break
		}
		for first := true; r.member(&first); {
			switch string(r.key) {
			case "id":
				rec.ID = r.str()
			case "base_seq":
				rec.BaseSeq = r.uint64()
			case "data":
				rec.Data = r.raw()
			case "fields":
				rec.Fields = r.strings()
			default:
				r.skip()
			}
		}
		out = append(out, rec)
	}
	return out
}

func (r *jsonReader) write() *Write {
	w := new(Write)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "write_id":
			w.WriteID = r.str()
		case "changes":
			w.Changes = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				var c ChangeSet
				if !r.element() {
					break
				}
				for first := true; r.member(&first); {
					switch string(r.key) {
					case "biz":
						c.Biz = r.str()
					case "target":
						c.Target = r.str()
					case "created":
						c.Created = r.records()
					case "updated":
						c.Updated = r.records()
					case "deleted":
						c.Deleted = r.records()
					default:
						r.skip()
					}
				}
				w.Changes = append(w.Changes, c)
			}
		default:
			r.skip()
		}
	}
	return w
}

func (r *jsonReader) writeResult() *WriteResult {
	w := new(WriteResult)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "write_id":
			w.WriteID = r.str()
		case "saved":
			w.Saved = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				var s Saved
				if !r.element() {
					break
				}
				for first := true; r.member(&first); {
					switch string(r.key) {
					case "channel":
						s.Channel = r.str()
					case "id":
						s.ID = r.str()
					case "seq":
						s.Seq = r.uint64()
					case "overwrote":
						s.Overwrote = r.boolean()
					default:
						r.skip()
					}
				}
				w.Saved = append(w.Saved, s)
			}
		case "errors":
			w.Errors = nil
			if !r.array() {
				continue
			}
			for first := true; r.elem(&first); {
				var e RecordError
				if !r.element() {
					break
				}
				for first := true; r.member(&first); {
					switch string(r.key) {
					case "channel":
						e.Channel = r.str()
					case "id":
						e.ID = r.str()
					case "field":
						e.Field = r.str()
					case "code":
						e.Code = r.str()
					case "message":
						e.Message = r.str()
					case "current":
						e.Current = nil
						if r.object() {
							e.Current = new(Entry)
							r.entry(e.Current)
						}
					default:
						r.skip()
					}
				}
				w.Errors = append(w.Errors, e)
			}
		case "error":
			w.Error = nil
			if r.peek() == '{' {
				w.Error = r.error()
			} else {
				r.object() // null, or the error for anything else
			}
		default:
			r.skip()
		}
	}
	return w
}

func (r *jsonReader) nonce() uint64 {
	var n uint64
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "nonce":
			n = r.uint64()
		default:
			r.skip()
		}
	}
	return n
}

func (r *jsonReader) error() *Error {
	e := new(Error)
	r.object()
	for first := true; r.member(&first); {
		switch string(r.key) {
		case "code":
			e.Code = CloseCode(r.uint32())
		case "reason":
			e.Reason = r.str()
		case "message":
			e.Message = r.str()
		case "fatal":
			e.Fatal = r.boolean()
		default:
			r.skip()
		}
	}
	return e
}
