// Package nats is the Broker of a cluster of syncpoint nodes on core NATS.
//
// Every node publishes each batch of entries as one message on
// "<prefix>.entries" and each control event on "<prefix>.events"; every node
// subscribes to both. A batch is encoded once, whatever the number of nodes,
// and cut into several messages when it is larger than the server's
// max_payload. A node hands its own batches and events to its own
// subscribers and listeners inside Publish and Announce, with no round trip
// through NATS, and never takes them back from NATS.
//
// Core NATS is at-most-once, and the store is the truth. Each node numbers
// the messages it sends; a receiver that sees a gap, reconnects, falls
// behind (a slow consumer) or cannot decode a message tells its own
// listeners with an EventLost, so that the hub reads what it missed from the
// store.
//
// Both subjects feed one subscription channel and one goroutine, so the
// messages of one node reach another in the order they were sent, entries
// and events alike. Sharding the entries subject by channel would spread
// the load over NATS servers but give up that order; one subject is plenty
// for the fan-out of one cluster.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/syncpoint/syncpoint"
)

var _ syncpoint.Broker = (*Broker)(nil)

// Defaults for Options.
const (
	DefaultSubject = "syncpoint"
	// DefaultPingInterval and DefaultMaxPingsOutstanding notice a NATS
	// server that stopped answering within about six seconds.
	DefaultPingInterval        = 2 * time.Second
	DefaultMaxPingsOutstanding = 2
	DefaultReconnectWait       = 100 * time.Millisecond
	DefaultMaxReconnectWait    = 2 * time.Second
	DefaultWriteTimeout        = 5 * time.Second
	DefaultReconnectBufSize    = 8 << 20
	DefaultPendingLimit        = 4096
	DefaultMaxBatchBytes       = 64 << 20
)

// Options configure a Broker. Only Node is required.
type Options struct {
	// Node is this node's id, unique in the cluster: messages carry it, so
	// a node knows its own. At most MaxNodeLen bytes.
	Node string
	// Subject is the prefix of the two subjects, "<Subject>.entries" and
	// "<Subject>.events"; DefaultSubject when empty. Clusters that share a
	// NATS server need different prefixes.
	Subject string
	// Logger receives connection changes and losses; nothing when nil.
	Logger *slog.Logger
	// Registerer, when not nil, gets the syncpoint_nats_* series.
	Registerer prometheus.Registerer

	// PingInterval and MaxPingsOutstanding bound how long a dead
	// connection goes unnoticed: about PingInterval × (MaxPingsOutstanding+1).
	PingInterval        time.Duration
	MaxPingsOutstanding int
	// ReconnectWait is the wait after the first failed reconnect; it
	// doubles up to MaxReconnectWait. Reconnects never stop.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// WriteTimeout bounds a write to the NATS socket, and so how long
	// Publish can block on a stalled connection.
	WriteTimeout time.Duration
	// ReconnectBufSize is how many bytes of publishes are kept while
	// reconnecting; past it Publish fails at once.
	ReconnectBufSize int
	// PendingLimit is how many received messages may wait for delivery;
	// past it NATS drops them and the node makes an EventLost.
	PendingLimit int
	// MaxBatchBytes bounds a batch rebuilt from several messages; a larger
	// one is dropped, with an EventLost.
	MaxBatchBytes int
	// NATSOptions are applied after the broker's own: credentials, TLS.
	// They must not replace the broker's handlers (ReconnectHandler,
	// ErrorHandler), which make EventLost.
	NATSOptions []natsgo.Option

	// DropIncoming is for tests of loss recovery. It is called with the
	// subject of every message received, before decoding; a message it
	// returns true for is dropped as if NATS had lost it. The next message
	// from the same node shows the gap, and listeners get EventLost then.
	DropIncoming func(subject string) bool
}

