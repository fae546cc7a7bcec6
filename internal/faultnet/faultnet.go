// Package faultnet puts a fault-injecting TCP proxy between a client and a
// server, in the test's own process, and changes its faults on a seeded
// schedule.
//
// The proxy is toxiproxy's (github.com/Shopify/toxiproxy/v2), run without
// its HTTP API. The faults are latency with jitter, bandwidth limits,
// connections cut after a random number of bytes (so mid-frame), half-open
// connections that silently drop what is sent, slow closes, resets and
// data sliced into small packets. A Chaos draws which faults, their
// settings and how long each lasts from one seed, so a failing run can be
// replayed with the same schedule; what the operating system does with
// the timing (which frame a cut lands in) still varies from run to run.
//
// toxiproxy sets SO_LINGER 0 only on connections opened while a reset
// fault is in place, so those end with a TCP RST; a reset fault added to
// an open connection ends it with a FIN, dropping what was in flight.
package faultnet

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/rs/zerolog"
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
	Reset     Kind = "reset"      // the connection reset when data comes
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
	Seed            uint64        // Cut: draws the byte counts
	Delay           time.Duration // SlowClose; Reset: how long after data comes
	SliceBytes      int           // Slice: average packet size
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
		return fmt.Sprintf("%s %dB %s", f.Kind, f.SliceBytes, dir)
	}
	return fmt.Sprintf("%s %s", f.Kind, dir)
}

// toxic is f in toxiproxy's terms.
func (f Fault) toxic() (typ string, attrs any) {
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	switch f.Kind {
	case Latency:
		return "latency", map[string]int64{"latency": ms(f.Latency), "jitter": ms(f.Jitter)}
	case Bandwidth:
		return "bandwidth", map[string]int64{"rate": max(f.RateKBs, 1)}
	case Cut:
		return cutType, map[string]any{"max_bytes": max(f.MaxBytes, 1), "seed": f.Seed}
	case HalfOpen:
		return "timeout", map[string]int64{"timeout": 0}
	case SlowClose:
		return "slow_close", map[string]int64{"delay": ms(f.Delay)}
	case Reset:
		return "reset_peer", map[string]int64{"timeout": ms(f.Delay)}
	case Slice:
		n := max(f.SliceBytes, 2)
		return "slicer", map[string]int{"average_size": n, "size_variation": n / 2, "delay": 50}
	}
	return "noop", struct{}{}
}

// Proxy forwards TCP connections to one upstream address, through the
// faults injected into it. It is safe for concurrent use.
type Proxy struct {
	p *toxiproxy.Proxy

	mu       sync.Mutex
	next     int
	active   []string
	injected map[Kind]int
}

// Listen starts a proxy on a free loopback port in front of upstream.
// Each connection made to it dials upstream afresh.
func Listen(upstream string) (*Proxy, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "faultnet", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("faultnet: listen: %w", err)
	}
	return &Proxy{p: p, injected: make(map[Kind]int)}, nil
}

// Addr is the proxy's host:port, for clients to dial instead of upstream.
func (p *Proxy) Addr() string { return p.p.Listen }

// Close stops the proxy and closes every connection through it.
func (p *Proxy) Close() { p.p.Stop() }

// Inject adds f to every connection, open or new, until Heal.
func (p *Proxy) Inject(f Fault) error {
	typ, attrs := f.toxic()
	p.mu.Lock()
	p.next++
	name := fmt.Sprintf("f%d", p.next)
	p.mu.Unlock()
	dir := "downstream"
	if f.Upstream {
		dir = "upstream"
	}
	body, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": dir, "toxicity": 1, "attributes": attrs})
	if err != nil {
		return err
	}
	if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return fmt.Errorf("faultnet: inject %s: %w", f, err)
	}
	p.mu.Lock()
	p.active = append(p.active, name)
	p.injected[f.Kind]++
	p.mu.Unlock()
	return nil
}

// Heal removes every fault. A half-open connection is closed as its fault
// goes, as the kernel would once its retransmissions gave up.
func (p *Proxy) Heal() {
	p.mu.Lock()
	names := p.active
	p.active = nil
	p.mu.Unlock()
	for _, n := range names {
		_ = p.p.Toxics.RemoveToxic(context.Background(), n)
	}
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

// cutType is the toxiproxy type of the Cut fault.
const cutType = "faultnet_cut"

func init() {
	// toxiproxy's toxics live in its one registry.
	toxics.Register(cutType, new(cutToxic))
}

// cutToxic passes each connection's first n bytes and then closes it, with
// n drawn per connection from its seed: limit_data's cut, but at a
// different point on every connection.
type cutToxic struct {
	MaxBytes int64  `json:"max_bytes"`
	Seed     uint64 `json:"seed"`

	once sync.Once
	mu   sync.Mutex
	rng  *rand.Rand
}

type cutState struct{ left int64 }

// NewState draws the byte count of a new connection.
func (t *cutToxic) NewState() any {
	t.once.Do(func() { t.rng = rand.New(rand.NewPCG(t.Seed, t.Seed^0x9e3779b97f4a7c15)) })
	t.mu.Lock()
	defer t.mu.Unlock()
	return &cutState{left: 1 + t.rng.Int64N(max(t.MaxBytes, 1))}
}

// Pipe passes bytes until the connection's count is spent, then closes.
func (t *cutToxic) Pipe(stub *toxics.ToxicStub) {
	st := stub.State.(*cutState)
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if int64(len(c.Data)) >= st.left {
				if st.left > 0 {
					stub.Output <- &stream.StreamChunk{Data: c.Data[:st.left], Timestamp: c.Timestamp}
				}
				st.left = 0
				stub.Close()
				return
			}
			st.left -= int64(len(c.Data))
			stub.Output <- c
		}
	}
}
