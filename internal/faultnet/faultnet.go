// Package faultnet puts a fault-injecting TCP proxy between a client and a
// server, in the test's own process, and changes its faults on a seeded
// schedule.
//
// The faults are latency with jitter, bandwidth limits, connections cut
// after a random number of bytes (so mid-frame), half-open connections
// that silently drop what is sent, slow closes, resets (a TCP RST, with
// SO_LINGER 0) and data sliced into small packets. A Chaos draws which
// faults, their settings, how long each set lasts, and the per-connection
// draws (where a cut falls, each chunk's jitter) from one seed, so a
// failing run can be replayed with the same schedule; what the operating
// system does with the timing (which frame a cut lands in) still varies.
//
// The proxy is this package's own. toxiproxy v2.5.0, run in-process, was
// tried first: changing its toxics while connections carry data
// deadlocks it (RemoveToxic waits for a toxic blocked sending to a link
// whose writer is gone, holding the lock new connections need), and a
// schedule that changes faults every second under load hit that within
// seconds.
package faultnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Kind is a kind of fault.
type Kind string

// The faults.
const (
	Latency   Kind = "latency"    // each chunk delayed, with jitter
	Bandwidth Kind = "bandwidth"  // a rate limit
	Cut       Kind = "cut"        // each connection closed after a random number of bytes
	HalfOpen  Kind = "half-open"  // data silently dropped; the connection stays open
	SlowClose Kind = "slow-close" // a close passed on only after a delay
	Reset     Kind = "reset"      // the connection reset (RST) when data comes
	Slice     Kind = "slice"      // data passed on in small packets
)

// Kinds are all the faults.
var Kinds = []Kind{Latency, Bandwidth, Cut, HalfOpen, SlowClose, Reset, Slice}

// Fault is one fault in one direction. Only the fields of its Kind count.
type Fault struct {
	Kind Kind
	// Upstream puts it on what the client sends; otherwise on what the
	// server sends.
	Upstream bool

	Latency, Jitter time.Duration // Latency
	RateKBs         int64         // Bandwidth, in KB/s
	MaxBytes        int64         // Cut: each connection gets 1 to MaxBytes bytes
	Delay           time.Duration // SlowClose; Reset: how long after data comes
	SliceBytes      int           // Slice: the largest packet
	// Seed draws what is drawn per connection or per chunk: where a cut
	// falls, the jitter.
	Seed uint64
}

func (f Fault) String() string {
	dir := "down"
	if f.Upstream {
		dir = "up"
	}
	switch f.Kind {
	case Latency:
		return fmt.Sprintf("%s %s±%s %s", f.Kind, f.Latency, f.Jitter, dir)
	case Bandwidth:
		return fmt.Sprintf("%s %dKB/s %s", f.Kind, f.RateKBs, dir)
	case Cut:
		return fmt.Sprintf("%s ≤%dB %s", f.Kind, f.MaxBytes, dir)
	case SlowClose, Reset:
		return fmt.Sprintf("%s %s %s", f.Kind, f.Delay, dir)
	case Slice:
		return fmt.Sprintf("%s ≤%dB %s", f.Kind, f.SliceBytes, dir)
	}
	return fmt.Sprintf("%s %s", f.Kind, dir)
}

// fault is an injected Fault with its own draws.
type fault struct {
	Fault
	mu  sync.Mutex
	rng *rand.Rand
}

func (f *fault) int64N(n int64) int64 {
	if n <= 0 {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rng.Int64N(n)
}

// Proxy forwards TCP connections to one upstream address, through the
// faults injected into it. It is safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	upstream string
	faults   atomic.Pointer[[]*fault]
	done     chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	conns    map[*conn]struct{}
	injected map[Kind]int
	closed   bool
}

// Listen starts a proxy on a free loopback port in front of upstream.
// Each connection made to it dials upstream afresh.
func Listen(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultnet: listen: %w", err)
	}
	p := &Proxy{ln: ln, upstream: upstream, done: make(chan struct{}), conns: make(map[*conn]struct{}), injected: make(map[Kind]int)}
	p.faults.Store(&[]*fault{})
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's host:port, for clients to dial instead of upstream.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.kill(false)
	}
	p.wg.Wait()
}

// Inject adds f to every connection, open or new, until Set or Heal.
func (p *Proxy) Inject(f Fault) error {
	if !known(f.Kind) {
		return fmt.Errorf("faultnet: unknown fault %q", f.Kind)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.faults.Load()
	next := append(cur[:len(cur):len(cur)], newFault(f))
	p.faults.Store(&next)
	p.injected[f.Kind]++
	return nil
}

// Set replaces the faults with fs. Connections that had data dropped by a
// half-open fault are closed when fs has none, as the kernel would once
// its retransmissions gave up.
func (p *Proxy) Set(fs []Fault) error {
	next := make([]*fault, 0, len(fs))
	halfOpen := false
	for _, f := range fs {
		if !known(f.Kind) {
			return fmt.Errorf("faultnet: unknown fault %q", f.Kind)
		}
		next = append(next, newFault(f))
		halfOpen = halfOpen || f.Kind == HalfOpen
	}
	p.mu.Lock()
	p.faults.Store(&next)
	for _, f := range fs {
		p.injected[f.Kind]++
	}
	var dead []*conn
	if !halfOpen {
		for c := range p.conns {
			if c.dropped.Load() {
				dead = append(dead, c)
			}
		}
	}
	p.mu.Unlock()
	for _, c := range dead {
		c.kill(false)
	}
	return nil
}

// Heal removes every fault; see Set.
func (p *Proxy) Heal() { _ = p.Set(nil) }

// KillAll closes every open connection at once, as a network change
// would; with reset, each with a TCP RST.
func (p *Proxy) KillAll(reset bool) {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		c.kill(reset)
	}
}