// Broker is the NATS Broker of one node. Its methods are safe for
// concurrent use.
type Broker struct {
	nc       *natsgo.Conn
	opts     Options
	node     string
	instance uint64
	entries  string // subjects
	events   string
	log      *slog.Logger
	m        *metrics

	mu        sync.Mutex // guards next, subs, listeners
	next      int
	subs      map[int]func([]syncpoint.Entry)
	listeners map[int]func(syncpoint.Event)
	// Delivery reads these copies without a lock, so a callback may
	// unsubscribe.
	subsView      atomic.Pointer[[]func([]syncpoint.Entry)]
	listenersView atomic.Pointer[[]func(syncpoint.Event)]

	pubMu   sync.Mutex // orders messages on the wire as seq does
	seq     uint64
	buffers sync.Pool // encoding buffers, between publishes

	closed    atomic.Bool
	resets    atomic.Uint64 // counts reconnects, for the delivery goroutine
	dupWarned atomic.Bool
	quit      chan struct{}
	done      chan struct{}
}

// Open connects to the NATS server(s) at url (comma-separated for several)
// and subscribes. The first connection must succeed before ctx ends; after
// that the broker reconnects by itself for as long as it is open.
func Open(ctx context.Context, url string, opts Options) (*Broker, error) {
	if opts.Node == "" || len(opts.Node) > MaxNodeLen {
		return nil, fmt.Errorf("open nats broker: node id must be 1 to %d bytes", MaxNodeLen)
	}
	if opts.Subject == "" {
		opts.Subject = DefaultSubject
	}
	if !validSubjectPrefix(opts.Subject) {
		return nil, fmt.Errorf("open nats broker: subject prefix %q: want dot-separated tokens without spaces or wildcards", opts.Subject)
	}
	setDefault(&opts.PingInterval, DefaultPingInterval)
	setDefault(&opts.MaxPingsOutstanding, DefaultMaxPingsOutstanding)
	setDefault(&opts.ReconnectWait, DefaultReconnectWait)
	setDefault(&opts.MaxReconnectWait, DefaultMaxReconnectWait)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.ReconnectBufSize, DefaultReconnectBufSize)
	setDefault(&opts.PendingLimit, DefaultPendingLimit)
	setDefault(&opts.MaxBatchBytes, DefaultMaxBatchBytes)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	b := &Broker{
		opts:      opts,
		node:      opts.Node,
		instance:  rand.Uint64(),
		entries:   opts.Subject + ".entries",
		events:    opts.Subject + ".events",
		log:       log,
		m:         m,
		subs:      make(map[int]func([]syncpoint.Entry)),
		listeners: make(map[int]func(syncpoint.Event)),
		quit:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	b.subsView.Store(new([]func([]syncpoint.Entry)))
	b.listenersView.Store(new([]func(syncpoint.Event)))

	nopts := append([]natsgo.Option{
		natsgo.Name("syncpoint node " + opts.Node),
		natsgo.MaxReconnects(-1),
		natsgo.CustomReconnectDelay(b.reconnectDelay),
		natsgo.PingInterval(opts.PingInterval),
		natsgo.MaxPingsOutstanding(opts.MaxPingsOutstanding),
		natsgo.FlusherTimeout(opts.WriteTimeout),
		natsgo.ReconnectBufSize(opts.ReconnectBufSize),
		// A node delivers its own messages itself; the server need not
		// send them back.
		natsgo.NoEcho(),
		natsgo.NoCallbacksAfterClientClose(),
		natsgo.DisconnectErrHandler(b.disconnected),
		natsgo.ReconnectHandler(b.reconnected),
		natsgo.ErrorHandler(b.asyncError),
	}, opts.NATSOptions...)
	if b.nc, err = connect(ctx, url, nopts); err != nil {
		return nil, fmt.Errorf("open nats broker: connect to %s: %w", redactURL(url), err)
	}
	ch := make(chan *natsgo.Msg, opts.PendingLimit)
	for _, subj := range []string{b.entries, b.events} {
		if _, err := b.nc.ChanSubscribe(subj, ch); err != nil {
			b.nc.Close()
			return nil, fmt.Errorf("open nats broker: subscribe to %s: %w", subj, err)
		}
	}
	// Once the server has the subscriptions, nothing published after Open
	// returns is missed.
	if err := b.nc.FlushTimeout(opts.WriteTimeout); err != nil {
		b.nc.Close()
		return nil, fmt.Errorf("open nats broker: subscribe: %w", err)
	}
	go b.deliver(ch)
	b.log.Info("nats: connected", "node", b.node, "server", b.nc.ConnectedUrlRedacted(), "max_payload", b.nc.MaxPayload())
	return b, nil
}

