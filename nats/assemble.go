package nats

// Why a message counts as lost; the reason label of syncpoint_nats_lost_total.
const (
	lostReconnect    = "reconnect"
	lostSlowConsumer = "slow_consumer"
	lostMalformed    = "malformed"
	lostGap          = "gap"
	lostTooLarge     = "too_large"
)

// assembler rebuilds bodies from the messages of every origin node and
// notices the ones that went missing: each origin numbers its messages, and
// NATS keeps one publisher's order to one subscriber. It is used by the one
// delivery goroutine only.
type assembler struct {
	maxBytes int
	origins  map[string]*origin
}

// origin is what the assembler knows of one node's stream.
type origin struct {
	instance uint64
	seq      uint64
	open     bool // a body was started and is not finished
	kind     byte
	partial  []byte
}

func newAssembler(maxBytes int) *assembler {
	return &assembler{maxBytes: maxBytes, origins: make(map[string]*origin)}
}

// reset forgets every origin, after a reconnect: the gaps it left are
// reported once, as the reconnect, not again per node.
func (a *assembler) reset() { clear(a.origins) }

// add takes one message. It returns the body once its last fragment is in,
// and a non-empty lost reason when messages before this one went missing or
// this one cannot be used. A body is never reused, so decoded entries may
// alias it.
func (a *assembler) add(h header, frag []byte) (body []byte, done bool, lost string) {
	o := a.origins[h.node]
	switch {
	case o == nil:
		// The first message heard from this node: its numbering starts here.
		o = &origin{instance: h.instance}
		a.origins[h.node] = o
	case o.instance != h.instance:
		// The node restarted; only an unfinished body of its old run is lost.
		if o.open {
			lost = lostGap
		}
		*o = origin{instance: h.instance}
	case h.seq != o.seq+1:
		lost = lostGap
		o.open, o.partial = false, nil
	}
	o.seq = h.seq

	first, last := h.flags&flagFirst != 0, h.flags&flagLast != 0
	if first {
		if o.open && lost == "" {
			lost = lostGap // the previous body never finished
		}
		o.open, o.partial = false, nil
		if last {
			return frag, true, lost
		}
		if len(frag) > a.maxBytes {
			return nil, false, firstOf(lost, lostTooLarge)
		}
		o.open, o.kind = true, h.kind
		o.partial = append(make([]byte, 0, 2*len(frag)), frag...)
		return nil, false, lost
	}
	if !o.open || o.kind != h.kind {
		// The start is missing: lost, or sent before this node subscribed.
		o.open, o.partial = false, nil
		return nil, false, firstOf(lost, lostGap)
	}
	if len(o.partial)+len(frag) > a.maxBytes {
		o.open, o.partial = false, nil
		return nil, false, firstOf(lost, lostTooLarge)
	}
	o.partial = append(o.partial, frag...)
	if !last {
		return nil, false, lost
	}
	body = o.partial
	o.open, o.partial = false, nil
	return body, true, lost
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