func known(k Kind) bool {
	switch k {
	case Latency, Bandwidth, Cut, HalfOpen, SlowClose, Reset, Slice:
		return true
	}
	return false
}

func newFault(f Fault) *fault {
	return &fault{Fault: f, rng: rand.New(rand.NewPCG(f.Seed, f.Seed^0x9e3779b97f4a7c15))}
}

// Injected counts the faults injected so far, by kind.
func (p *Proxy) Injected() map[Kind]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[Kind]int, len(p.injected))
	for k, n := range p.injected {
		out[k] = n
	}
	return out
}

// Conns is the number of connections open through the proxy.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Go(func() { p.serve(client) })
	}
}

// conn is one client's connection and its connection upstream.
type conn struct {
	p              *Proxy
	client, server *net.TCPConn
	dead           chan struct{}
	once           sync.Once
	dropped        atomic.Bool // a half-open fault swallowed data
}

// kill closes both sides; with reset, as a TCP RST.
func (c *conn) kill(reset bool) {
	c.once.Do(func() {
		if reset {
			c.client.SetLinger(0)
			c.server.SetLinger(0)
		}
		close(c.dead)
		c.client.Close()
		c.server.Close()
	})
}

func (p *Proxy) serve(client net.Conn) {
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		// As a server that is down looks from the client: refused.
		client.(*net.TCPConn).SetLinger(0)
		client.Close()
		return
	}
	c := &conn{p: p, client: client.(*net.TCPConn), server: up.(*net.TCPConn), dead: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		c.kill(false)
		return
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { c.pump(c.client, c.server, true) })
	wg.Go(func() { c.pump(c.server, c.client, false) })
	wg.Wait()
	c.kill(false)
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// chunk is data read at a time.
type chunk struct {
	data []byte
	at   time.Time
}

// pump carries one direction: a reader that takes data as it comes, and a
// writer that delays, drops, limits and cuts it as the faults say. A
// delay holds back only that direction's later data.
func (c *conn) pump(src, dst *net.TCPConn, upstream bool) {
	queue := make(chan chunk, 64)
	go func() {
		defer close(queue)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case queue <- chunk{data: buf[:n], at: time.Now()}:
				case <-c.dead:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	w := writer{c: c, dst: dst, upstream: upstream, budget: make(map[*fault]int64)}
	for ch := range queue {
		if !w.write(ch) {
			c.kill(w.reset)
			for range queue {
			}
			return
		}
	}
	// The source closed: pass the close on, after a slow close's delay.
	for _, f := range w.active(SlowClose) {
		if !c.sleep(f.Delay) {
			return
		}
	}
	if err := dst.CloseWrite(); err != nil {
		c.kill(false)
	}
}

// writer is the writing half of one direction.
type writer struct {
	c        *conn
	dst      *net.TCPConn
	upstream bool
	budget   map[*fault]int64 // what a Cut still lets through
	due      time.Time        // when the last chunk was let through
	reset    bool
	stalled  bool // a half-open fault dropped data: the rest is dropped too
}

// active returns the faults of kind k on this direction now.
func (w *writer) active(k Kind) []*fault {
	var out []*fault
	for _, f := range *w.c.p.faults.Load() {
		if f.Kind == k && f.Upstream == w.upstream {
			out = append(out, f)
		}
	}
	return out
}

// write passes one chunk on; false means the connection is to die.
func (w *writer) write(ch chunk) bool {
	data := ch.data
	for _, f := range w.active(Reset) {
		// Data came: reset after the delay.
		if w.c.sleep(f.Delay) {
			w.reset = true
		}
		return false
	}
	// Once data is dropped, nothing after it may arrive: TCP never
	// delivers past a hole, it stalls until the connection dies.
	if w.stalled || len(w.active(HalfOpen)) > 0 {
		w.stalled = true
		w.c.dropped.Store(true)
		return true
	}
	// Latency: each chunk leaves latency ± jitter after it came, never
	// before the one ahead of it.
	var delay time.Duration
	for _, f := range w.active(Latency) {
		d := f.Latency
		if f.Jitter > 0 {
			d += time.Duration(f.int64N(2*int64(f.Jitter)+1)) - f.Jitter
		}
		delay += max(d, 0)
	}
	if delay > 0 {
		due := ch.at.Add(delay)
		if due.Before(w.due) {
			due = w.due
		}
		w.due = due
		if !w.c.sleep(time.Until(due)) {
			return false
		}
	}
	kill := false
	for _, f := range w.active(Cut) {
		left, ok := w.budget[f]
		if !ok {
			left = 1 + f.int64N(max(f.MaxBytes, 1))
		}
		if int64(len(data)) >= left {
			data, kill = data[:left], true
		}
		w.budget[f] = left - int64(len(data))
	}
	piece := len(data)
	for _, f := range w.active(Slice) {
		piece = min(piece, max(f.SliceBytes, 1))
	}
	for len(data) > 0 {
		n := min(piece, len(data))
		// Paced before it goes, so the last piece waits its turn too.
		for _, f := range w.active(Bandwidth) {
			if !w.c.sleep(time.Duration(n) * time.Second / time.Duration(max(f.RateKBs, 1)<<10)) {
				return false
			}
		}
		if _, err := w.dst.Write(data[:n]); err != nil {
			return false
		}
		data = data[n:]
		if len(data) > 0 && piece < len(ch.data) {
			// Separate packets, not one write the kernel coalesces.
			if !w.c.sleep(50 * time.Microsecond) {
				return false
			}
		}
	}
	return !kill
}

// sleep waits d, or less if the connection dies; false means it died.
func (c *conn) sleep(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-c.dead:
			return false
		default:
			return true
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.dead:
		return false
	}
}