// connect dials in a goroutine, so that ctx bounds it.
func connect(ctx context.Context, url string, opts []natsgo.Option) (*natsgo.Conn, error) {
	type result struct {
		nc  *natsgo.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		nc, err := natsgo.Connect(url, opts...)
		res <- result{nc, err}
	}()
	select {
	case r := <-res:
		return r.nc, r.err
	case <-ctx.Done():
		go func() {
			if r := <-res; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Publish hands entries to this node's subscribers, then publishes them for
// the other nodes. The NATS hand-off only buffers, so ctx is not consulted;
// a write to a stalled connection blocks for at most WriteTimeout, and while
// reconnecting up to ReconnectBufSize bytes are kept. An error means other
// nodes may not get the entries; this node's subscribers did.
func (b *Broker) Publish(ctx context.Context, entries []syncpoint.Entry) error {
	if b.closed.Load() {
		return syncpoint.ErrClosed
	}
	if len(entries) == 0 {
		return nil
	}
	for _, fn := range *b.subsView.Load() {
		fn(entries)
	}
	buf := b.getBuffer()
	defer b.putBuffer(buf)
	*buf = appendEntries(*buf, entries)
	if err := b.send(kindEntries, *buf); err != nil {
		return fmt.Errorf("publish entries: %w", err)
	}
	return nil
}

// Announce hands ev to this node's listeners, then publishes it for the
// other nodes, with Node set to this node when empty. EventLost is made by
// each broker for its own node and cannot be announced.
func (b *Broker) Announce(ctx context.Context, ev syncpoint.Event) error {
	if ev.Kind == "" || ev.Kind == syncpoint.EventLost {
		return fmt.Errorf("announce: kind %q cannot be announced", ev.Kind)
	}
	if b.closed.Load() {
		return syncpoint.ErrClosed
	}
	if ev.Node == "" {
		ev.Node = b.node
	}
	for _, fn := range *b.listenersView.Load() {
		fn(ev)
	}
	buf := b.getBuffer()
	defer b.putBuffer(buf)
	var err error
	if *buf, err = appendEvent(*buf, &ev); err != nil {
		return fmt.Errorf("announce %s: %w", ev.Kind, err)
	}
	if err := b.send(kindEvent, *buf); err != nil {
		return fmt.Errorf("announce %s: %w", ev.Kind, err)
	}
	return nil
}

// send publishes the body in buf[maxHeaderLen:], in as many messages as the
// server's max_payload requires. The first maxHeaderLen bytes of buf are
// room for the header, so a body that fits is sent without a copy.
func (b *Broker) send(kind byte, buf []byte) error {
	body := buf[maxHeaderLen:]
	b.pubMu.Lock()
	defer b.pubMu.Unlock()
	if b.closed.Load() {
		return syncpoint.ErrClosed
	}
	room := int(b.nc.MaxPayload()) - maxHeaderLen
	if room < 64 {
		return fmt.Errorf("the server's max_payload of %d bytes leaves no room for data", b.nc.MaxPayload())
	}
	h := header{kind: kind, node: b.node, instance: b.instance}
	if len(body) <= room {
		b.seq++
		h.flags, h.seq = flagFirst|flagLast, b.seq
		var scratch [maxHeaderLen]byte
		hdr := appendHeader(scratch[:0], h)
		msg := buf[maxHeaderLen-len(hdr):]
		copy(msg, hdr)
		return b.publish(kind, msg)
	}
	// nats.go copies each message into its own buffer, so one part buffer
	// serves every fragment.
	part := make([]byte, 0, maxHeaderLen+room)
	for off := 0; off < len(body); off += room {
		end := min(off+room, len(body))
		h.flags = 0
		if off == 0 {
			h.flags |= flagFirst
		}
		if end == len(body) {
			h.flags |= flagLast
		}
		// A failed fragment still uses its seq, so receivers see the gap.
		b.seq++
		h.seq = b.seq
		part = appendHeader(part[:0], h)
		part = append(part, body[off:end]...)
		if err := b.publish(kind, part); err != nil {
			return err
		}
	}
	return nil
}

func (b *Broker) publish(kind byte, msg []byte) error {
	subject, label := b.entries, labelEntries
	if kind == kindEvent {
		subject, label = b.events, labelEvents
	}
	if err := b.nc.Publish(subject, msg); err != nil {
		b.m.publishErrors.WithLabelValues(label).Inc()
		if errors.Is(err, natsgo.ErrConnectionClosed) && b.closed.Load() {
			return syncpoint.ErrClosed
		}
		return fmt.Errorf("nats: %w", err)
	}
	b.m.published.WithLabelValues(label).Inc()
	b.m.publishedB.WithLabelValues(label).Add(float64(len(msg)))
	return nil
}

// Subscribe calls fn with every batch: this node's inside Publish, other
// nodes' from the delivery goroutine, in the order each node sent them.
func (b *Broker) Subscribe(fn func([]syncpoint.Entry)) (func(), error) {
	return register(b, b.subs, &b.subsView, fn)
}

// Listen calls fn with every event: this node's inside Announce, other
// nodes' from the delivery goroutine, and EventLost from whichever
// goroutine noticed the loss.
func (b *Broker) Listen(fn func(syncpoint.Event)) (func(), error) {
	return register(b, b.listeners, &b.listenersView, fn)
}

func register[F any](b *Broker, m map[int]F, view *atomic.Pointer[[]F], fn F) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil, syncpoint.ErrClosed
	}
	id := b.next
	b.next++
	m[id] = fn
	storeView(m, view)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			delete(m, id)
			storeView(m, view)
			b.mu.Unlock()
		})
	}, nil
}

// storeView publishes a fresh copy of m; the caller holds b.mu.
func storeView[F any](m map[int]F, view *atomic.Pointer[[]F]) {
	fns := make([]F, 0, len(m))
	for _, fn := range m {
		fns = append(fns, fn)
	}
	view.Store(&fns)
}

// Health returns nil while the broker is connected to NATS, for /readyz.
func (b *Broker) Health(ctx context.Context) error {
	if b.closed.Load() {
		return syncpoint.ErrClosed
	}
	if s := b.nc.Status(); s != natsgo.CONNECTED {
		return fmt.Errorf("nats: %s", strings.ToLower(s.String()))
	}
	return nil
}

// Close stops delivery and closes the connection, after sending what was
// published. Later calls return ErrClosed.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.mu.Lock()
	clear(b.subs)
	clear(b.listeners)
	storeView(b.subs, &b.subsView)
	storeView(b.listeners, &b.listenersView)
	b.mu.Unlock()
	// A batch being sent goes out whole.
	b.pubMu.Lock()
	b.nc.Close()
	b.pubMu.Unlock()
	close(b.quit)
	<-b.done
	return nil
}

// deliver is the one goroutine that hands other nodes' messages to this
// node, in the order they arrived.
func (b *Broker) deliver(ch <-chan *natsgo.Msg) {
	defer close(b.done)
	asm := newAssembler(b.opts.MaxBatchBytes)
	resets := b.resets.Load()
	for {
		select {
		case <-b.quit:
			return
		case msg := <-ch:
			if r := b.resets.Load(); r != resets {
				resets = r
				asm.reset()
			}
			b.receive(asm, msg)
		}
	}
}

func (b *Broker) receive(asm *assembler, msg *natsgo.Msg) {
	kind, label := byte(kindEntries), labelEntries
	if msg.Subject == b.events {
		kind, label = kindEvent, labelEvents
	}
	b.m.received.WithLabelValues(label).Inc()
	b.m.receivedB.WithLabelValues(label).Add(float64(len(msg.Data)))
	if b.opts.DropIncoming != nil && b.opts.DropIncoming(msg.Subject) {
		return
	}
	h, frag, err := decodeHeader(msg.Data)
	if err == nil && h.kind != kind {
		err = malformed("kind %d on %s", h.kind, msg.Subject)
	}
	if err != nil {
		b.lose(lostMalformed, "subject", msg.Subject, "err", err)
		return
	}
	if h.node == b.node {
		// The server does not echo this connection's messages, so another
		// process has this node's id.
		if !b.dupWarned.Swap(true) {
			b.log.Error("nats: another node uses this node's id; its messages are ignored", "node", b.node)
		}
		return
	}
	body, done, lost := asm.add(h, frag)
	if lost != "" {
		b.lose(lost, "from", h.node)
	}
	if !done {
		return
	}
	if kind == kindEvent {
		ev, err := decodeEvent(body)
		if err != nil {
			b.lose(lostMalformed, "from", h.node, "err", err)
			return
		}
		for _, fn := range *b.listenersView.Load() {
			fn(ev)
		}
		return
	}
	entries, err := decodeEntries(body)
	if err != nil {
		b.lose(lostMalformed, "from", h.node, "err", err)
		return
	}
	for _, fn := range *b.subsView.Load() {
		fn(entries)
	}
}

// lose tells this node's listeners that messages may have been lost.
func (b *Broker) lose(reason string, attrs ...any) {
	b.m.lost.WithLabelValues(reason).Inc()
	b.log.Warn("nats: messages may have been lost; channels are checked against the store", append([]any{"reason", reason}, attrs...)...)
	ev := syncpoint.Event{Kind: syncpoint.EventLost, Node: b.node}
	for _, fn := range *b.listenersView.Load() {
		fn(ev)
	}
}

func (b *Broker) disconnected(nc *natsgo.Conn, err error) {
	if b.closed.Load() {
		return
	}
	b.log.Warn("nats: disconnected; reconnecting", "err", err)
}

// reconnected runs after nats.go has sent the subscriptions again. The
// round trip makes sure the server has them before the hub checks the
// store, so anything appended after the check arrives by NATS.
func (b *Broker) reconnected(nc *natsgo.Conn) {
	b.m.reconnects.Inc()
	b.resets.Add(1)
	if err := nc.FlushTimeout(b.opts.WriteTimeout); err != nil {
		// Disconnected again: the next reconnect makes its own EventLost.
		b.log.Warn("nats: reconnected, but the server did not answer", "err", err)
	} else {
		b.log.Info("nats: reconnected", "server", nc.ConnectedUrlRedacted())
	}
	b.lose(lostReconnect)
}

func (b *Broker) asyncError(nc *natsgo.Conn, sub *natsgo.Subscription, err error) {
	if errors.Is(err, natsgo.ErrSlowConsumer) {
		b.lose(lostSlowConsumer)
		return
	}
	b.log.Warn("nats: asynchronous error", "err", err)
}

// reconnectDelay backs off from ReconnectWait to MaxReconnectWait, with
// jitter so that the nodes of a cluster do not reconnect in step.
func (b *Broker) reconnectDelay(attempts int) time.Duration {
	d := b.opts.MaxReconnectWait
	if attempts < 30 {
		d = min(b.opts.ReconnectWait<<max(attempts-1, 0), d)
	}
	return d/2 + rand.N(d/2+1)
}

// getBuffer returns a buffer of length maxHeaderLen, the room for a
// header, to append a body to.
func (b *Broker) getBuffer() *[]byte {
	buf, ok := b.buffers.Get().(*[]byte)
	if !ok {
		buf = new([]byte)
	}
	if cap(*buf) < 4096 {
		*buf = make([]byte, 0, 4096)
	}
	*buf = (*buf)[:maxHeaderLen]
	return buf
}

func (b *Broker) putBuffer(buf *[]byte) {
	// One huge batch should not pin its buffer for good.
	if cap(*buf) <= 1<<20 {
		b.buffers.Put(buf)
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// validSubjectPrefix accepts dot-separated tokens without white space or
// wildcards.
func validSubjectPrefix(s string) bool {
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return false
		}
	}
	return true
}

// redactURL keeps passwords out of errors and logs.
func redactURL(url string) string {
	parts := strings.Split(url, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "redacted@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
